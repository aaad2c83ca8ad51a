//! The Route53 half of a plan: the API record cluster.yaml asks for, in the zone it names,
//! pointing where the stack's endpoint output says; and the removal of records this tool
//! created that are no longer wanted. `validate` checks the zone the same way.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::Progress;
use crate::aws::route53::{DnsService, RecordValue, Zone, fqdn};
use crate::config::ClusterConfig;
use crate::engine::{EngineError, ZoneProblem};
use crate::planfile::{Action, KNOWN_AFTER_APPLY, RecordAction, RecordChange, StackChange};
use crate::state::State;

/// What an offline plan says it did not do for the records.
pub const OFFLINE_SKIPPED: &str = "Route53: records were not looked up";

/// The stack output whose value the API record carries. It is the contract between kube-aws
/// and a stack template, built-in or the user's.
pub const ENDPOINT_OUTPUT: &str = "ControllerEndpoint";

/// The externalDNSName record as configured (its value comes from the stack's outputs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordSpec {
    pub name: String,
    pub record_type: String,
    pub ttl: u32,
    pub zone: Option<String>,
}

/// The record cluster.yaml asks for: `CNAME` to a load balancer, else `A` to the controller's
/// address.
pub fn desired_record_spec(config: &ClusterConfig) -> RecordSpec {
    RecordSpec {
        name: fqdn(&config.external_dns_name),
        record_type: if config.controllers_behind_load_balancer() {
            "CNAME"
        } else {
            "A"
        }
        .into(),
        ttl: config.record_set_ttl,
        zone: config.hosted_zone_id.clone().or(config.hosted_zone.clone()),
    }
}

/// The zone cluster.yaml names (by id, or by name), after checking that it exists and is a
/// parent of externalDNSName.
pub async fn configured_zone<D: DnsService>(
    config: &ClusterConfig,
    dns: &D,
) -> Result<Zone, ZoneProblem> {
    let zone = match (&config.hosted_zone_id, &config.hosted_zone) {
        (Some(id), _) => dns.zone_by_id(id).await?,
        (None, Some(name)) => dns.zone_by_name(name).await?,
        (None, None) => None,
    }
    .ok_or_else(|| {
        ZoneProblem::Missing(
            config
                .hosted_zone_id
                .clone()
                .or(config.hosted_zone.clone())
                .unwrap_or_default(),
        )
    })?;
    let name = config.external_dns_name.trim_end_matches('.');
    if !(name == zone.name || name.ends_with(&format!(".{}", zone.name))) {
        return Err(ZoneProblem::NotParent {
            zone: zone.name,
            id: zone.id,
            name: name.to_string(),
        });
    }
    Ok(zone)
}

/// A hosted zone id without Route53's `/hostedzone/` prefix, which some answers carry and
/// others do not.
pub(crate) fn bare_zone(id: &str) -> &str {
    id.trim_start_matches("/hostedzone/")
}

/// Plans the records: reads the API record (and, the first time, its zone) and lists what
/// changes.
pub async fn plan_records<D: DnsService>(
    config: &ClusterConfig,
    prior: Option<&State>,
    stack: &StackChange,
    new_template: &Value,
    outputs: &BTreeMap<String, String>,
    dns: &D,
    progress: Progress<'_>,
) -> Result<Vec<RecordChange>, EngineError> {
    let mut wanted = Vec::new();
    if config.create_record_set {
        let spec = desired_record_spec(config);
        let zone_id = match zone_applied_in(config, prior, &spec) {
            Some(id) => id,
            None => {
                progress("looking up the hosted zone");
                configured_zone(config, dns).await?.id
            }
        };
        let new_values = endpoint_values(stack, new_template, outputs);
        progress("reading the record");
        let live = dns.record(&zone_id, &spec.name, &spec.record_type).await?;
        wanted.push(record_change(&spec, zone_id, live, new_values));
    }
    let removed = removed_records(prior, &wanted);
    wanted.extend(removed);
    Ok(wanted)
}

/// The zone this record was already applied in, when cluster.yaml names that zone by id. It
/// was checked then: reading the record is enough (and fails clearly if the zone is gone),
/// which keeps a no-op plan cheap.
fn zone_applied_in(
    config: &ClusterConfig,
    prior: Option<&State>,
    spec: &RecordSpec,
) -> Option<String> {
    let id = config.hosted_zone_id.as_ref()?;
    prior?
        .records
        .iter()
        .find(|r| {
            bare_zone(&r.hosted_zone_id) == bare_zone(id) && fqdn(&r.name) == fqdn(&spec.name)
        })
        .map(|r| r.hosted_zone_id.clone())
}

