//! What apply re-derives instead of trusting a plan: where it applies, which records it may
//! touch, and that the state it writes is the one the plan summarises. A signed plan already
//! holds; these checks are what stands when a cluster opts out of signing, and they catch a
//! plan made by a buggy or older tool either way.

use std::collections::BTreeMap;

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::assets::tls::{CA, SERVICE_ACCOUNT};
use crate::assets::{TlsAsset, TlsAssets};
use crate::aws::route53::fqdn;
use crate::config::ClusterConfig;
use crate::engine::PlanMismatch;
use crate::engine::plan::records::{bare_zone, desired_record_spec};
use crate::hash::sha256_hex;
use crate::planfile::{CertificateAction, Plan, PlanKind, RecordAction, RecordChange};
use crate::state::State;

/// The plan must be for this region, this account and the stack the state records.
pub fn check_target(
    config: &ClusterConfig,
    plan: &Plan,
    caller_account: &str,
    prior: Option<&State>,
) -> Result<(), PlanMismatch> {
    let target = &plan.target;
    if target.region != config.region {
        return Err(PlanMismatch::Region {
            planned: target.region.clone(),
            configured: config.region.clone(),
        });
    }
    if let Some(account) = &target.account_id
        && account != caller_account
    {
        return Err(PlanMismatch::Account {
            planned: account.clone(),
            caller: caller_account.to_string(),
        });
    }
    if let Some(state) = prior {
        if let Some(account) = &state.account_id
            && account != caller_account
        {
            return Err(PlanMismatch::StateAccount {
                recorded: account.clone(),
                caller: caller_account.to_string(),
            });
        }
        if let Some(region) = &state.region
            && region != &config.region
        {
            return Err(PlanMismatch::StateRegion {
                recorded: region.clone(),
                configured: config.region.clone(),
            });
        }
        // A plan that creates the stack replaces one deleted outside kube-aws (plan checked
        // it is gone and that the account is the recorded one).
        let recorded = state.stack.as_ref().and_then(|s| s.id.as_deref());
        if let Some(recorded) = recorded
            && target.stack_id.as_deref() != Some(recorded)
            && plan.stack.action != crate::planfile::Action::Create
        {
            return Err(PlanMismatch::Stack {
                planned: target.stack_id.as_deref().unwrap_or("(none)").to_string(),
                recorded: recorded.to_string(),
            });
        }
    }
    Ok(())
}

/// The hosted zone a record of this cluster may live in when cluster.yaml names it by id.
/// `None` when it names the zone by name: the caller looks that one up, so moving the zone
/// is not mistaken for a forged plan.
pub fn expected_zone(config: &ClusterConfig) -> Option<String> {
    config
        .hosted_zone_id
        .as_deref()
        .map(|id| bare_zone(id).to_string())
}

/// Each record change must be the API record cluster.yaml asks for (its name, type, TTL and
/// zone), or the removal of a record the state says this tool created.
pub fn check_records(
    config: &ClusterConfig,
    plan: &Plan,
    prior: Option<&State>,
    looked_up_zone: Option<&str>,
) -> Result<(), PlanMismatch> {
    let owned = prior.map(|s| s.records.as_slice()).unwrap_or_default();
    for r in plan.records.iter().filter(|r| r.action.changes()) {
        match r.action {
            RecordAction::Delete => {
                let is_owned = owned.iter().any(|o| {
                    fqdn(&o.name) == fqdn(&r.name)
                        && o.record_type == r.record_type
                        && bare_zone(&o.hosted_zone_id) == bare_zone(&r.hosted_zone_id)
                        && o.values == r.new_values
                });
                if !is_owned {
                    return Err(PlanMismatch::DeletesUnowned {
                        record_type: r.record_type.clone(),
                        name: r.name.clone(),
                        zone: r.hosted_zone_id.clone(),
                    });
                }
            }
            RecordAction::Upsert if plan.kind == PlanKind::Apply => {
                check_upsert(config, r, looked_up_zone)?
            }
            RecordAction::Upsert | RecordAction::NoOp => {
                return Err(PlanMismatch::DestroyWritesRecord {
                    name: r.name.clone(),
                });
            }
        }
    }
    Ok(())
}

