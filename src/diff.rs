//! What changed and what it will do: asset diffs with secrets redacted, the stack template's
//! changed resources and properties, and the replacement and rolling-update forecast.
//! Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::Value;

use crate::planfile::{Replacement, ResourceAction, RollingForecast};

/// Replaces every secret in `text` with `<redacted sha256:…>`: the given ciphertexts, PEM
/// private key blocks, and any long base64 token that decodes to key material.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 16) {
        if out.contains(secret) {
            out = out.replace(secret, &crate::hash::redacted(secret));
        }
    }
    while let Some(start) = out
        .find("-----BEGIN ")
        .filter(|&i| out[i..].contains("PRIVATE KEY-----"))
    {
        let Some(end_marker) = out[start..].find("-----END ") else {
            break;
        };
        let end = out[start + end_marker..]
            .find("KEY-----")
            .map(|i| start + end_marker + i + "KEY-----".len())
            .unwrap_or(out.len());
        let block = out[start..end].to_string();
        out.replace_range(start..end, &crate::hash::redacted(&block));
    }
    let tokens: Vec<String> = out
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='))
        .filter(|t| t.len() >= 40)
        .filter(|t| {
            BASE64
                .decode(t)
                .map(|bytes| decodes_to_key_material(&bytes))
                .unwrap_or(false)
        })
        .map(str::to_string)
        .collect();
    for token in tokens {
        out = out.replace(&token, &crate::hash::redacted(&token));
    }
    out
}

fn decodes_to_key_material(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    if text.contains("PRIVATE KEY") {
        return true;
    }
    // Gzip that hides a key is key material too.
    if bytes.starts_with(&[0x1f, 0x8b]) {
        // Bounded: a small gzip may inflate to gigabytes.
        return match inflate_at_most(flate2::read::GzDecoder::new(bytes), USERDATA_TEXT_LIMIT) {
            Some(inner) => inner.contains("PRIVATE KEY"),
            // Too large to look inside: treat it as hiding a key rather than show it.
            None => true,
        };
    }
    false
}

/// A unified diff of two texts (3 lines of context), or `None` when they are equal.
pub fn unified(path: &str, old: &str, new: &str) -> Option<String> {
    if old == new {
        return None;
    }
    let diff = similar::TextDiff::from_lines(old, new);
    Some(
        diff.unified_diff()
            .context_radius(3)
            .header(&format!("a/{path}"), &format!("b/{path}"))
            .to_string(),
    )
}

/// At most `limit` bytes of text from a gzip stream, or `None` beyond (a small gzip may
/// inflate to gigabytes).
fn inflate_at_most(decoder: impl Read, limit: u64) -> Option<String> {
    let mut text = String::new();
    decoder.take(limit + 1).read_to_string(&mut text).ok()?;
    (text.len() as u64 <= limit).then_some(text)
}

/// The most text kube-aws inflates from gzip (user data is 16 KB compressed at most; its
/// cloud-configs a few hundred kilobytes).
const USERDATA_TEXT_LIMIT: u64 = 8 * 1024 * 1024;

/// Decodes gzip+base64 userdata back to the cloud-config text (none beyond the limit).
pub fn decode_userdata(userdata: &str) -> Option<String> {
    let gz = BASE64.decode(userdata).ok()?;
    inflate_at_most(flate2::read::GzDecoder::new(&gz[..]), USERDATA_TEXT_LIMIT)
}

/// How one resource differs between two templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDiff {
    pub logical_id: String,
    pub resource_type: String,
    /// `Add`, `Modify` or `Remove`.
    pub action: ResourceAction,
    /// Changed top-level `Properties` keys, and `UpdatePolicy`/`DependsOn`/`Metadata` if those
    /// changed.
    pub changed_properties: Vec<String>,
}

