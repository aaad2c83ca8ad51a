//! The command line: parses flags with clap, calls the engine, prints results and errors, and
//! maps outcomes to exit codes. The only module that prints.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::engine::{self, AwsOptions, EngineError, InitOptions};

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
                None => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(template.as_bytes())
                        .and_then(|()| out.flush())
                        .map_err(|source| EngineError::Io {
                            path: PathBuf::from("<stdout>"),
                            source,
                        })?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