fn check_upsert(
    config: &ClusterConfig,
    r: &RecordChange,
    looked_up_zone: Option<&str>,
) -> Result<(), PlanMismatch> {
    let wanted = desired_record_spec(config);
    if !config.create_record_set
        || fqdn(&r.name) != wanted.name
        || r.record_type != wanted.record_type
        || r.ttl != wanted.ttl
    {
        return Err(PlanMismatch::OtherRecord {
            record_type: r.record_type.clone(),
            name: r.name.clone(),
            ttl: r.ttl,
            wanted: if config.create_record_set {
                format!(
                    "{} {} (TTL {})",
                    wanted.record_type, wanted.name, wanted.ttl
                )
            } else {
                "no record (createRecordSet: false)".to_string()
            },
        });
    }
    let zone = expected_zone(config).or(looked_up_zone.map(str::to_string));
    if zone.as_deref() != Some(bare_zone(&r.hosted_zone_id)) {
        return Err(PlanMismatch::OtherZone {
            name: r.name.clone(),
            zone: r.hosted_zone_id.clone(),
            wanted: zone.unwrap_or_else(|| "(no zone)".into()),
        });
    }
    Ok(())
}

/// `new_state` must be what the plan shows: the same cluster and lineage, the reviewed
/// template, exactly the listed asset hashes, kept certificates unchanged and new ones issued
/// by the state's CA (or by a CA the plan itself says is new).
/// `shipped` are the assets an interrupted apply shipped on top of `prior` (see
/// [`crate::state::PendingAssets`]): a plan may keep those too.
pub fn check_new_state(
    config: &ClusterConfig,
    plan: &Plan,
    prior: Option<&State>,
    shipped: Option<&TlsAssets>,
) -> Result<(), PlanMismatch> {
    let next = &plan.new_state;
    if next.cluster_name != config.cluster_name {
        return Err(PlanMismatch::StateCluster {
            found: next.cluster_name.clone(),
            configured: config.cluster_name.clone(),
        });
    }
    if let Some(prior) = prior
        && prior.lineage != next.lineage
    {
        return Err(PlanMismatch::Lineage {
            found: next.lineage.clone(),
            recorded: prior.lineage.clone(),
        });
    }
    // What the state will say about signing is cluster.yaml's, and the plan says it changes.
    let signing = crate::engine::plan::signing_after(config, prior);
    if next.plan_signing != signing
        || plan.signing != crate::engine::plan::signing_change(prior.map(|s| &s.plan_signing), next)
    {
        let show = |s: &Option<crate::state::PlanSigning>| {
            s.as_ref().map_or("not recorded".into(), |s| s.to_string())
        };
        return Err(PlanMismatch::Signing {
            planned: show(&next.plan_signing),
            configured: show(&signing),
        });
    }
    let listed: BTreeMap<&str, &str> = plan
        .assets
        .iter()
        .filter_map(|a| Some((a.path.as_str(), a.new_sha256.as_deref()?)))
        .collect();
    let written: BTreeMap<&str, &str> = next
        .assets
        .iter()
        .map(|(path, a)| (path.as_str(), a.sha256.as_str()))
        .collect();
    if plan.kind == PlanKind::Apply && listed != written {
        let differing: Vec<String> = listed
            .keys()
            .chain(written.keys())
            .filter(|p| listed.get(*p) != written.get(*p))
            .map(|p| p.to_string())
            .collect();
        return Err(PlanMismatch::Assets(differing));
    }
    if plan.kind == PlanKind::Apply {
        // The version the state will record is cluster.yaml's, and one the running cluster
        // may move to.
        let configured = &config.kubernetes_version;
        if next.kubernetes_version.as_ref() != Some(configured) {
            return Err(PlanMismatch::KubernetesVersion {
                planned: next.kubernetes_version.clone().unwrap_or("(none)".into()),
                configured: configured.clone(),
            });
        }
        if let Some(deployed) = prior.and_then(State::running_kubernetes_version) {
            crate::releases::version_move(deployed, configured)
                .map_err(PlanMismatch::VersionSkew)?;
        }
        // Each pool stack the state will record is one the plan reviews, with its template.
        let reviewed: BTreeMap<&str, Option<&str>> = plan
            .pool_stacks
            .iter()
            .filter(|p| p.stack.action != crate::planfile::Action::Delete)
            .map(|p| (p.pool.as_str(), p.stack.template_sha256.as_deref()))
            .collect();
        let recorded: BTreeMap<&str, Option<&str>> = next
            .pool_stacks
            .iter()
            .map(|(pool, s)| (pool.as_str(), Some(s.template_sha256.as_str())))
            .collect();
        // Each by this cluster's name for the pool, and by the id the state records (or,
        // new to the state, one of a stack of that name).
        for (pool, stack) in &next.pool_stacks {
            let name = config.pool_stack_name(pool);
            let prior_id = prior
                .and_then(|p| p.pool_stacks.get(pool))
                .and_then(|s| s.id.as_deref());
            let id_ok = match (prior_id, stack.id.as_deref()) {
                (Some(prior), id) => id == Some(prior),
                (None, Some(id)) => id.contains(&format!(":stack/{name}/")),
                (None, None) => true,
            };
            if stack.name != name || !id_ok {
                return Err(PlanMismatch::PoolStacks(vec![pool.clone()]));
            }
        }
        if reviewed != recorded {
            let differing: Vec<String> = reviewed
                .keys()
                .chain(recorded.keys())
                .filter(|p| reviewed.get(*p) != recorded.get(*p))
                .map(|p| p.to_string())
                .collect();
            return Err(PlanMismatch::PoolStacks(differing));
        }
        let template = next.stack.as_ref().map(|s| s.template_sha256.as_str());
        if template != plan.stack.template_sha256.as_deref() {
            return Err(PlanMismatch::Template {
                recorded: template.unwrap_or("(none)").to_string(),
                reviewed: plan
                    .stack
                    .template_sha256
                    .as_deref()
                    .unwrap_or("(none)")
                    .to_string(),
            });
        }
    }
    check_certificates(plan, prior, shipped)
}

