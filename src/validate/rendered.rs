//! The checks one render must pass before a plan is made from it (plan's gate, and
//! `validate`'s offline half): every cloud-config against the dialect, every stack template.

use std::collections::BTreeSet;

use super::{cloudconfig, template};
use crate::assets::CloudConfigId;
use crate::finding::Finding;
use crate::render::{self, Rendered, Templates};

/// The role name the original kube-aws used for each cloud-config.
fn role(id: &CloudConfigId) -> String {
    match id {
        CloudConfigId::Controller => "UserDataController".into(),
        CloudConfigId::Etcd(index) => format!("UserDataEtcd[{index}]"),
        CloudConfigId::Worker(pool) if pool == crate::config::DEFAULT_POOL => {
            "UserDataWorker".into()
        }
        CloudConfigId::Worker(pool) => format!("UserDataWorker[{pool}]"),
    }
}

fn template_of(id: &CloudConfigId) -> &'static str {
    match id {
        CloudConfigId::Controller => render::CONTROLLER,
        CloudConfigId::Etcd(_) => render::ETCD,
        CloudConfigId::Worker(_) => render::WORKER,
    }
}

/// Checks rendered output: every cloud-config (each pool's too: each renders its own labels
/// and taints into the same template) and the stack.
pub fn check(rendered: &Rendered, templates: &Templates) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut said = BTreeSet::new();
    for (asset, text) in &rendered.cloud_configs {
        let id = CloudConfigId::parse(asset).expect("render names each cloud-config by its id");
        let source = template_of(&id);
        for f in cloudconfig::check(&role(&id), text, templates.text(source)) {
            // Every pool renders the same template: say each of its problems once.
            if said.insert((source, f.line, f.message.clone())) {
                findings.push(f);
            }
        }
    }
    findings.extend(template::check(&rendered.stack_template));
    for pool in rendered.pool_stacks.values() {
        findings.extend(template::check(&pool.template));
    }
    findings
}
