//! The command line's words: every command, flag and help text, as clap definitions. `--help`,
//! the man page and the completions are generated from these.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kube-aws",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("KUBE_AWS_GIT_COMMIT"), ")"),
    about = "Deploy secure, auditable and reproducible Kubernetes clusters on AWS"
)]
pub struct Cli {
    /// Cluster directory holding cluster.yaml, template overrides and local state.
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// AWS region (default: cluster.yaml's `region`).
    #[arg(long, global = true, env = "AWS_REGION", value_name = "REGION")]
    pub region: Option<String>,
    /// Named AWS profile from the shared config files.
    #[arg(long, global = true, env = "AWS_PROFILE", value_name = "PROFILE")]
    pub profile: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented cluster.yaml from flags.
    Init(InitArgs),
    /// Copy the built-in templates into the cluster directory for customisation.
    Render(RenderArgs),
    /// Write the whole rendered stack as one CloudFormation JSON document.
    Export(ExportArgs),
    /// Check cluster.yaml, every cloud-config and the stack template (and, online, the AWS
    /// resources they rely on); every finding with its file and line.
    Validate(ValidateArgs),
    /// Show what apply would change: assets, the CloudFormation change set, Route53 records.
    Plan(PlanArgs),
    /// Execute a reviewed plan file (or plan, show and ask first).
    Apply(ApplyArgs),
    /// Delete the stack and the Route53 records this tool created.
    Destroy(DestroyArgs),
    /// Stack status and events, outputs, records, lock holder, state serial, last audit entry.
    Status(StatusArgs),
    /// Print a shell completion script: `source <(kube-aws completions bash)`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), generated from the same definitions as --help.
    Man,
    /// Decrypt the admin credentials through KMS and write a kubeconfig (mode 0600).
    Kubeconfig(KubeconfigArgs),
    /// Show past deployments from the audit log, newest first.
    #[command(args_conflicts_with_subcommands = true)]
    History(HistoryArgs),
    /// Inspect the state and its lock.
    #[command(subcommand)]
    State(StateCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

/// How a command that reports (status, history) prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// How to print the status.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Write the plan file here, for `apply`.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How to print the plan.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 0 when nothing changes, 2 when something does, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Make no AWS call: diff against the local state only.
    #[arg(long)]
    pub offline: bool,
    /// For pull requests: plan against AWS without any key: nothing is decrypted, issued or
    /// signed (certificates due are shown, not made) and no file is written; apply takes only
    /// the plan a protected job makes after merge.
    #[arg(long, conflicts_with_all = ["offline", "output", "rotate_secrets_key"])]
    pub preview: bool,
    /// Re-issue certificates that expire within this many days.
    #[arg(long, default_value_t = 30, value_name = "DAYS", value_parser = clap::value_parser!(i64).range(0..=36_500))]
    pub renew_before: i64,
    /// Move the key that encrypts Secrets in etcd one rotation step on (three plans and applies:
    /// add a new key for reading, encrypt with it and rewrite every Secret, remove the old one).
    #[arg(long)]
    pub rotate_secrets_key: bool,
}

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Print one audit entry in full.
    Show {
        /// Sequence number of the entry.
        seq: u64,
        /// How to print the entry (JSON: without the plan).
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// The same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print the current state: a summary, or (`--format json`) the state itself with key
    /// ciphertexts redacted.
    Show {
        /// How to print the state.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// The state as JSON with key ciphertexts too (implies --format json).
        #[arg(long)]
        raw: bool,
    },
    /// List the stored versions of the state (S3 object versions), newest first.
    Versions,
    /// Write the current state, exactly as stored, to standard output.
    Pull {
        /// A stored version instead (its id as `state versions` lists it), e.g. to roll back
        /// to it with `state push --rollback`.
        #[arg(long, value_name = "VERSION_ID")]
        version: Option<String>,
    },
    /// Write a state file (from `state pull`) to this cluster's backend: moves a cluster from
    /// local to S3 state. Refuses another lineage or an older serial, except with --rollback.
    Push {
        /// The state file.
        file: PathBuf,
        /// Go back to an older state of this cluster (a stored version, as `state versions`
        /// lists them): written as the next serial and recorded in the audit log; the next
        /// plan shows what the stack differs from it.
        #[arg(long)]
        rollback: bool,
    },
    /// Remove a lock left by a run that died; recorded in the audit log.
    Unlock {
        /// The lock id, as `status` or the lock error shows it.
        lock_id: String,
        /// Remove it although its lease still runs (its run may still be changing the cluster).
        #[arg(long)]
        force: bool,
    },
}

/// A bucket is required: the state bucket (a team's), or a template bucket with local state.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("bucket")
        .required(true)
        .multiple(true)
        .args(["state_bucket", "template_bucket"])
))]
pub struct InitArgs {
    /// Unique cluster name; also the CloudFormation stack name.
    #[arg(long)]
    pub cluster_name: String,
    /// DNS name of the Kubernetes API endpoint.
    #[arg(long = "external-dns-name")]
    pub external_dns_name: String,
    /// Availability zone for the instances.
    #[arg(long)]
    pub availability_zone: String,
    /// EC2 key pair for SSH access (SSH itself stays closed unless sshAccessAllowedSourceCIDRs
    /// opens it).
    #[arg(long)]
    pub key_name: Option<String>,
    /// ARN of the KMS key that encrypts the TLS private keys.
    #[arg(long = "kms-key-arn")]
    pub kms_key_arn: String,
    /// Route53 hosted zone for the externalDNSName record (enables createRecordSet).
    #[arg(long)]
    pub hosted_zone_id: Option<String>,
    /// Keep the state in this S3 bucket (versioning required) instead of locally.
    #[arg(long)]
    pub state_bucket: Option<String>,
    /// Object key of the state in the bucket (default: CLUSTER/state.json).
    #[arg(long, requires = "state_bucket")]
    pub state_key: Option<String>,
    /// S3 bucket (in the cluster's region) for the add-on manifests the controllers fetch and
    /// for large templates; needed with local state, defaults to the state bucket.
    #[arg(long)]
    pub template_bucket: Option<String>,
    /// Asymmetric KMS key (ECC_NIST_P256, SIGN_VERIFY) that signs every plan; apply refuses a
    /// plan it did not sign.
    #[arg(long, required_unless_present = "unsigned_plans")]
    pub plan_signing_key_arn: Option<String>,
    /// Accept unsigned plans instead (not for production: an edited plan file would apply).
    #[arg(long, conflicts_with = "plan_signing_key_arn")]
    pub unsigned_plans: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Overwrite templates already in the cluster directory.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write exactly the template this plan file will apply.
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<PathBuf>,
    /// The stack of this node pool (with `stackPerPool`) instead of the cluster stack.
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Only the checks that need no AWS.
    #[arg(long)]
    pub offline: bool,
    /// How to print the findings.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Fail on warnings too.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The plan file written by `plan -o`.
    pub plan: Option<PathBuf>,
    /// Apply without asking when no plan file is given.
    #[arg(long)]
    pub auto_approve: bool,
    /// How to report progress: text, or JSON lines on stdout (one object per step, stack
    /// event and the ending) for tools; JSON needs a plan file.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text, requires = "plan")]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Only write the destroy plan (then `apply PLAN`).
    #[arg(long, requires = "output")]
    pub plan_only: bool,
    /// Where --plan-only writes the plan.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        requires = "plan_only"
    )]
    pub output: Option<PathBuf>,
    /// Destroy without asking.
    #[arg(long)]
    pub auto_approve: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// Where to write it (a file of mode 0600; never stdout, since it holds the admin key).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        default_value = "kubeconfig",
        value_parser = kubeconfig_file
    )]
    pub output: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

/// `-o -` means stdout elsewhere; here it would be a file named `-` holding a private key.
fn kubeconfig_file(value: &str) -> Result<PathBuf, String> {
    match value {
        "-" => Err("the admin kubeconfig holds the admin's private key, which kube-aws never writes to stdout: name a file (written with mode 0600)".into()),
        file => Ok(PathBuf::from(file)),
    }
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    pub show: Option<HistoryCommand>,
    /// Show at most N entries (only those are read).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: u64,
    /// How to print the entries.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// The same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Check every entry's hash and link; exit 1 naming the first problem.
    #[arg(long)]
    pub verify: bool,
}