/// Whether the plan keeps a certificate the state does not hold as it is (one an interrupted
/// apply shipped, or a forged one).
pub fn keeps_unrecorded_certificates(plan: &Plan, prior: Option<&State>) -> bool {
    plan.new_state.tls.iter().any(|(name, asset)| {
        let kept = plan
            .certificates
            .iter()
            .any(|c| &c.name == name && c.action == CertificateAction::Keep);
        kept && prior.and_then(|s| s.tls.get(name)) != Some(asset)
    })
}

fn check_certificates(
    plan: &Plan,
    prior: Option<&State>,
    shipped: Option<&TlsAssets>,
) -> Result<(), PlanMismatch> {
    let next = &plan.new_state;
    let empty = BTreeMap::new();
    let before = prior.map(|s| &s.tls).unwrap_or(&empty);
    let action = |name: &str| {
        plan.certificates
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.action)
    };
    // A destroy keeps every certificate; an apply says per certificate what it does.
    let issued = |name: &str| {
        plan.kind == PlanKind::Apply && action(name).is_some_and(CertificateAction::is_new)
    };
    for (name, asset) in next.tls.iter() {
        let known =
            before.get(name) == Some(asset) || shipped.is_some_and(|s| s.get(name) == Some(asset));
        if !issued(name) && !known {
            return Err(PlanMismatch::ChangesKept { name: name.clone() });
        }
    }
    let Some(ca) = next.tls.get(CA) else {
        return Ok(());
    };
    let ca_der = certificate_der(ca).ok_or(PlanMismatch::CaNotPem)?;
    let (_, ca_cert) = X509Certificate::from_der(&ca_der)
        .map_err(|e| PlanMismatch::CaUnparsable(e.to_string()))?;
    for (name, asset) in next.tls.iter().filter(|(n, _)| issued(n)) {
        if asset.certificate_pem.is_empty() {
            continue; // a sealed secret (bootstrap token, Secrets key): no certificate
        }
        let der =
            certificate_der(asset).ok_or_else(|| PlanMismatch::NotPem { name: name.clone() })?;
        if sha256_hex(&der) != asset.certificate_sha256 {
            return Err(PlanMismatch::HashMismatch { name: name.clone() });
        }
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| PlanMismatch::Unparsable {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        // The CA and the service-account key pair sign themselves; every other certificate is
        // the CA's.
        let self_signed = name == CA || name == SERVICE_ACCOUNT;
        let issuer = if self_signed {
            cert.public_key()
        } else {
            ca_cert.public_key()
        };
        if cert.verify_signature(Some(issuer)).is_err() {
            return Err(if self_signed {
                PlanMismatch::NotSelfSigned { name: name.clone() }
            } else {
                PlanMismatch::NotIssuedByCa {
                    name: name.clone(),
                    ca: if issued(CA) { "new" } else { "state's" },
                }
            });
        }
        if name == SERVICE_ACCOUNT && before.contains_key(name) {
            return Err(PlanMismatch::ServiceAccountReplaced);
        }
    }
    Ok(())
}

