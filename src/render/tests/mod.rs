//! The render tests: helpers every test file uses, and rendering as a whole.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::*;
use crate::assets::TlsAsset;
use crate::releases::{DEFAULT_KUBERNETES_VERSION, check_kubernetes_version, parse_minor};

mod nodes;
mod pools;
mod security;

fn config(extra: &str) -> ClusterConfig {
    let text = format!(
        "clusterName: demo\nexternalDNSName: k8s.example.com\nregion: us-west-2\navailabilityZone: us-west-2a\nkmsKeyArn: arn:aws:kms:us-west-2:1:key/x\ntemplateBucket: demo-artifacts\n{extra}"
    );
    ClusterConfig::parse(Path::new("cluster.yaml"), &text).unwrap()
}

fn tls() -> TlsAssets {
    crate::assets::tls::all_names()
        .map(|name| {
            (
                name.to_string(),
                TlsAsset {
                    name: name.to_string(),
                    spec_sha256: format!("spec-{name}"),
                    certificate_pem: format!(
                        "-----BEGIN CERTIFICATE-----\n{name}\n-----END CERTIFICATE-----\n"
                    ),
                    public_key_pem: (name == crate::assets::tls::SERVICE_ACCOUNT).then(|| {
                        "-----BEGIN PUBLIC KEY-----\nsa\n-----END PUBLIC KEY-----\n".to_string()
                    }),
                    certificate_sha256: format!("sha-{name}"),
                    key_ciphertext: format!("Q0lQSEVS{}", name.len()),
                    not_after: "2030-01-01T00:00:00Z".into(),
                },
            )
        })
        .collect()
}

fn render_with(config: &ClusterConfig, templates: &Templates) -> Result<Rendered, RenderError> {
    render(
        templates,
        &RenderInputs {
            config,
            ami_id: "ami-0123456789abcdef0",
            tls: &tls(),
            keep_pools_in_cluster_stack: false,
            reuse_pools: &Default::default(),
        },
    )
}

fn stack(rendered: &Rendered) -> Value {
    serde_json::from_str(&rendered.stack_template).unwrap()
}

/// Every `Ref`, `Fn::GetAtt` and `DependsOn` target in `value`.
/// Every statement a role of the stack carries: its inline policy's, then those of the stack's
/// managed policies it names (an ARN from outside the stack adds none).
fn role_statements(stack: &Value, role: &str) -> Vec<Value> {
    let properties = &stack["Resources"][role]["Properties"];
    let mut statements = properties["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap()
        .clone();
    for arn in properties["ManagedPolicyArns"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(policy) = arn["Ref"].as_str() {
            let document = &stack["Resources"][policy]["Properties"]["PolicyDocument"];
            statements.extend(document["Statement"].as_array().unwrap().iter().cloned());
        }
    }
    statements
}

/// A policy statement's `Action` or `Resource`: one string or a list of them.
fn one_or_many(value: &Value) -> Vec<String> {
    match value {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect(),
        other => panic!("neither a string nor a list: {other}"),
    }
}

fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("Ref", Value::String(target)) => out.push(target.clone()),
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        out.push(parts[0].as_str().unwrap().to_string())
                    }
                    ("DependsOn", Value::String(target)) => out.push(target.clone()),
                    _ => references(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| references(i, out)),
        _ => {}
    }
}

