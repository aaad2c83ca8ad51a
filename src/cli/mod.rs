//! The command line: parses flags with clap, calls the engine, prints results and errors, and
//! maps outcomes to exit codes. The only module that prints.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::engine::{self, AwsOptions, EngineError, InitOptions, history};

mod output;

#[derive(Debug, Parser)]
#[command(
    name = "kube-aws",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("KUBE_AWS_GIT_COMMIT"), ")"),
    about = "Deploy secure, auditable and reproducible Kubernetes clusters on AWS"
)]
pub struct Cli {
    /// Cluster directory holding cluster.yaml, template overrides and local state.
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    dir: PathBuf,
    /// AWS region (default: cluster.yaml's `region`).
    #[arg(long, global = true, env = "AWS_REGION", value_name = "REGION")]
    region: Option<String>,
    /// Named AWS profile from the shared config files.
    #[arg(long, global = true, env = "AWS_PROFILE", value_name = "PROFILE")]
    profile: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a commented cluster.yaml from flags.
    Init(InitArgs),
    /// Copy the built-in templates into the cluster directory for customisation.
    Render {
        /// Overwrite templates already in the cluster directory.
        #[arg(long)]
        force: bool,
    },
    /// Write the whole rendered stack as one CloudFormation JSON document.
    Export {
        /// Write to FILE instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Write exactly the template this plan file will apply.
        #[arg(long, value_name = "PLAN")]
        plan: Option<PathBuf>,
    },
    /// Check cluster.yaml, every cloud-config and the stack template (and, online, the AWS
    /// resources they rely on); every finding with its file and line.
    Validate {
        /// Only the checks that need no AWS.
        #[arg(long)]
        offline: bool,
        /// How to print the findings.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Fail on warnings too.
        #[arg(long)]
        strict: bool,
    },
    /// Show what apply would change: assets, the CloudFormation change set, Route53 records.
    Plan(PlanArgs),
    /// Execute a reviewed plan file (or plan, show and ask first).
    Apply {
        /// The plan file written by `plan -o`.
        plan: Option<PathBuf>,
        /// Apply without asking when no plan file is given.
        #[arg(long)]
        auto_approve: bool,
    },
    /// Delete the stack and the Route53 records this tool created.
    Destroy {
        /// Only write the destroy plan (then `apply PLAN`).
        #[arg(long, requires = "output")]
        plan_only: bool,
        /// Where --plan-only writes the plan.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Destroy without asking.
        #[arg(long)]
        auto_approve: bool,
    },
    /// Stack status and events, outputs, records, lock holder, state serial, last audit entry.
    Status,
    /// Print a shell completion script: `source <(kube-aws completions bash)`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), generated from the same definitions as --help.
    Man,
    /// Decrypt the admin credentials through KMS and write a kubeconfig (mode 0600).
    Kubeconfig {
        /// Where to write it.
        #[arg(
            short = 'o',
            long = "output",
            value_name = "FILE",
            default_value = "kubeconfig"
        )]
        output: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Show past deployments from the audit log, newest first.
    #[command(args_conflicts_with_subcommands = true)]
    History {
        #[command(subcommand)]
        show: Option<HistoryCommand>,
        /// Show at most N entries (only those are read).
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: u64,
        /// Print the entries as JSON.
        #[arg(long)]
        json: bool,
        /// Check every entry's hash and link; exit 1 naming the first problem.
        #[arg(long)]
        verify: bool,
    },
    /// Inspect the state and its lock.
    #[command(subcommand)]
    State(StateCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// Write the plan file here, for `apply`.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// How to print the plan.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit 0 when nothing changes, 2 when something does, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Make no AWS call: diff against the local state only.
    #[arg(long)]
    offline: bool,
    /// Re-issue certificates that expire within this many days.
    #[arg(long, default_value_t = 30, value_name = "DAYS", value_parser = clap::value_parser!(i64).range(0..=36_500))]
    renew_before: i64,
    /// Move the key that encrypts Secrets in etcd one rotation step on (three plans and applies:
    /// add a new key for reading, encrypt with it and rewrite every Secret, remove the old one).
    #[arg(long)]
    rotate_secrets_key: bool,
}

