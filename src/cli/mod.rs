//! The command line: parses flags with clap, calls the engine, prints results and errors, and
//! maps outcomes to exit codes. The only module that prints.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::engine::{self, AwsOptions, EngineError, InitOptions, history};

mod output;

#[derive(Debug, Parser)]
#[command(
    name = "kube-aws",
    version,
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

#[derive(Debug, Subcommand)]
enum HistoryCommand {
    /// Print one audit entry in full.
    Show {
        /// Sequence number of the entry.
        seq: u64,
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
    /// EC2 key pair for SSH access.
    #[arg(long)]
    key_name: String,
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
}

/// Parses the arguments, runs the command and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
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
        Command::Export { output } => {
            let now = time::OffsetDateTime::now_utc();
            let template = runtime().block_on(engine::export(&cli.dir, &aws, now))?;
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
            show: Some(HistoryCommand::Show { seq }),
            ..
        } => {
            let entry = runtime().block_on(history::history_entry(&cli.dir, &aws, seq))?;
            print_json(&entry)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::History { verify: true, .. } => {
            let report = runtime().block_on(history::verify_history(&cli.dir, &aws))?;
            if report.ok() {
                println!(
                    "Audit log OK: {} entries, every hash and link verified",
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
    }
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