/// The logical ids of the resources the endpoint output names (`Ref`, `Fn::GetAtt`,
/// `Fn::Sub`). Learned from the template, so a user's template with other names works.
fn endpoint_resources(template: &Value) -> BTreeSet<String> {
    /// Every name a `Ref`, `Fn::GetAtt` or `Fn::Sub` in `value` mentions (`X` of `X.Attr`).
    fn walk<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("Ref", Value::String(id)) | ("Fn::GetAtt", Value::String(id)) => {
                            out.push(id)
                        }
                        ("Fn::GetAtt", Value::Array(parts)) => {
                            out.extend(parts.first().and_then(Value::as_str))
                        }
                        ("Fn::Sub", Value::String(text)) => out.extend(sub_names(text)),
                        ("Fn::Sub", Value::Array(parts)) => out.extend(
                            parts
                                .first()
                                .and_then(Value::as_str)
                                .map(sub_names)
                                .into_iter()
                                .flatten(),
                        ),
                        _ => {}
                    }
                    walk(inner, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    /// The names `${Name}` and `${Name.Attribute}` in an `Fn::Sub` string.
    fn sub_names(text: &str) -> impl Iterator<Item = &str> {
        text.split("${")
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
    }
    let mut names = Vec::new();
    walk(&template["Outputs"][ENDPOINT_OUTPUT]["Value"], &mut names);
    let resources = template["Resources"].as_object();
    names
        .into_iter()
        .map(|name| name.split('.').next().unwrap_or(name))
        .filter(|id| resources.is_some_and(|r| r.contains_key(*id)))
        .map(str::to_string)
        .collect()
}

/// What the API record will hold: the live endpoint output, unless the stack is created or a
/// resource behind the endpoint is added or may be replaced (then it is known after apply).
fn endpoint_values(
    stack: &StackChange,
    new_template: &Value,
    outputs: &BTreeMap<String, String>,
) -> Vec<String> {
    let behind = endpoint_resources(new_template);
    let endpoint_changes = stack
        .resource_changes
        .iter()
        .any(|c| behind.contains(&c.logical_id) && c.may_get_new_identity());
    match outputs.get(ENDPOINT_OUTPUT) {
        Some(v) if !endpoint_changes && stack.action != Action::Create => vec![v.clone()],
        _ => vec![KNOWN_AFTER_APPLY.to_string()],
    }
}

/// The change that makes the live record (if any) the wanted one.
fn record_change(
    spec: &RecordSpec,
    zone_id: String,
    live: Option<RecordValue>,
    new_values: Vec<String>,
) -> RecordChange {
    let action = match &live {
        Some(l) if l.values == new_values && l.ttl == spec.ttl => RecordAction::NoOp,
        _ => RecordAction::Upsert,
    };
    RecordChange {
        action,
        hosted_zone_id: zone_id,
        name: spec.name.clone(),
        record_type: spec.record_type.clone(),
        ttl: spec.ttl,
        old_values: live.map(|l| l.values),
        new_values,
    }
}