#[derive(Debug, Subcommand)]
enum HistoryCommand {
    /// Print one audit entry in full.
    Show {
        /// Sequence number of the entry.
        seq: u64,
        /// Print the entry as JSON (without the plan).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// Print the current state, with key ciphertexts redacted.
    Show {
        /// Print key ciphertexts too.
        #[arg(long)]
        raw: bool,
    },
    /// List the stored versions of the state (S3 object versions), newest first.
    Versions,
    /// Write the current state, exactly as stored, to standard output.
    Pull,
    /// Write a state file (from `state pull`) to this cluster's backend: moves a cluster from
    /// local to S3 state. Refuses another lineage or an older serial.
    Push {
        /// The state file.
        file: PathBuf,
    },
    /// Remove a lock left by a run that died; recorded in the audit log.
    Unlock {
        /// The lock id, as `status` or the lock error shows it.
        lock_id: String,
    },
}

#[derive(Debug, Args)]
struct InitArgs {
    /// Unique cluster name; also the CloudFormation stack name.
    #[arg(long)]
    cluster_name: String,
    /// DNS name of the Kubernetes API endpoint.
    #[arg(long = "external-dns-name")]
    external_dns_name: String,
    /// Availability zone for the instances.
    #[arg(long)]
    availability_zone: String,
    /// EC2 key pair for SSH access (SSH itself stays closed unless sshAccessAllowedSourceCIDRs
    /// opens it).
    #[arg(long)]
    key_name: Option<String>,
    /// ARN of the KMS key that encrypts the TLS private keys.
    #[arg(long = "kms-key-arn")]
    kms_key_arn: String,
    /// Route53 hosted zone for the externalDNSName record (enables createRecordSet).
    #[arg(long)]
    hosted_zone_id: Option<String>,
    /// Keep the state in this S3 bucket (versioning required) instead of locally.
    #[arg(long)]
    state_bucket: Option<String>,
    /// Object key of the state in the bucket (default: CLUSTER/state.json).
    #[arg(long, requires = "state_bucket")]
    state_key: Option<String>,
    /// S3 bucket (in the cluster's region) for the add-on manifests the controllers fetch and
    /// for large templates; needed with local state, defaults to the state bucket.
    #[arg(long, required_unless_present = "state_bucket")]
    template_bucket: Option<String>,
    /// Asymmetric KMS key (ECC_NIST_P256, SIGN_VERIFY) that signs every plan; apply refuses a
    /// plan it did not sign.
    #[arg(long, required_unless_present = "unsigned_plans")]
    plan_signing_key_arn: Option<String>,
    /// Accept unsigned plans instead (not for production: an edited plan file would apply).
    #[arg(long, conflicts_with = "plan_signing_key_arn")]
    unsigned_plans: bool,
}

/// Parses the arguments, runs the command and returns the exit code.
pub fn main() -> ExitCode {
    install_panic_hook();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// A panic is a bug whatever the input: say so in one line with the version and where, and
/// keep the backtrace for those who ask for it with RUST_BACKTRACE.
fn install_panic_hook() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: this is a bug in kube-aws {} ({}), not a problem with your input: {message}{place}\nPlease report it; RUST_BACKTRACE=1 shows a backtrace.",
            env!("CARGO_PKG_VERSION"),
            env!("KUBE_AWS_GIT_COMMIT"),
        );
    }));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built")
}

