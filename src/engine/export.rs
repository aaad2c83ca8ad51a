//! `kube-aws export`: the stack template a plan would submit, rendered against the state, or
//! the one a plan file applies.

use std::path::Path;

use time::OffsetDateTime;

use super::{AwsOptions, BuildInputs, EngineError, build, open};

/// Exactly the template the plan file at `path` applies (to `pool`'s stack, or the cluster
/// stack), checked against the hash it records.
pub fn reviewed_template(path: &Path, pool: Option<&str>) -> Result<String, EngineError> {
    let plan = super::apply::read_plan_file(path)?;
    let template = match pool {
        Some(pool) => plan.reviewed_pool_template(pool),
        None => plan.reviewed_template(),
    };
    let template = template
        .map_err(|reason| EngineError::PlanTemplate {
            path: path.to_path_buf(),
            reason,
        })?
        .ok_or_else(|| EngineError::NoTemplateChange(path.to_path_buf()))?;
    Ok(template.to_string())
}

/// The whole stack (or `pool`'s own stack) as one CloudFormation JSON document.
pub async fn export(
    dir: &Path,
    aws: &AwsOptions,
    now: OffsetDateTime,
    pool: Option<&str>,
) -> Result<String, EngineError> {
    let (config, context, backend) = open(dir, aws).await?;
    let prior = backend.load(&config).await?.map(|l| l.state);
    // What the next plan deploys: one etcd member closer to etcdCount, as the plan renders it.
    let config = super::plan::as_deployed(&config, prior.as_ref());
    let inputs = BuildInputs::new(&config, prior.as_ref(), now);
    let built = build(
        dir,
        &inputs,
        Some(&context.kms()),
        Some(&context.images()),
        &mut |_| {},
    )
    .await?;
    match pool {
        None => Ok(built.rendered.stack_template),
        Some(pool) => match built.rendered.pool_stacks.get(pool) {
            Some(stack) => Ok(stack.template.clone()),
            None => Err(EngineError::NoPoolStack {
                pool: pool.to_string(),
                stacks: built.rendered.pool_stacks.keys().cloned().collect(),
            }),
        },
    }
}