fn resources(template: &Value) -> BTreeMap<String, Value> {
    template
        .get("Resources")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The resources that differ between the deployed template and the new one.
pub fn template_diff(old: &Value, new: &Value) -> Vec<ResourceDiff> {
    let old_resources = resources(old);
    let new_resources = resources(new);
    let ids: BTreeSet<&String> = old_resources.keys().chain(new_resources.keys()).collect();
    let type_of = |r: &Value| r["Type"].as_str().unwrap_or_default().to_string();
    let mut out = Vec::new();
    for id in ids {
        match (old_resources.get(id), new_resources.get(id)) {
            (None, Some(n)) => out.push(ResourceDiff {
                logical_id: id.clone(),
                resource_type: type_of(n),
                action: ResourceAction::Add,
                changed_properties: vec![],
            }),
            (Some(o), None) => out.push(ResourceDiff {
                logical_id: id.clone(),
                resource_type: type_of(o),
                action: ResourceAction::Remove,
                changed_properties: vec![],
            }),
            (Some(o), Some(n)) if o != n => {
                let empty = serde_json::Map::new();
                let op = o["Properties"].as_object().unwrap_or(&empty);
                let np = n["Properties"].as_object().unwrap_or(&empty);
                let keys: BTreeSet<&String> = op.keys().chain(np.keys()).collect();
                let mut changed: Vec<String> = keys
                    .into_iter()
                    .filter(|k| op.get(*k) != np.get(*k))
                    .cloned()
                    .collect();
                for attribute in ["UpdatePolicy", "DependsOn", "Metadata", "Type"] {
                    if o.get(attribute) != n.get(attribute) {
                        changed.push(attribute.to_string());
                    }
                }
                out.push(ResourceDiff {
                    logical_id: id.clone(),
                    resource_type: type_of(n),
                    action: ResourceAction::Modify,
                    changed_properties: changed,
                });
            }
            _ => {}
        }
    }
    out
}

#[derive(Deserialize)]
struct CreateOnlyTable {
    types: BTreeMap<String, CreateOnly>,
}

#[derive(Deserialize)]
struct CreateOnly {
    create_only: Vec<String>,
    conditional: Vec<String>,
}

fn create_only_table() -> &'static CreateOnlyTable {
    static TABLE: OnceLock<CreateOnlyTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        serde_json::from_str(include_str!("../data/create-only-properties.json"))
            .expect("data/create-only-properties.json is valid")
    })
}

/// Forecasts CloudFormation's `Replacement` for a modification from the properties that
/// changed: `True` if any is create-only, `Conditional` if any may force replacement,
/// `False` otherwise, `None` for types the table does not know.
pub fn forecast_replacement(resource_type: &str, changed: &[String]) -> Option<Replacement> {
    let entry = create_only_table().types.get(resource_type)?;
    if changed
        .iter()
        .any(|p| entry.create_only.contains(p) || p == "Type")
    {
        Some(Replacement::True)
    } else if changed.iter().any(|p| entry.conditional.contains(p)) {
        Some(Replacement::Conditional)
    } else {
        Some(Replacement::False)
    }
}