/// Deletions of the records this tool created that `wanted` no longer lists; never of any
/// other record. A destroy wants none.
pub fn removed_records(prior: Option<&State>, wanted: &[RecordChange]) -> Vec<RecordChange> {
    prior
        .map(|s| s.records.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|owned| {
            !wanted
                .iter()
                .any(|r| fqdn(&r.name) == fqdn(&owned.name) && r.record_type == owned.record_type)
        })
        .map(|owned| RecordChange {
            action: RecordAction::Delete,
            hosted_zone_id: owned.hosted_zone_id.clone(),
            name: owned.name.clone(),
            record_type: owned.record_type.clone(),
            ttl: owned.ttl,
            old_values: Some(owned.values.clone()),
            new_values: owned.values.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::planfile::fixtures::resource_change as change;
    use crate::planfile::{Replacement, ResourceAction, ResourceChange};

    #[test]
    fn the_endpoint_resources_are_whatever_the_endpoint_output_names() {
        let resources = json!({"EIP": {}, "Lb": {}, "Nlb": {}, "Other": {}});
        let names = |value: Value| {
            endpoint_resources(&json!({
                "Resources": resources,
                "Outputs": {ENDPOINT_OUTPUT: {"Value": value}}
            }))
            .into_iter()
            .collect::<Vec<_>>()
        };
        assert_eq!(names(json!({"Ref": "EIP"})), ["EIP"]);
        assert_eq!(names(json!({"Fn::GetAtt": ["Lb", "DNSName"]})), ["Lb"]);
        assert_eq!(names(json!({"Fn::GetAtt": "Nlb.DNSName"})), ["Nlb"]);
        assert_eq!(
            names(json!({"Fn::Sub": "${Lb.DNSName}:${AWS::Region}"})),
            ["Lb"],
            "pseudo parameters are not resources"
        );
        assert_eq!(
            names(json!({"Fn::Sub": ["${X}", {"X": {"Ref": "EIP"}}]})),
            ["EIP"]
        );
        assert_eq!(
            names(json!({"Fn::If": ["c", {"Ref": "Lb"}, {"Ref": "EIP"}]})),
            ["EIP", "Lb"]
        );
        assert!(names(json!("203.0.113.1")).is_empty());
        assert!(endpoint_resources(&json!({"Resources": resources})).is_empty());
    }

    fn stack(action: Action, changes: Vec<ResourceChange>) -> StackChange {
        StackChange {
            name: "s".into(),
            action,
            change_set_name: None,
            change_set_arn: None,
            template_sha256: None,
            template_url: None,
            resource_changes: changes,
        }
    }

    #[test]
    fn the_record_value_is_known_unless_what_is_behind_the_endpoint_may_change() {
        let template = json!({
            "Resources": {"MyLoadBalancer": {}, "Workers": {}},
            "Outputs": {ENDPOINT_OUTPUT: {"Value": {"Fn::GetAtt": ["MyLoadBalancer", "DNSName"]}}}
        });
        let outputs = BTreeMap::from([(ENDPOINT_OUTPUT.to_string(), "lb.example".to_string())]);
        let values = |stack: StackChange| endpoint_values(&stack, &template, &outputs);
        let unknown = vec![KNOWN_AFTER_APPLY.to_string()];
        assert_eq!(values(stack(Action::NoOp, vec![])), ["lb.example"]);
        assert_eq!(
            values(stack(
                Action::Update,
                vec![change(
                    "Workers",
                    ResourceAction::Modify,
                    Some(Replacement::True)
                )]
            )),
            ["lb.example"],
            "a replaced resource the endpoint does not name changes nothing"
        );
        for (replacement, expected) in [
            (Replacement::True, unknown.clone()),
            (Replacement::Conditional, unknown.clone()),
            (Replacement::False, vec!["lb.example".to_string()]),
        ] {
            let modified = change("MyLoadBalancer", ResourceAction::Modify, Some(replacement));
            assert_eq!(
                values(stack(Action::Update, vec![modified])),
                expected,
                "{replacement}"
            );
        }
        assert_eq!(values(stack(Action::Create, vec![])), unknown);
        assert_eq!(
            endpoint_values(&stack(Action::NoOp, vec![]), &template, &BTreeMap::new()),
            unknown,
            "no output yet"
        );
    }

    #[test]
    fn a_record_is_upserted_unless_it_holds_the_values_and_ttl_and_owned_ones_no_longer_wanted_are_deleted()
     {
        let spec = RecordSpec {
            name: "api.example.com.".into(),
            record_type: "A".into(),
            ttl: 300,
            zone: None,
        };
        let live = |ttl, value: &str| {
            Some(RecordValue {
                ttl,
                values: vec![value.to_string()],
            })
        };
        let values = vec!["10.0.0.50".to_string()];
        let action = |live| record_change(&spec, "Z".into(), live, values.clone()).action;
        assert_eq!(action(live(300, "10.0.0.50")), RecordAction::NoOp);
        assert_eq!(action(live(60, "10.0.0.50")), RecordAction::Upsert);
        assert_eq!(action(live(300, "10.0.0.9")), RecordAction::Upsert);
        assert_eq!(action(None), RecordAction::Upsert);

        let mut prior = State::new("demo", "l".into());
        for (name, record_type) in [("api.example.com.", "A"), ("old.example.com", "CNAME")] {
            prior.records.push(crate::state::RecordState {
                hosted_zone_id: "/hostedzone/Z".into(),
                name: name.into(),
                record_type: record_type.into(),
                ttl: 300,
                values: vec!["v".into()],
            });
        }
        let wanted = [record_change(&spec, "Z".into(), None, values.clone())];
        let removed = removed_records(Some(&prior), &wanted);
        assert_eq!(removed.len(), 1);
        assert_eq!(
            (removed[0].action, removed[0].name.as_str()),
            (RecordAction::Delete, "old.example.com")
        );
        assert_eq!(
            removed[0].new_values,
            ["v"],
            "a deletion names what is there"
        );
        assert_eq!(removed_records(Some(&prior), &[]).len(), 2, "a destroy");
        assert!(removed_records(None, &[]).is_empty());
    }
}
