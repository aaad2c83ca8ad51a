//! Contracts between components that no single tool sees: the name a node registers under
//! against how the AWS cloud controller finds its instance, the addresses nodes reach the API
//! by against what the stack creates, and each wait against what it waits for. Each runs the
//! rendered scripts or reads the rendered files, and asks moto's EC2 where AWS has the answer.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::{FLATCAR_AMI, block_on, moto};
use crate::lab::serve_imds;
use crate::payload::{
    RenderedCluster, WrittenFile, WrittenUnit, cloud_config_parts, render_cluster,
};

/// What EC2 knows of one instance, as IMDS reports it.
#[derive(Debug, Clone)]
struct Instance {
    id: String,
    private_dns_name: String,
    zone: String,
}

/// The text of file `path` a rendered cloud-config `asset` writes.
fn rendered_file(cluster: &RenderedCluster, asset: &str, path: &str) -> String {
    let (files, _) = cloud_config_parts(&cluster.rendered.cloud_configs[asset], Some("10.0.0.99"));
    files
        .iter()
        .find(|f| f.path == path)
        .map(|f| String::from_utf8_lossy(&f.content).into_owned())
        .unwrap_or_else(|| panic!("{asset} writes no {path}"))
}

/// `content` written to `dir/name` as an executable, for a rendered script to run here.
fn executable(dir: &std::path::Path, name: &str, content: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// An instance moto runs (a real DescribeInstances answers for it afterwards).
fn run_instance() -> Instance {
    block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto().sdk_config().await);
        let out = ec2
            .run_instances()
            .image_id(FLATCAR_AMI)
            .instance_type(aws_sdk_ec2::types::InstanceType::M6iLarge)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("moto runs an instance");
        let i = &out.instances()[0];
        Instance {
            id: i.instance_id().unwrap().to_string(),
            private_dns_name: i.private_dns_name().unwrap().to_string(),
            zone: i
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap()
                .to_string(),
        }
    })
}

/// The instances whose private DNS name is `name` (the cloud controller's lookup of a Node
/// without a provider id).
fn instances_named(name: &str) -> Vec<String> {
    block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto().sdk_config().await);
        let out = ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("private-dns-name")
                    .values(name)
                    .build(),
            )
            .send()
            .await
            .expect("describe instances");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| i.instance_id().unwrap().to_string())
            .collect()
    })
}

/// The availability zone EC2 reports for `id`, if it knows the instance.
fn zone_of(id: &str) -> Option<String> {
    block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto().sdk_config().await);
        let out = ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .ok()?;
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id))
            .and_then(|i| i.placement()?.availability_zone().map(str::to_string))
    })
}

fn imds_answers(instance: &Instance, local_hostname: &str) -> Vec<(String, String)> {
    vec![
        (
            "meta-data/local-hostname".to_string(),
            local_hostname.to_string(),
        ),
        ("meta-data/instance-id".to_string(), instance.id.clone()),
        (
            "meta-data/placement/availability-zone".to_string(),
            instance.zone.clone(),
        ),
    ]
}

/// The name and provider id a rendered kubelet registers with on `instance`: the identity
/// script run against IMDS for it, the kubelet's `--hostname-override` resolved from the file
/// it writes, and its drop-in's `providerID`. Without either, what the kubelet falls back to:
/// the host name Flatcar's coreos-cloudinit sets, the metadata host name cut at the first dot.
fn kubelet_identity(
    files: &[WrittenFile],
    units: &[WrittenUnit],
    instance: &Instance,
) -> (String, Option<String>) {
    let exec = units
        .iter()
        .find(|u| u.name == "kubelet.service")
        .and_then(|u| u.content.as_deref())
        .and_then(|c| c.lines().find(|l| l.starts_with("ExecStart=")))
        .expect("a kubelet ExecStart")
        .to_string();
    let work = tempfile::tempdir().unwrap();
    let mut env = Vec::new();
    let mut provider_id = None;
    if let Some(script) = files.iter().find(|f| f.path == "/opt/bin/node-identity") {
        let path = executable(work.path(), "node-identity", &script.content);
        let out_dir = work.path().join("run");
        let endpoint = serve_imds(imds_answers(instance, &instance.private_dns_name));
        let out = Command::new(&path)
            .env("KUBE_AWS_IMDS_ENDPOINT", &endpoint)
            .env("KUBE_AWS_IDENTITY_DIR", &out_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "node-identity: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(out_dir.join("node-identity")).unwrap();
        env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if exec.contains("--config-dir=/run/kube-aws/kubelet.conf.d") {
            let drop_in =
                std::fs::read_to_string(out_dir.join("kubelet.conf.d/50-provider-id.conf"))
                    .unwrap();
            let doc: serde_norway::Value = serde_norway::from_str(&drop_in).unwrap();
            assert_eq!(doc["kind"], "KubeletConfiguration");
            provider_id = doc["providerID"].as_str().map(str::to_string);
        }
    }
    let name = match exec
        .split_whitespace()
        .find_map(|a| a.strip_prefix("--hostname-override="))
    {
        Some(value) => match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
            Some(var) => env
                .iter()
                .find(|(k, _)| k == var)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| {
                    panic!("--hostname-override names ${{{var}}}, which nothing sets")
                }),
            None => value.to_string(),
        },
        None => instance
            .private_dns_name
            .split('.')
            .next()
            .unwrap()
            .to_lowercase(),
    };
    (name, provider_id)
}