/// Auto Scaling groups of `template` whose instances roll: their launch template (direct or
/// in a mixed instances policy) is one of `changed` (logical ids of modified resources), or
/// the group moves to other subnets (`VPCZoneIdentifier`), the changes the UpdatePolicy
/// attribute reference lists as starting an AutoScalingRollingUpdate. The instances that roll
/// are those running now: the group's size in the `deployed` template (its minimum for an
/// autoscaled group, which has no desired capacity); new ones start on the new version anyway.
pub fn rolling_forecasts(
    template: &Value,
    deployed: &Value,
    changed: &BTreeSet<String>,
) -> BTreeMap<String, RollingForecast> {
    let mut out = BTreeMap::new();
    for (id, resource) in resources(template) {
        if resource["Type"] != "AWS::AutoScaling::AutoScalingGroup" {
            continue;
        }
        let properties = &resource["Properties"];
        let launch_template = properties["LaunchTemplate"]["LaunchTemplateId"]["Ref"]
            .as_str()
            .or_else(|| {
                properties["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
                    ["LaunchTemplateId"]["Ref"]
                    .as_str()
            })
            .unwrap_or_default();
        // A new mixed instances policy (other types, another on-demand/spot split, or a group
        // that starts or stops using one) replaces instances to match it, as
        // UpdateAutoScalingGroup documents; counted as rolling so the plan never understates it.
        let regrouped = deployed["Resources"].get(&id).is_some_and(|old| {
            let old = &old["Properties"];
            old["VPCZoneIdentifier"] != properties["VPCZoneIdentifier"]
                || old["MixedInstancesPolicy"] != properties["MixedInstancesPolicy"]
        });
        if !changed.contains(launch_template) && !regrouped {
            continue;
        }
        // (size, whether it is only the group's minimum: no desired capacity to go by)
        let size = |r: &Value| {
            number(&r["Properties"]["DesiredCapacity"])
                .map(|n| (n, false))
                .or_else(|| number(&r["Properties"]["MinSize"]).map(|n| (n, true)))
        };
        let (instances, autoscaled) = deployed["Resources"]
            .get(&id)
            .and_then(size)
            .or_else(|| size(&resource))
            .unwrap_or((0, false));
        let policy = &resource["UpdatePolicy"]["AutoScalingRollingUpdate"];
        let max_batch_size = number(&policy["MaxBatchSize"]).unwrap_or(1).max(1);
        out.insert(
            id,
            RollingForecast {
                instances,
                autoscaled,
                max_batch_size,
                batches: instances.div_ceil(max_batch_size),
                min_in_service: number(&policy["MinInstancesInService"]).unwrap_or(0),
                pause_time: policy["PauseTime"].as_str().unwrap_or("PT0S").to_string(),
                drain_timeout_seconds: termination_hook_timeout(properties),
            },
        );
    }
    out
}

/// How long a group's termination lifecycle hook holds an instance (its `HeartbeatTimeout`,
/// 3600 s unless set), if it has one: the instances it terminates are drained first.
fn termination_hook_timeout(properties: &Value) -> Option<u32> {
    properties["LifecycleHookSpecificationList"]
        .as_array()?
        .iter()
        .find(|hook| hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING")
        .map(|hook| number(&hook["HeartbeatTimeout"]).unwrap_or(3600))
}

/// A template number, which CloudFormation takes as a JSON number or a string of one.
fn number(value: &Value) -> Option<u32> {
    value
        .as_u64()
        .map(|n| n as u32)
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gzip_that_inflates_past_the_limit_is_not_inflated() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b'a'; 9 * 1024 * 1024]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        assert_eq!(decode_userdata(&BASE64.encode(&bomb)), None);
        assert!(
            decodes_to_key_material(&bomb),
            "too large to look inside is not shown"
        );
    }
    use serde_json::json;

    #[test]
    fn redact_hides_ciphertexts_pem_keys_and_encoded_keys() {
        // Built at run time so no key-shaped literal is committed.
        let kind = "PRIVATE KEY";
        let pem = format!(
            "-----BEGIN {kind}-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END {kind}-----"
        );
        let encoded = BASE64.encode(format!("{pem}\n"));
        let text =
            format!("content: QUJDREVGR0hJSktMTU5PUA==\n{pem}\nblob: {encoded}\nkeep: hello\n");
        let out = redact(&text, &["QUJDREVGR0hJSktMTU5PUA=="]);
        assert!(!out.contains("QUJDREVGR0hJSktMTU5PUA=="), "{out}");
        assert!(!out.contains("PRIVATE KEY"), "{out}");
        assert!(!out.contains(&encoded), "{out}");
        assert_eq!(out.matches("<redacted sha256:").count(), 3, "{out}");
        assert!(out.contains("keep: hello"));
    }

    #[test]
    fn template_diff_names_changed_properties() {
        let old = json!({"Resources": {
            "A": {"Type": "AWS::EC2::Subnet", "Properties": {"CidrBlock": "10.0.0.0/24", "VpcId": "v"}},
            "B": {"Type": "AWS::EC2::VPC", "Properties": {}},
        }});
        let new = json!({"Resources": {
            "A": {"Type": "AWS::EC2::Subnet", "Properties": {"CidrBlock": "10.0.1.0/24", "VpcId": "v"}},
            "C": {"Type": "AWS::EC2::VPC", "Properties": {}},
        }});
        let diff = template_diff(&old, &new);
        assert_eq!(diff.len(), 3);
        assert_eq!(
            (diff[0].action, diff[0].changed_properties.clone()),
            (ResourceAction::Modify, vec!["CidrBlock".to_string()])
        );
        assert_eq!(diff[1].action, ResourceAction::Remove);
        assert_eq!(diff[2].action, ResourceAction::Add);
        assert_eq!(
            forecast_replacement("AWS::EC2::Subnet", &diff[0].changed_properties),
            Some(Replacement::True)
        );
        assert_eq!(
            forecast_replacement("AWS::EC2::Instance", &["InstanceType".into()]),
            Some(Replacement::Conditional)
        );
        assert_eq!(
            forecast_replacement("AWS::EC2::Instance", &["Tags".into()]),
            Some(Replacement::False)
        );
        assert_eq!(
            forecast_replacement("AWS::Unknown::Thing", &["X".into()]),
            None
        );
    }

    #[test]
    fn a_mixed_group_rolls_with_its_launch_template_and_any_group_rolls_when_it_moves() {
        let group = |subnets: Value| {
            json!({"Resources": {
                "LaunchTemplateSpot": {"Type": "AWS::EC2::LaunchTemplate"},
                "AutoScaleSpot": {"Type": "AWS::AutoScaling::AutoScalingGroup",
                    "Properties": {"MinSize": "0", "MaxSize": "9",
                        "MixedInstancesPolicy": {"LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateId": {"Ref": "LaunchTemplateSpot"}}}},
                        "VPCZoneIdentifier": subnets},
                    "UpdatePolicy": {"AutoScalingRollingUpdate": {"MinInstancesInService": "0"}}}
            }})
        };
        let here = group(json!([{"Ref": "Subnet0"}]));
        let changed = BTreeSet::from(["LaunchTemplateSpot".to_string()]);
        let forecast = &rolling_forecasts(&here, &here, &changed)["AutoScaleSpot"];
        // No desired capacity (autoscaled): at least its minimum rolls, and the plan says so.
        assert_eq!((forecast.instances, forecast.batches), (0, 0));
        assert_eq!(forecast.instances_text(), "at least 0 (autoscaled)");
        assert!(rolling_forecasts(&here, &here, &BTreeSet::new()).is_empty());
        let moved = group(json!([{"Ref": "Subnet0"}, {"Ref": "Subnet1"}]));
        assert!(
            rolling_forecasts(&moved, &here, &BTreeSet::new()).contains_key("AutoScaleSpot"),
            "a new VPCZoneIdentifier rolls the group"
        );
        let mut retyped = here.clone();
        retyped["Resources"]["AutoScaleSpot"]["Properties"]["MixedInstancesPolicy"]["LaunchTemplate"]
            ["Overrides"] = json!([{"InstanceType": "m7i.large"}]);
        assert!(
            rolling_forecasts(&retyped, &here, &BTreeSet::new()).contains_key("AutoScaleSpot"),
            "new instance types replace instances"
        );
    }

    #[test]
    fn rolling_forecast_uses_size_and_update_policy() {
        let template = json!({"Resources": {
            "LaunchTemplateWorkers": {"Type": "AWS::EC2::LaunchTemplate"},
            "AutoScaleWorkers": {"Type": "AWS::AutoScaling::AutoScalingGroup",
                "Properties": {"DesiredCapacity": "5", "LaunchTemplate": {"LaunchTemplateId": {"Ref": "LaunchTemplateWorkers"}}},
                "UpdatePolicy": {"AutoScalingRollingUpdate": {"MaxBatchSize": "2", "MinInstancesInService": "5", "PauseTime": "PT3M"}}},
        }});
        let changed = BTreeSet::from(["LaunchTemplateWorkers".to_string()]);
        let forecast = &rolling_forecasts(&template, &template, &changed)["AutoScaleWorkers"];
        assert_eq!(
            (
                forecast.instances,
                forecast.max_batch_size,
                forecast.batches
            ),
            (5, 2, 3)
        );
        assert!(rolling_forecasts(&template, &template, &BTreeSet::new()).is_empty());
        // Growing the group from 2 to 5: the 2 running instances roll, in one batch of 2.
        let mut deployed = template.clone();
        deployed["Resources"]["AutoScaleWorkers"]["Properties"]["DesiredCapacity"] = json!("2");
        let forecast = &rolling_forecasts(&template, &deployed, &changed)["AutoScaleWorkers"];
        assert_eq!((forecast.instances, forecast.batches), (2, 1));
    }
}