fn run(cli: Cli) -> Result<ExitCode, EngineError> {
    let aws = AwsOptions {
        region: cli.region.clone(),
        profile: cli.profile.clone(),
    };
    match cli.command {
        Command::Init(args) => {
            let region = cli.region.clone().ok_or_else(|| {
                EngineError::Refused("init needs --region (or AWS_REGION)".into())
            })?;
            let path = engine::init(
                &cli.dir,
                &InitOptions {
                    cluster_name: args.cluster_name,
                    external_dns_name: args.external_dns_name,
                    region,
                    availability_zone: args.availability_zone,
                    key_name: args.key_name,
                    kms_key_arn: args.kms_key_arn,
                    hosted_zone_id: args.hosted_zone_id,
                    state_bucket: args.state_bucket,
                    state_key: args.state_key,
                    template_bucket: args.template_bucket,
                    plan_signing_key_arn: args.plan_signing_key_arn,
                    unsigned_plans: args.unsigned_plans,
                },
            )?;
            eprintln!("Wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Render { force } => {
            for path in engine::render_templates(&cli.dir, force)? {
                eprintln!("Wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { output, plan } => {
            let template = match plan {
                Some(path) => {
                    let plan = read_plan_file(&path)?;
                    plan.reviewed_template()
                        .map_err(|e| EngineError::Refused(format!("{}: {e}", path.display())))?
                        .ok_or_else(|| {
                            EngineError::Refused(format!(
                                "{}: this plan changes no template",
                                path.display()
                            ))
                        })?
                        .to_string()
                }
                None => {
                    let now = time::OffsetDateTime::now_utc();
                    runtime().block_on(engine::export(&cli.dir, &aws, now))?
                }
            };
            match output {
                Some(path) => {
                    crate::state::local::write_atomically(&path, template.as_bytes()).map_err(
                        |source| EngineError::Io {
                            path: path.clone(),
                            source,
                        },
                    )?;
                    eprintln!("Wrote {} ({} bytes)", path.display(), template.len());
                }
                None => write_stdout(template.as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::History {
            show: Some(HistoryCommand::Show { seq, json }),
            ..
        } => {
            let (entry, plan) = runtime().block_on(history::history_entry(&cli.dir, &aws, seq))?;
            if json {
                print_json(&entry)?;
            } else {
                print!(
                    "{}",
                    output::history_entry_text(&entry, plan.as_ref(), stdout_color())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::History { verify: true, .. } => {
            let report = runtime().block_on(history::verify_history(&cli.dir, &aws))?;
            if report.ok() {
                println!(
                    "Audit log OK: {} entries, every hash and link verified, signatures and the state anchor checked",
                    report.entries
                );
                Ok(ExitCode::SUCCESS)
            } else {
                for problem in &report.problems {
                    println!("{problem}");
                }
                eprintln!(
                    "error: audit log verification failed: {} problem(s) in {} entries; first: {}",
                    report.problems.len(),
                    report.entries,
                    report.problems[0]
                );
                Ok(ExitCode::from(1))
            }
        }
        Command::History { limit, json, .. } => {
            let entries = runtime().block_on(history::history(&cli.dir, &aws, limit))?;
            if json {
                print_json(&entries)?;
            } else {
                print!("{}", output::history_table(&entries));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::State(command) => state_command(&cli.dir, &aws, command),
        Command::Plan(args) => plan_command(&cli.dir, &aws, args),
        Command::Validate {
            offline,
            format,
            strict,
        } => {
            let now = time::OffsetDateTime::now_utc();
            let findings =
                runtime().block_on(engine::validate::validate(&cli.dir, &aws, offline, now))?;
            let errors = findings
                .iter()
                .filter(|f| f.severity == crate::validate::Severity::Error)
                .count();
            let warnings = findings.len() - errors;
            match format {
                Format::Json => print_json(&serde_json::json!({
                    "findings": findings,
                    "errors": errors,
                    "warnings": warnings,
                }))?,
                _ => print!("{}", output::findings_text(&findings, stdout_color())),
            }
            Ok(if errors > 0 || (strict && warnings > 0) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Apply { plan, auto_approve } => apply_command(&cli.dir, &aws, plan, auto_approve),
        Command::Destroy {
            plan_only,
            output,
            auto_approve,
        } => destroy_command(&cli.dir, &aws, plan_only, output, auto_approve),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command, "kube-aws", &mut out);
            write_stdout(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut out)
                .map_err(|source| EngineError::Io {
                    path: PathBuf::from("<man page>"),
                    source,
                })?;
            write_stdout(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let status = runtime().block_on(engine::status::status(&cli.dir, &aws))?;
            print!("{}", output::status_text(&status));
            Ok(ExitCode::SUCCESS)
        }
        Command::Kubeconfig { output, force } => {
            let path =
                runtime().block_on(engine::status::kubeconfig(&cli.dir, &aws, &output, force))?;
            eprintln!("Wrote {} (mode 0600)", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn stdout_color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

fn spinner() -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

fn read_plan_file(path: &std::path::Path) -> Result<crate::planfile::Plan, EngineError> {
    let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    engine::apply::read_plan(&path.display().to_string(), &bytes)
}

fn write_plan_file(
    path: &std::path::Path,
    plan: &crate::planfile::Plan,
) -> Result<(), EngineError> {
    crate::state::local::write_atomically(path, &crate::planfile::encode(plan)).map_err(|source| {
        EngineError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

fn make_plan(
    dir: &std::path::Path,
    aws: &AwsOptions,
    options: &engine::plan::PlanOptions,
) -> Result<crate::planfile::Plan, EngineError> {
    let bar = spinner();
    let now = time::OffsetDateTime::now_utc();
    let result = runtime().block_on(engine::plan::plan(
        dir,
        aws,
        options,
        now,
        &mut |step: &str| bar.set_message(step.to_string()),
    ));
    bar.finish_and_clear();
    result
}

fn plan_command(
    dir: &std::path::Path,
    aws: &AwsOptions,
    args: PlanArgs,
) -> Result<ExitCode, EngineError> {
    let options = engine::plan::PlanOptions {
        offline: args.offline,
        renew_before: time::Duration::days(args.renew_before),
        destroy: false,
        rotate_secrets_key: args.rotate_secrets_key,
        // Only a plan written to a file can be applied later; one only shown needs no signature.
        sign: args.output.is_some(),
    };
    let plan = make_plan(dir, aws, &options)?;
    if let Some(path) = &args.output {
        write_plan_file(path, &plan)?;
        eprintln!(
            "Wrote {} (plan {})",
            path.display(),
            &plan.plan_sha256[..12]
        );
    }
    match args.format {
        Format::Text => print!("{}", output::plan_text(&plan, stdout_color())),
        Format::Markdown => print!("{}", output::plan_markdown(&plan)),
        Format::Json => print_json(&plan)?,
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Asks for `yes` on the terminal; refuses without one.
fn confirm(what: &str) -> Result<bool, EngineError> {
    if !std::io::stdin().is_terminal() {
        return Err(EngineError::Refused(format!(
            "{what} needs confirmation but standard input is not a terminal; review a plan file and `apply` it, or pass --auto-approve"
        )));
    }
    eprint!("Do you want to {what}? Only 'yes' will be accepted: ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|source| EngineError::Io {
            path: PathBuf::from("<stdin>"),
            source,
        })?;
    Ok(answer.trim() == "yes")
}

fn run_apply(
    dir: &std::path::Path,
    aws: &AwsOptions,
    plan: &crate::planfile::Plan,
    command: &str,
) -> Result<ExitCode, EngineError> {
    let bar = spinner();
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let result = runtime().block_on(engine::apply::apply(
        dir,
        aws,
        plan,
        command,
        interrupt,
        &mut |event| match event {
            engine::apply::ApplyEvent::Step(step) => bar.set_message(step.to_string()),
            engine::apply::ApplyEvent::Stack(e) => bar.println(format!(
                "  {} {} ({}) {}{}",
                e.timestamp,
                e.logical_id,
                e.resource_type,
                e.status,
                e.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )),
        },
    ));
    bar.finish_and_clear();
    let outcome = result?;
    match outcome.result {
        crate::audit::AuditResult::Succeeded => {
            println!(
                "Apply complete: state serial {} → {}, audit entry {}.",
                outcome.serial_before, outcome.serial_after, outcome.audit_seq
            );
            Ok(ExitCode::SUCCESS)
        }
        other => {
            eprintln!(
                "error: apply {}: {} (state serial {}, audit entry {})",
                other.as_str(),
                outcome.message.unwrap_or_default(),
                outcome.serial_after,
                outcome.audit_seq
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn apply_command(
    dir: &std::path::Path,
    aws: &AwsOptions,
    plan: Option<PathBuf>,
    auto_approve: bool,
) -> Result<ExitCode, EngineError> {
    match plan {
        Some(path) => {
            let plan = read_plan_file(&path)?;
            run_apply(dir, aws, &plan, &format!("apply {}", path.display()))
        }
        None => {
            let plan = make_plan(dir, aws, &engine::plan::PlanOptions::default())?;
            print!("{}", output::plan_text(&plan, stdout_color()));
            if !plan.has_changes() {
                return Ok(ExitCode::SUCCESS);
            }
            if !auto_approve && !confirm("apply this plan")? {
                eprintln!("Apply cancelled.");
                return Ok(ExitCode::from(1));
            }
            run_apply(dir, aws, &plan, "apply")
        }
    }
}

fn destroy_command(
    dir: &std::path::Path,
    aws: &AwsOptions,
    plan_only: bool,
    output: Option<PathBuf>,
    auto_approve: bool,
) -> Result<ExitCode, EngineError> {
    let options = engine::plan::PlanOptions {
        destroy: true,
        ..Default::default()
    };
    let plan = make_plan(dir, aws, &options)?;
    print!("{}", output::plan_text(&plan, stdout_color()));
    if let (true, Some(path)) = (plan_only, &output) {
        write_plan_file(path, &plan)?;
        eprintln!(
            "Wrote {}; run `kube-aws apply {}` to destroy",
            path.display(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !plan.has_changes() {
        return Ok(ExitCode::SUCCESS);
    }
    if !auto_approve && !confirm("destroy this cluster")? {
        eprintln!("Destroy cancelled.");
        return Ok(ExitCode::from(1));
    }
    run_apply(dir, aws, &plan, "destroy")
}

fn state_command(
    dir: &std::path::Path,
    aws: &AwsOptions,
    command: StateCommand,
) -> Result<ExitCode, EngineError> {
    let rt = runtime();
    match command {
        StateCommand::Show { raw } => {
            print_json(&rt.block_on(history::state_show(dir, aws, raw))?)?
        }
        StateCommand::Pull => write_stdout(&rt.block_on(history::state_pull(dir, aws))?)?,
        StateCommand::Versions => {
            print!(
                "{}",
                output::versions_table(&rt.block_on(history::state_versions(dir, aws))?)
            );
        }
        StateCommand::Push { file } => {
            let bytes = std::fs::read(&file).map_err(|source| EngineError::Io {
                path: file.clone(),
                source,
            })?;
            let now = time::OffsetDateTime::now_utc();
            let origin = file.display().to_string();
            let (state, entry) =
                rt.block_on(history::state_push(dir, aws, &origin, &bytes, now))?;
            eprintln!(
                "Pushed {origin}: lineage {}, serial {}; recorded as audit entry {}",
                state.lineage, state.serial, entry.seq
            );
        }
        StateCommand::Unlock { lock_id } => {
            let now = time::OffsetDateTime::now_utc();
            let (info, entry) = rt.block_on(history::state_unlock(dir, aws, &lock_id, now))?;
            eprintln!(
                "Removed lock {} (held by {} for `{}` since {}); recorded as audit entry {}",
                info.id, info.holder, info.operation, info.created, entry.seq
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_stdout(bytes: &[u8]) -> Result<(), EngineError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|source| EngineError::Io {
            path: PathBuf::from("<stdout>"),
            source,
        })
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), EngineError> {
    let bytes = crate::hash::canonical_json_pretty(value)
        .map_err(|e| EngineError::Refused(format!("cannot serialise output: {e}")))?;
    write_stdout(&bytes)
}