fn certificate_der(asset: &TlsAsset) -> Option<Vec<u8>> {
    use base64::Engine;
    let body: String = asset
        .certificate_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// What a plan may do to pool stacks, whatever its templates: give a stack only to a pool
/// cluster.yaml declares with `stackPerPool` (removing recorded ones is `check_pool_stacks`'),
/// and leave a change set to apply only when the cluster stack changes first (its resources
/// are the parameters). Which parameters a pool takes is `check_rendered_templates`'.
pub fn check_pool_changes(config: &ClusterConfig, plan: &Plan) -> Result<(), PlanMismatch> {
    use crate::planfile::Action;
    let declared: Vec<String> = match config.stack_per_pool && plan.kind == PlanKind::Apply {
        true => config.worker_pools().into_iter().map(|p| p.name).collect(),
        false => Vec::new(),
    };
    for pool in &plan.pool_stacks {
        if pool.stack.action != Action::Delete && !declared.contains(&pool.pool) {
            return Err(PlanMismatch::UndeclaredPool(pool.pool.clone()));
        }
        if pool.change_set_at_apply() && plan.stack.action == Action::NoOp {
            return Err(PlanMismatch::PoolChangeSetRemoved(pool.stack.name.clone()));
        }
    }
    Ok(())
}

/// The plan's `new_state` assets against what apply renders itself: each rendered asset
/// (cloud-configs, manifests, the templates, certificates) with the hash the plan records, and
/// no other.
pub fn check_rendered_assets(
    config: &ClusterConfig,
    plan: &Plan,
    rendered: &crate::render::Rendered,
) -> Result<(), PlanMismatch> {
    let ours = crate::engine::plan::desired_assets(config, rendered, &plan.new_state.tls);
    let theirs = &plan.new_state.assets;
    let differing: Vec<String> = ours
        .keys()
        .chain(theirs.keys())
        .filter(|p| ours.get(*p).map(|a| &a.sha256) != theirs.get(*p).map(|a| &a.sha256))
        .map(|p| p.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    match differing.is_empty() {
        true => Ok(()),
        false => Err(PlanMismatch::AssetsNotRendered(differing)),
    }
}

/// A plan's stacks against what apply renders itself ([`render_for_apply`]): the cluster
/// stack's template when it changes, and each pool stack it creates or updates, with exactly
/// the parameters its rendered template takes. Signed or not: a signature vouches for who
/// made the plan, this for what the merged directory asks.
///
/// [`render_for_apply`]: crate::engine::plan::render_for_apply
pub fn check_rendered_templates(
    plan: &Plan,
    rendered: &crate::render::Rendered,
) -> Result<(), PlanMismatch> {
    use crate::planfile::Action;
    let differs = |stack: &str, planned: Option<&str>, template: Option<&str>| {
        let rendered = template.map(crate::hash::sha256_hex);
        (planned != rendered.as_deref()).then(|| PlanMismatch::NotRendered {
            stack: stack.to_string(),
            planned: planned.unwrap_or("(none)").to_string(),
            rendered: rendered.unwrap_or_else(|| "no such stack".into()),
        })
    };
    if plan.stack.action != Action::NoOp
        && let Some(mismatch) = differs(
            &plan.stack.name,
            plan.stack.template_sha256.as_deref(),
            Some(&rendered.stack_template),
        )
    {
        return Err(mismatch);
    }
    for pool in plan
        .pool_stacks
        .iter()
        .filter(|p| matches!(p.stack.action, Action::Create | Action::Update))
    {
        let ours = rendered.pool_stacks.get(&pool.pool);
        if let Some(mismatch) = differs(
            &pool.stack.name,
            pool.stack.template_sha256.as_deref(),
            ours.map(|p| p.template.as_str()),
        ) {
            return Err(mismatch);
        }
        let mut planned = pool.parameters.clone();
        planned.sort();
        let mut wanted = ours.map(|p| p.parameters.clone()).unwrap_or_default();
        wanted.sort();
        if planned != wanted {
            return Err(PlanMismatch::PoolParameters {
                stack: pool.stack.name.clone(),
                planned,
                rendered: wanted,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
