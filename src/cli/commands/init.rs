//! `kube-aws init`.

use super::Context;
use crate::cli::args::InitArgs;
use crate::cli::exit::Exit;
use crate::engine::EngineError;
use crate::engine::init::{InitOptions, init};

pub fn run(context: &Context, args: InitArgs) -> Result<Exit, EngineError> {
    let region = context
        .aws
        .region
        .clone()
        .ok_or(EngineError::InitNeedsRegion)?;
    let path = init(
        &context.dir,
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
    Ok(Exit::Success)
}