/// Finding 1 of the first-apply review: the AWS cloud controller finds a Node's instance by
/// its provider id, or without one by `private-dns-name == node name`. Each rendered kubelet,
/// run on a moto instance, must be found both ways: its name is the instance's private DNS
/// name, and its provider id names the instance and its zone in the form the controller parses.
#[test]
#[ignore = "real-component tier (the rendered scripts: bash, curl): scripts/test and CI run it"]
fn every_kubelet_registers_under_the_name_and_provider_id_the_cloud_controller_looks_up() {
    crate::lab::require("bash");
    crate::lab::require("curl");
    let cluster: RenderedCluster = render_cluster("identity", "");
    let instance = run_instance();
    assert!(
        instance.private_dns_name.contains('.'),
        "moto's private DNS name is fully qualified: {instance:?}"
    );
    let mut checked = Vec::new();
    for (asset, text) in &cluster.rendered.cloud_configs {
        if asset.starts_with("cloud-config-etcd") {
            continue;
        }
        let (files, units) = cloud_config_parts(text, Some("10.0.0.99"));
        let (name, provider_id) = kubelet_identity(&files, &units, &instance);
        assert_eq!(
            instances_named(&name),
            vec![instance.id.as_str()],
            "{asset}: the kubelet registers as {name}, which DescribeInstances private-dns-name does not find as {instance:?}"
        );
        let provider_id =
            provider_id.unwrap_or_else(|| panic!("{asset}: the kubelet sets no provider id"));
        let (zone, id) = provider_id
            .strip_prefix("aws:///")
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or_else(|| panic!("{asset}: provider id {provider_id} is not aws:///ZONE/ID"));
        assert_eq!(id, instance.id, "{asset}");
        assert_eq!(zone_of(id).as_deref(), Some(zone), "{asset}: {provider_id}");
        // Whatever else names the node reads the same file, never the host name.
        for f in &files {
            let text = String::from_utf8_lossy(&f.content);
            assert!(
                !text.contains("$(hostname"),
                "{asset}: {} derives the node name from the host name",
                f.path
            );
        }
        checked.push(format!("{asset}: {name} {provider_id}"));
    }
    assert!(checked.len() >= 2, "{checked:?}");
    println!("{}", checked.join("\n"));
}

/// The identity script refuses metadata it cannot name a node after, and writes nothing.
#[test]
#[ignore = "real-component tier (the rendered scripts: bash, curl): scripts/test and CI run it"]
fn the_node_identity_script_refuses_a_hostile_host_name_and_writes_nothing() {
    crate::lab::require("bash");
    crate::lab::require("curl");
    let cluster = render_cluster("identitybad", "");
    let script = rendered_file(&cluster, "cloud-config-worker", "/opt/bin/node-identity");
    let work = tempfile::tempdir().unwrap();
    let path = executable(work.path(), "node-identity", script.as_bytes());
    let instance = Instance {
        id: "i-0123456789abcdef0".into(),
        private_dns_name: String::new(),
        zone: "us-west-2a".into(),
    };
    for hostile in [
        "ip-10-0-0-1.ec2.internal; touch /tmp/owned",
        "Bad_Name",
        "$(id)",
        "",
    ] {
        let endpoint = serve_imds(imds_answers(&instance, hostile));
        let out_dir = work.path().join("run");
        let out = Command::new(&path)
            .env("KUBE_AWS_IMDS_ENDPOINT", &endpoint)
            .env("KUBE_AWS_IDENTITY_DIR", &out_dir)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{hostile:?} was accepted");
        assert!(
            !out_dir.join("node-identity").exists(),
            "{hostile:?}: a file was written"
        );
    }
}