fn assert_references_resolve(stack: &Value) {
    let resources: BTreeSet<String> = stack["Resources"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let parameters: BTreeSet<String> = stack
        .get("Parameters")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let mut found = Vec::new();
    references(stack, &mut found);
    assert!(!found.is_empty());
    for target in found {
        assert!(
            resources.contains(&target)
                || parameters.contains(&target)
                || target.starts_with("AWS::"),
            "{target} is referenced but not defined"
        );
    }
}

#[test]
fn rendering_twice_gives_identical_bytes() {
    let c = config("nodePools:\n  - name: gpu\n");
    let a = render_with(&c, &Templates::built_in()).unwrap();
    let b = render_with(&c, &Templates::built_in()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn every_reference_resolves_for_single_and_multi_controller_clusters() {
    for extra in [
        "",
        "controllerCount: 3\netcdCount: 3\nsubnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.1.0/24\nnodePools:\n  - name: gpu\n    spotPrice: \"0.5\"\n",
        "vpcId: vpc-123\nrouteTableId: rtb-123\n",
        "vpcId: vpc-123\n",
    ] {
        let rendered = render_with(&config(extra), &Templates::built_in()).unwrap();
        assert_references_resolve(&stack(&rendered));
    }
}

/// An upgrade in one stack keeps the skew policy's order because CloudFormation changes a
/// resource only after those it depends on: every worker group waits for the controllers'
/// group (or instance), which waits for every etcd member's. (With `stackPerPool`, apply orders the stacks;
/// `operations::a_minor_upgrade_…` shows it.)
#[test]
fn in_one_stack_the_nodes_roll_after_the_controllers_and_the_controllers_after_etcd() {
    for extra in [
        "",
        "controllerCount: 3\netcdCount: 3\nnodePools:\n  - name: gpu\n",
    ] {
        let stack = stack(&render_with(&config(extra), &Templates::built_in()).unwrap());
        let resources = stack["Resources"].as_object().unwrap();
        let groups: Vec<&String> = resources
            .iter()
            .filter(|(_, r)| r["Type"] == "AWS::AutoScaling::AutoScalingGroup")
            .map(|(id, _)| id)
            .collect();
        let etcd: Vec<_> = groups
            .iter()
            .filter(|id| id.starts_with("AutoScaleEtcd"))
            .collect();
        // A single controller without a load balancer is an instance, not a group.
        let controller = ["AutoScaleController", "InstanceController"]
            .map(String::from)
            .into_iter()
            .find(|id| resources.contains_key(id))
            .expect("a controller");
        let workers: Vec<_> = groups
            .iter()
            .filter(|id| !id.starts_with("AutoScaleEtcd") && ***id != controller)
            .collect();
        let depends = |id: &str| one_or_many(&resources[id]["DependsOn"]);
        assert!(!etcd.is_empty() && !workers.is_empty(), "{extra}");
        for worker in &workers {
            assert!(depends(worker).contains(&controller), "{worker}: {extra}");
        }
        for member in &etcd {
            assert!(depends(&controller).contains(member), "{member}: {extra}");
        }
    }
}

#[test]
fn userdata_is_the_gzipped_cloud_config() {
    let rendered = render_with(&config(""), &Templates::built_in()).unwrap();
    let stack = stack(&rendered);
    let userdata = stack["Resources"]["InstanceController"]["Properties"]["UserData"]
        .as_str()
        .unwrap();
    let gz = BASE64.decode(userdata).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, rendered.cloud_configs["cloud-config-controller"]);
    assert!(text.starts_with("#cloud-config\n"));
}

#[test]
fn unknown_template_variable_names_template_and_line() {
    let mut overrides = BTreeMap::new();
    overrides.insert(
        WORKER,
        "#cloud-config\nhostname: x\nfoo: {{ no_such_variable }}\n".to_string(),
    );
    let err = render_with(&config(""), &Templates::with_overrides(overrides)).unwrap_err();
    assert_eq!(
        err.to_string().split(": ").next().unwrap(),
        "userdata/cloud-config-worker:3",
        "{err}"
    );
}

#[test]
fn invalid_stack_json_names_line_and_column() {
    let mut overrides = BTreeMap::new();
    overrides.insert(STACK, "{\n  \"Resources\": {,}\n}\n".to_string());
    let err = render_with(&config(""), &Templates::with_overrides(overrides)).unwrap_err();
    match err {
        RenderError::StackJson { line, .. } => assert_eq!(line, 2),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn kubernetes_versions_are_checked() {
    assert!(check_kubernetes_version(DEFAULT_KUBERNETES_VERSION).is_ok());
    assert!(check_kubernetes_version("v1.36.5").is_ok());
    assert!(check_kubernetes_version("1.36.5").is_err());
    // End of life upstream: refused with the supported list.
    let err = check_kubernetes_version("v1.31.4").unwrap_err();
    assert!(err.contains("v1.37 (until 2027-10-28)"), "{err}");
    assert!(check_kubernetes_version("v1.20.0").is_err());
}

#[test]
fn the_default_version_is_the_release_data_default_and_newest_minor() {
    let data = releases();
    assert_eq!(data.default, DEFAULT_KUBERNETES_VERSION);
    let newest = data.minors.iter().map(|m| m.minor).max().unwrap();
    let default = data
        .minors
        .iter()
        .find(|m| m.patch == DEFAULT_KUBERNETES_VERSION)
        .expect("the default is a pinned patch release");
    assert_eq!(default.minor, newest);
    // At least six months of upstream support from the day the data was checked.
    assert!(default.end_of_life.as_str() >= "2027-05-26", "{default:?}");
}

#[test]
fn images_are_pinned_by_digest_where_one_is_recorded() {
    let pinned = images("v1.36.5");
    assert!(
        pinned
            .apiserver
            .starts_with("registry.k8s.io/kube-apiserver:v1.36.5@sha256:"),
        "{}",
        pinned.apiserver
    );
    let tagged = images("v1.37.1");
    assert_eq!(tagged.apiserver, "registry.k8s.io/kube-apiserver:v1.37.1");
    assert_eq!(tagged.etcd, "quay.io/coreos/etcd:v3.6.8");
}

const THREE_POOLS: &str = "nodePools:\n  - name: gpu\n    labels: {accelerator: nvidia, node.kubernetes.io/pool-kind: gpu}\n    taints: [{key: nvidia.com/gpu, value: \"true\", effect: NoSchedule}]\n  - name: batch\n  - name: spot\n    spotPrice: \"0.1\"\n";

#[test]
fn rendering_needs_a_bucket_for_the_addons() {
    let text = "clusterName: demo\nexternalDNSName: k8s.example.com\nregion: us-west-2\navailabilityZone: us-west-2a\nkmsKeyArn: arn:aws:kms:us-west-2:1:key/x\n";
    let c = ClusterConfig::parse(Path::new("cluster.yaml"), text).unwrap();
    let e = render_with(&c, &Templates::built_in()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cluster.yaml: templateBucket: required with the local state backend"),
        "{e}"
    );
}

/// A cluster with three zones and pools that use each new pool setting.
const SHAPED_POOLS: &str = "subnets:\n  - {availabilityZone: us-west-2a, instanceCIDR: 10.0.0.0/24}\n  - {availabilityZone: us-west-2b, instanceCIDR: 10.0.1.0/24}\n  - {id: subnet-0123456789abcdef0, availabilityZone: us-west-2c, instanceCIDR: 10.0.2.0/24}\nvpcId: vpc-0123456789abcdef0\nrouteTableId: rtb-0123456789abcdef0\nclusterAutoscaler: {enabled: true}\nnodePools:\n  - name: spot\n    count: 4\n    instanceTypes: [m6i.large, m5.large, m5a.large]\n    onDemandBaseCapacity: 1\n    spotPrice: \"0.08\"\n    subnets: [us-west-2b, subnet-0123456789abcdef0]\n  - name: batch\n    autoscaled: true\n    minSize: 0\n    maxSize: 20\n    labels: {workload: batch}\n    taints: [{key: dedicated, value: batch, effect: NoSchedule}]\n    managedPolicies: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]\n  - name: byo\n    count: 1\n    instanceProfileArn: arn:aws:iam::123456789012:instance-profile/byo-nodes\n";

const PRIVATE: &str = "subnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.1.0/24\nprivateSubnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.10.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.11.0/24\netcdCount: 3\n";