/// The hosts of every `server:` a rendered kubeconfig or the kube-proxy manifest names, with
/// where each is written.
fn api_servers(cluster: &RenderedCluster) -> Vec<(String, String)> {
    let mut servers = Vec::new();
    let mut scan = |place: &str, text: &str| {
        for line in text.lines() {
            if let Some(url) = line.trim().strip_prefix("server: ") {
                let host = url
                    .trim_start_matches("https://")
                    .split([':', '/'])
                    .next()
                    .unwrap()
                    .to_string();
                servers.push((place.to_string(), host));
            }
        }
    };
    for (asset, text) in &cluster.rendered.cloud_configs {
        let (files, _) = cloud_config_parts(text, Some("10.0.0.99"));
        for f in &files {
            scan(
                &format!("{asset} {}", f.path),
                &String::from_utf8_lossy(&f.content),
            );
        }
    }
    scan(
        "kube-proxy.yaml",
        &cluster.rendered.manifests["kube-proxy.yaml"],
    );
    servers
}

/// Whether resource `from` waits for `to`: by DependsOn, Ref or Fn::GetAtt, directly or
/// through what it waits for.
fn waits_for(resources: &serde_json::Value, from: &str, to: &str) -> bool {
    fn targets(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("Ref", serde_json::Value::String(t)) => out.push(t.clone()),
                        ("Fn::GetAtt", serde_json::Value::Array(parts)) => {
                            out.push(parts[0].as_str().unwrap_or_default().to_string())
                        }
                        ("DependsOn", serde_json::Value::String(t)) => out.push(t.clone()),
                        ("DependsOn", serde_json::Value::Array(list)) => {
                            out.extend(list.iter().filter_map(|t| t.as_str()).map(str::to_string))
                        }
                        _ => targets(inner, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| targets(i, out)),
            _ => {}
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut queue = vec![from.to_string()];
    while let Some(next) = queue.pop() {
        if !seen.insert(next.clone()) {
            continue;
        }
        let mut found = Vec::new();
        targets(&resources[&next], &mut found);
        if found.iter().any(|t| t == to) {
            return true;
        }
        queue.extend(found.into_iter().filter(|t| resources.get(t).is_some()));
    }
    false
}

/// The API endpoint layouts, each in one stack, where these contracts are the template's
/// order (in a stack per pool, the pool stacks start only once apply has the cluster stack).
const LAYOUTS: [(&str, &str); 3] = [
    ("endpoint1", "stackPerPool: false\n"),
    ("endpoint3", "stackPerPool: false\ncontrollerCount: 3\n"),
    (
        "endpointnlb",
        "stackPerPool: false\napiEndpointLoadBalancer: {type: network, scheme: internal}\nsubnets: [{availabilityZone: us-west-2a, instanceCIDR: 10.0.0.0/24}, {availabilityZone: us-west-2b, instanceCIDR: 10.0.1.0/24}]\nprivateSubnets: [{availabilityZone: us-west-2a, instanceCIDR: 10.0.10.0/24}, {availabilityZone: us-west-2b, instanceCIDR: 10.0.11.0/24}]\n",
    ),
];

/// Finding 2: every address a node or kube-proxy reaches the API by exists while the stack
/// is created: 127.0.0.1 on a controller (its own API server), or a record of the stack's
/// own, pointed at the resource that serves the API, which every worker group waits for.
#[test]
fn nodes_reach_the_api_by_a_name_the_stack_creates_before_they_need_it() {
    for (prefix, extra) in LAYOUTS {
        let cluster = render_cluster(prefix, extra);
        let template: serde_json::Value =
            serde_json::from_str(&cluster.rendered.stack_template).unwrap();
        let resources = &template["Resources"];
        let groups: Vec<&String> = resources
            .as_object()
            .unwrap()
            .iter()
            .filter(|(id, r)| {
                r["Type"] == "AWS::AutoScaling::AutoScalingGroup"
                    && !id.starts_with("AutoScaleEtcd")
                    && *id != "AutoScaleController"
            })
            .map(|(id, _)| id)
            .collect();
        assert!(!groups.is_empty(), "{prefix}");
        let servers = api_servers(&cluster);
        assert!(servers.len() >= 3, "{prefix}: {servers:?}");
        for (place, host) in &servers {
            if host == "127.0.0.1" {
                assert!(
                    place.starts_with("cloud-config-controller"),
                    "{prefix}: {place} reaches 127.0.0.1, where no API server runs"
                );
                continue;
            }
            let (record, properties) = resources
                .as_object()
                .unwrap()
                .iter()
                .find(|(_, r)| {
                    r["Type"] == "AWS::Route53::RecordSet"
                        && r["Properties"]["Name"].as_str() == Some(host.as_str())
                })
                .unwrap_or_else(|| {
                    panic!("{prefix}: {place} reaches the API at {host}, which no record of the stack names")
                });
            let target = &properties["Properties"]["ResourceRecords"][0]["Fn::GetAtt"];
            let served_by = target[0].as_str().unwrap_or_else(|| {
                panic!("{prefix}: record {record} points at no resource of the stack: {properties}")
            });
            let kind = resources[served_by]["Type"].as_str().unwrap_or_default();
            assert!(
                [
                    "AWS::EC2::Instance",
                    "AWS::ElasticLoadBalancingV2::LoadBalancer",
                    "AWS::ElasticLoadBalancing::LoadBalancer"
                ]
                .contains(&kind),
                "{prefix}: {record} points at {served_by} ({kind})"
            );
            for group in &groups {
                assert!(
                    waits_for(resources, group, record),
                    "{prefix}: {group} may start before {record} exists"
                );
            }
        }
    }
}

/// Finding 3: CloudFormation replaces an instance by creating the new one before deleting
/// the old, and two instances cannot share a private address: nothing it may replace or
/// launch carries a fixed one.
#[test]
fn no_instance_cloudformation_may_replace_has_a_fixed_address() {
    for (prefix, extra) in LAYOUTS {
        let cluster = render_cluster(&format!("{prefix}x"), extra);
        let template: serde_json::Value =
            serde_json::from_str(&cluster.rendered.stack_template).unwrap();
        for (id, resource) in template["Resources"].as_object().unwrap() {
            let kind = resource["Type"].as_str().unwrap_or_default();
            let properties = match kind {
                "AWS::EC2::Instance" => &resource["Properties"],
                "AWS::EC2::LaunchTemplate" => &resource["Properties"]["LaunchTemplateData"],
                _ => continue,
            };
            let text = properties.to_string();
            for fixed in [
                "PrivateIpAddress",
                "\"PrivateIpAddresses\"",
                "\"Ipv6Addresses\"",
            ] {
                assert!(
                    !text.contains(fixed),
                    "{prefix}: {id} ({kind}) sets {fixed}"
                );
            }
        }
    }
}

/// Finding 3 on moto: a one-controller cluster takes a new AMI. The plan says what happens to
/// the API meanwhile; apply completes, the nodes' record names the running controller, and
/// the next plan is empty.
#[test]
fn a_single_controller_takes_a_new_ami_on_moto_and_the_api_record_follows_it() {
    let c = crate::cluster::Cluster::new("newami", false, None);
    c.plan_and_apply();
    let physical = |logical: &str| {
        block_on(moto().stack_resources(&c.name))
            .into_iter()
            .find(|(id, _, _)| id == logical)
            .map(|(_, _, physical)| physical)
            .unwrap_or_else(|| {
                panic!(
                    "no {logical} in the stack: {:?}",
                    block_on(moto().stack_resources(&c.name))
                )
            })
    };
    // moto lists an instance among the stack's resources without its ids: find it by its tag.
    let running_controllers = || {
        block_on(async {
            let ec2 = aws_sdk_ec2::Client::new(&moto().sdk_config().await);
            let filter = |name: &str, value: &str| {
                aws_sdk_ec2::types::Filter::builder()
                    .name(name)
                    .values(value)
                    .build()
            };
            let out = ec2
                .describe_instances()
                .filters(filter("tag:Name", &format!("{}-controller", c.name)))
                .filters(filter("instance-state-name", "running"))
                .send()
                .await
                .unwrap();
            out.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .map(|i| {
                    (
                        i.instance_id().unwrap().to_string(),
                        i.private_ip_address().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
    };
    let old_controllers = running_controllers();
    assert_eq!(old_controllers.len(), 1, "{old_controllers:?}");
    let zone = physical("EtcdZone");
    let image = block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto().sdk_config().await);
        ec2.register_image()
            .name(format!("{}-flatcar-next", c.name))
            .root_device_name("/dev/xvda")
            .architecture(aws_sdk_ec2::types::ArchitectureValues::X8664)
            .virtualization_type("hvm")
            .send()
            .await
            .expect("moto registers an image")
            .image_id()
            .unwrap()
            .to_string()
    });
    c.set("amiId", &image);
    let out = c.expect(2, &["plan", "--detailed-exitcode", "-o", "plan.json"]);
    let text = crate::cluster::stdout(&out);
    assert!(
        text.contains("InstanceController (AWS::EC2::Instance) [ImageId]"),
        "{text}"
    );
    assert!(
        text.contains(
            "the controller is replaced: CloudFormation starts the new one beside the old"
        ) && text.contains(&format!(
            "then api.{}.kube-aws.internal and the elastic IP",
            c.name.to_lowercase()
        )),
        "{text}"
    );
    // The one etcd member rolls too (its launch template has the image): the plan says the
    // API is down meanwhile, rather than only "at least 0 in service".
    assert!(
        text.contains(
            "etcd's only member (etcd-0) is replaced while etcd has 1 voting member(s): with one of them down there is no quorum, so etcd, and with it the Kubernetes API, is down"
        ),
        "{text}"
    );
    c.expect(0, &["apply", "plan.json"]);
    // moto updates the instance in place (it ignores that ImageId requires a replacement), so
    // what it shows is that the update applies and the record names the running controller;
    // that the record follows a replaced one is CloudFormation re-resolving the record's
    // Fn::GetAtt of InstanceController.PrivateIp, which the endpoint contract test checks.
    let new_controllers = running_controllers();
    assert_eq!(
        new_controllers.len(),
        1,
        "one controller runs: {new_controllers:?}"
    );
    let (_, new_address) = new_controllers[0].clone();
    let records = moto().zone_records(&zone);
    // moto writes the name without its final dot.
    let api = format!("api.{}.kube-aws.internal", c.name.to_lowercase());
    assert!(
        records.iter().any(|r| {
            r.trim_start_matches(&api).trim_start_matches('.') == format!(" A {new_address}")
        }),
        "the record does not follow the new controller ({new_address}): {records:?}"
    );
    c.expect(0, &["plan", "--detailed-exitcode"]);
}

/// The longest a rendered bash script can spend sleeping: each `retry` call site the sum of
/// the pauses of `retry`'s attempts (read from its own definition), and each
/// `for _ in $(seq 1 N)` loop N times its `sleep S`.
fn worst_case_sleep_seconds(script: &str) -> u64 {
    let number_after = |text: &str, marker: &str| -> Option<u64> {
        let rest = text.split(marker).nth(1)?;
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let attempts = number_after(script, "\"$attempt\" -ge").expect("retry's attempts");
    let step = number_after(script, "sleep $((attempt *").expect("retry's pause");
    let per_retry: u64 = (1..attempts).map(|a| a * step).sum();
    let mut total = 0;
    let lines: Vec<&str> = script.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with('#') || line.starts_with("retry()") {
            continue;
        }
        // `retry` as a command word (curl's `--retry` is curl's own, bounded by --max-time).
        let calls = line
            .split(|c: char| c.is_whitespace() || c == '(')
            .filter(|word| *word == "retry")
            .count();
        total += per_retry * calls as u64;
        if let Some(n) = number_after(line, "$(seq 1") {
            let sleep = lines[i..]
                .iter()
                .find_map(|l| number_after(l, "sleep "))
                .expect("a loop's sleep");
            total += n * sleep;
        }
    }
    total
}

fn systemd_seconds(value: &str) -> u64 {
    let value = value.trim();
    if let Some(m) = value.strip_suffix("min") {
        m.parse::<u64>().unwrap() * 60
    } else {
        value.trim_end_matches('s').parse().unwrap()
    }
}

/// Finding 4: a mount unit waits for its device only systemd's DefaultDeviceTimeoutSec (90 s,
/// counted from when boot queues the job), while attaching a member's volume may wait minutes
/// for its previous instance to let go. So no unit mounts the data volume from a device: the
/// identity service mounts it once attached, etcd needs that service and the mount, and the
/// service's start timeout exceeds the worst case of its waits.
#[test]
fn etcd_waits_for_its_data_volume_however_long_attaching_takes() {
    let cluster = render_cluster("etcdwait", THREE_MEMBERS);
    let mut members = 0;
    for (asset, text) in &cluster.rendered.cloud_configs {
        if !asset.starts_with("cloud-config-etcd") {
            continue;
        }
        members += 1;
        let (_, units) = cloud_config_parts(text, Some("10.0.0.99"));
        for u in &units {
            let content = u.content.as_deref().unwrap_or("");
            assert!(
                !(u.name.ends_with(".mount") && content.contains("What=/dev/")),
                "{asset}: {} mounts a device, which systemd stops waiting for 90 s after boot",
                u.name
            );
        }
        let unit = |name: &str| {
            units
                .iter()
                .find(|u| u.name == name)
                .and_then(|u| u.content.clone())
                .unwrap_or_else(|| panic!("{asset}: no {name}"))
        };
        let etcd = unit("etcd.service");
        let needs = |key: &str| {
            etcd.lines()
                .filter_map(|l| l.strip_prefix(key))
                .flat_map(|v| v.split_whitespace())
                .any(|u| u == "etcd-member-identity.service")
        };
        assert!(needs("Requires=") && needs("After="), "{asset}: {etcd}");
        assert!(
            etcd.contains("ExecStartPre=/usr/bin/mountpoint -q /var/lib/etcd"),
            "{asset}: etcd may start on the root disk"
        );
        let script = rendered_file(&cluster, asset, "/opt/bin/etcd-member-identity");
        assert!(
            script.contains("mount -t ext4 -o noatime \"$device\" /var/lib/etcd"),
            "{asset}: the identity script does not mount the volume"
        );
        let identity = unit("etcd-member-identity.service");
        let timeout = identity
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStartSec="))
            .map(systemd_seconds)
            .unwrap_or_else(|| panic!("{asset}: the identity service has no start timeout"));
        let waits = worst_case_sleep_seconds(&script);
        assert!(
            timeout >= waits * 3 / 2,
            "{asset}: the identity service may take {waits} s sleeping alone, beyond its {timeout} s start timeout"
        );
        println!("{asset}: identity script sleeps at most {waits} s; its unit allows {timeout} s");
    }
    assert_eq!(members, 3);
}

const THREE_MEMBERS: &str = "etcdCount: 3\n";

/// How long a signalling script may wait before it signals: the uptime deadline it waits
/// against (`-lt N` or `deadline=N`), else the sum of its `seq` loops' sleeps.
fn signal_wait_seconds(script: &str) -> u64 {
    let number = |rest: &str| -> Option<u64> {
        rest.trim_start()
            .trim_start_matches('"')
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let deadlines: Vec<u64> = script
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.contains("uptime_seconds)\" -lt") {
                number(l.split("-lt").nth(1)?)
            } else {
                number(l.strip_prefix("deadline=")?)
            }
        })
        .collect();
    if let Some(latest) = deadlines.iter().max() {
        return *latest;
    }
    let lines: Vec<&str> = script.lines().map(str::trim).collect();
    let mut total = 0;
    for (i, line) in lines.iter().enumerate() {
        if let Some(n) = line.split("$(seq 1").nth(1).and_then(number) {
            let sleep = lines[i..]
                .iter()
                .find_map(|l| l.split("sleep ").nth(1).and_then(number))
                .unwrap_or(0);
            total += n * sleep;
        }
    }
    total
}

fn iso(value: &serde_json::Value) -> u64 {
    kube_aws::config::iso_seconds(value.as_str().unwrap()).unwrap()
}

/// Finding 5: groups start in the order their boot needs (network, then etcd member by member,
/// then the controllers, then the workers), and every boot script that signals CloudFormation
/// gives up before CloudFormation stops waiting for it, at create and at rolling update, with
/// the configured timeouts, short ones included.
#[test]
fn groups_start_in_order_and_every_signal_wait_ends_before_cloudformation_stops_waiting() {
    let short = "controllerCreateTimeout: PT8M\nworkerCreateTimeout: PT5M\n";
    for (prefix, extra) in LAYOUTS {
        let cluster = render_cluster(
            &format!("{prefix}o"),
            &format!("{extra}{short}etcdCount: 3\n"),
        );
        let template: serde_json::Value =
            serde_json::from_str(&cluster.rendered.stack_template).unwrap();
        let resources = &template["Resources"];
        let ids: Vec<&String> = resources.as_object().unwrap().keys().collect();
        let of_type = |kind: &str| -> Vec<&String> {
            ids.iter()
                .copied()
                .filter(|id| resources[id.as_str()]["Type"] == kind)
                .collect()
        };
        let routes: Vec<&String> = of_type("AWS::EC2::Route")
            .into_iter()
            .chain(of_type("AWS::EC2::SubnetRouteTableAssociation"))
            .chain(of_type("AWS::EC2::SecurityGroupIngress"))
            .collect();
        assert!(!routes.is_empty(), "{prefix}");
        let etcd: Vec<String> = (0..3).map(|i| format!("AutoScaleEtcd{i}")).collect();
        let controller = if resources.get("InstanceController").is_some() {
            "InstanceController"
        } else {
            "AutoScaleController"
        };
        let workers: Vec<&String> = of_type("AWS::AutoScaling::AutoScalingGroup")
            .into_iter()
            .filter(|id| !id.starts_with("AutoScaleEtcd") && *id != "AutoScaleController")
            .collect();
        for group in etcd
            .iter()
            .map(String::as_str)
            .chain([controller])
            .chain(workers.iter().map(|w| w.as_str()))
        {
            for route in &routes {
                assert!(
                    waits_for(resources, group, route),
                    "{prefix}: {group} may boot before {route} exists"
                );
            }
        }
        for pair in etcd.windows(2) {
            assert!(
                waits_for(resources, &pair[1], &pair[0]),
                "{prefix}: {pair:?}"
            );
        }
        for member in &etcd {
            assert!(
                waits_for(resources, controller, member),
                "{prefix}: the API servers may start before {member} is healthy"
            );
        }
        for worker in &workers {
            assert!(
                waits_for(resources, worker, controller),
                "{prefix}: {worker} may start (or roll) before the control plane"
            );
        }

        // Each signalling script against its group's creation timeout and rolling pause.
        let signallers = [
            (
                "cloud-config-controller",
                "/opt/bin/apply-addons",
                controller.to_string(),
            ),
            // The controllers signal for the workers, from the instance's launch.
            (
                "addons",
                "node-ready-signaller",
                "AutoScaleWorkers".to_string(),
            ),
            (
                "cloud-config-etcd-1",
                "/opt/bin/etcd-healthy",
                "AutoScaleEtcd1".to_string(),
            ),
        ];
        for (asset, path, group) in signallers {
            let script = match asset {
                "addons" => cluster.rendered.manifests[path].clone(),
                _ => rendered_file(&cluster, asset, path),
            };
            let waits = signal_wait_seconds(&script);
            let creation = iso(&resources[&group]["CreationPolicy"]["ResourceSignal"]["Timeout"]);
            assert!(
                waits < creation,
                "{prefix}: {asset} {path} waits up to {waits} s, CloudFormation only {creation} s for {group}"
            );
            if let Some(pause) =
                resources[&group]["UpdatePolicy"]["AutoScalingRollingUpdate"].get("PauseTime")
            {
                assert!(
                    waits < iso(pause),
                    "{prefix}: {path} {waits} s vs PauseTime {pause}"
                );
            }
            println!(
                "{prefix}: {path} waits until {waits} s of uptime; {group} is given {creation} s"
            );
        }
    }
}

/// The bootstrap token's Secret, as the rendered apply-bootstrap-token writes it (its paths
/// moved into a temporary folder, kubectl a recorder of what it is asked to apply): the token
/// filled in, an expiry 30 days ahead in RFC 3339 (what the API server and the token cleaner
/// read), and no copy of the secret left behind.
#[test]
#[ignore = "real-component tier (the rendered scripts: bash, envsubst): scripts/test and CI run it"]
fn the_bootstrap_token_is_applied_with_an_expiry_thirty_days_ahead() {
    crate::lab::require("bash");
    crate::lab::require("envsubst");
    let cluster = render_cluster("tokenexpiry", "");
    let script = rendered_file(
        &cluster,
        "cloud-config-controller",
        "/opt/bin/apply-bootstrap-token",
    );
    let root = tempfile::tempdir().unwrap();
    let r = root.path().display().to_string();
    for dir in ["etc/kubernetes/ssl", "etc/kubernetes/addons", "run", "bin"] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    std::fs::write(
        root.path().join("etc/kubernetes/ssl/bootstrap-token"),
        "abcdef.0123456789abcdef",
    )
    .unwrap();
    std::fs::write(
        root.path()
            .join("etc/kubernetes/addons/bootstrap-token.yaml"),
        &cluster.rendered.manifests["bootstrap-token.yaml"],
    )
    .unwrap();
    executable(
        &root.path().join("bin"),
        "kubectl",
        format!(
            "#!/bin/bash\nwhile [ $# -gt 0 ]; do if [ \"$1\" = -f ]; then cp \"$2\" {r}/applied.yaml; fi; shift; done\n"
        )
        .as_bytes(),
    );
    let script = script
        .replace("/etc/kubernetes/", &format!("{r}/etc/kubernetes/"))
        .replace("/run/", &format!("{r}/run/"));
    let path = executable(root.path(), "apply-bootstrap-token", script.as_bytes());
    let out = Command::new(&path)
        .env(
            "PATH",
            format!("{r}/bin:{}", std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let applied: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(root.path().join("applied.yaml")).unwrap())
            .unwrap();
    assert_eq!(applied["metadata"]["name"], "bootstrap-token-abcdef");
    assert_eq!(applied["stringData"]["token-id"], "abcdef");
    assert_eq!(applied["stringData"]["token-secret"], "0123456789abcdef");
    let expiration = applied["stringData"]["expiration"].as_str().unwrap();
    let expires =
        time::OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("expiration {expiration:?} is not RFC 3339: {e}"));
    let ahead = expires - time::OffsetDateTime::now_utc();
    assert!(
        ahead > time::Duration::days(29) && ahead <= time::Duration::days(30),
        "{expiration} is {ahead} ahead"
    );
    let left: Vec<_> = std::fs::read_dir(root.path().join("run"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "a copy of the secret was left: {left:?}");
}

/// node-ready-signaller's decisions, its kubectl and aws replaced by recorders that answer
/// as the API server and EC2 would (the boot test runs it against both for real): a new
/// instance whose Node is Ready and initialised gets SUCCESS, one past the deadline without
/// a Node FAILURE, and none is signalled twice. An instance older than any update could wait
/// on, or tagged with another cluster's stack, is never signalled: CloudFormation counts a
/// signal for whichever update waits, whatever instance it names.
#[test]
#[ignore = "real-component tier (the rendered scripts: bash): scripts/test and CI run it"]
fn node_ready_signaller_signals_each_new_worker_once_and_never_an_old_or_foreign_one() {
    crate::lab::require("bash");
    let cluster = render_cluster("signaller", "");
    let stack = cluster.config.stack_name();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let ago = |seconds: i64| {
        (time::OffsetDateTime::now_utc() - time::Duration::seconds(seconds))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let pool = |stack: &str| (stack.to_string(), "AutoScaleWorkers".to_string());
    let ours = pool(&stack);
    // id, launched seconds ago, (stack, group) tags, and what its own Node (named by the
    // instance's private DNS name) shows through the signaller's template: its provider id,
    // then READY and UNINITIALIZED as they apply; None for no Node.
    let own = |id: &str, words: &str| Some(format!("aws:///us-west-2a/{id}{words}"));
    let instances = [
        ("i-ready", 30, ours.clone(), own("i-ready", " READY")),
        ("i-young", 30, ours.clone(), own("i-young", "")),
        (
            "i-tainted",
            30,
            ours.clone(),
            own("i-tainted", " READY UNINITIALIZED"),
        ),
        // A Node of its name that claims another instance's provider id: not its own.
        ("i-claimed", 30, ours.clone(), own("i-ready", " READY")),
        ("i-late", 130, ours.clone(), None),
        ("i-old", 1000, ours.clone(), own("i-old", " READY")),
        (
            "i-foreign",
            30,
            pool("someone-else"),
            own("i-foreign", " READY"),
        ),
        (
            "i-pool",
            30,
            pool(&format!("{stack}-pool-spot")),
            own("i-pool", " READY"),
        ),
        ("i-finished", 30, ours.clone(), own("i-finished", " READY")),
    ];
    let table: String = instances
        .iter()
        .map(|(id, age, (stack, group), _)| {
            format!(
                "{id}\tus-west-2a\t{}\tip-{id}.ec2.internal\t{stack}\t{group}\n",
                ago(*age)
            )
        })
        .collect();
    std::fs::write(dir.join("instances"), table).unwrap();
    std::fs::create_dir(dir.join("nodes")).unwrap();
    for (id, _, _, node) in &instances {
        if let Some(shown) = node {
            std::fs::write(dir.join(format!("nodes/ip-{id}.ec2.internal")), shown).unwrap();
        }
    }
    let d = dir.display();
    // `kubectl … get node NAME -o go-template=…`: what that Node shows, or NotFound.
    executable(
        dir,
        "kubectl",
        format!(
            "#!/bin/bash\nwhile [ \"$1\" != node ]; do shift; done\ncat {d}/nodes/\"$2\" 2>/dev/null || {{ echo \"Error from server (NotFound): nodes \\\"$2\\\" not found\" >&2; exit 1; }}\n"
        )
        .as_bytes(),
    );
    // EC2 lists the table; CloudFormation takes each signal, but says nothing waits on
    // i-finished (a group already complete).
    executable(
        dir,
        "aws",
        format!(
            "#!/bin/bash\ncase \"$*\" in\n  *describe-instances*) cat {d}/instances ;;\n  *signal-resource*)\n    echo \"$*\" >>{d}/signals\n    if [[ \"$*\" == *i-finished* ]]; then echo 'An error occurred (ValidationError) when calling the SignalResource operation: Resource AutoScaleWorkers is in CREATE_COMPLETE state and cannot be signaled' >&2; exit 254; fi ;;\nesac\n"
        )
        .as_bytes(),
    );
    let script = dir.join("node-ready-signaller");
    std::fs::write(&script, &cluster.rendered.manifests["node-ready-signaller"]).unwrap();
    let once = || {
        let out = Command::new("bash")
            .arg(&script)
            .arg("--once")
            .env(
                "PATH",
                format!("{d}:{}", std::env::var("PATH").unwrap_or_default()),
            )
            .env("KUBE_AWS_NODE_READY_SECONDS", "100")
            .env("KUBE_AWS_SIGNALLED_FILE", dir.join("signalled"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = once();
    let signals = std::fs::read_to_string(dir.join("signals")).unwrap();
    let sent: Vec<(String, String, String)> = signals
        .lines()
        .map(|l| {
            let word = |flag: &str| {
                l.split(&format!("{flag} "))
                    .nth(1)
                    .and_then(|rest| rest.split(' ').next())
                    .unwrap()
                    .to_string()
            };
            (word("--unique-id"), word("--status"), word("--stack-name"))
        })
        .collect();
    let wanted = |id: &str, status: &str, stack: &str| {
        (id.to_string(), status.to_string(), stack.to_string())
    };
    assert_eq!(
        sent,
        vec![
            wanted("i-ready", "SUCCESS", &stack),
            wanted("i-late", "FAILURE", &stack),
            wanted("i-pool", "SUCCESS", &format!("{stack}-pool-spot")),
            wanted("i-finished", "SUCCESS", &stack),
        ],
        "{said}"
    );
    println!("node-ready-signaller --once:\n{said}");
    // Looked at again: only what was still waiting (i-young, i-tainted) could be signalled.
    let again = once();
    assert_eq!(
        std::fs::read_to_string(dir.join("signals")).unwrap(),
        signals,
        "{again}"
    );
}
