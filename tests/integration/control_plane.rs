//! The applied control plane run for real: kube-apiserver, kube-controller-manager and
//! kube-scheduler built from the Kubernetes Go modules (`scripts/build-go-tools`) and started
//! with exactly the flags and files of the controller's static pods, over the rendered etcd
//! members; the add-ons applied by the rendered `apply-addons`; nodes joining by TLS bootstrap
//! under the names the rendered scripts compute; the AWS cloud controller initialising them from
//! moto's EC2. Only the container runtime is left out: each binary runs directly. Needs root
//! (network and mount namespaces); CI runs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::harness::{block_on, moto};
use crate::lab::{
    Lab, Member, decrypt_assets, describe_stacks_answer, env_file, etcdctl, lay_out, output_text,
    require, require_root, run, serve_imds, start_member, unit_lines, wait_healthy,
};
use crate::payload::{WrittenUnit, cloud_config_parts};

/// Where `scripts/build-go-tools` keeps the binaries; each must be there (never skipped).
struct Binaries {
    kubernetes: PathBuf,
    cloud_controller: PathBuf,
}

fn binaries() -> Binaries {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-go-tools");
    let out = run(Command::new(&script).arg("--dir"));
    assert!(out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let dirs: Vec<PathBuf> = text.lines().map(PathBuf::from).collect();
    let found = Binaries {
        kubernetes: dirs[0].clone(),
        cloud_controller: dirs[1].clone(),
    };
    for bin in [
        found.kubernetes.join("kube-apiserver"),
        found.kubernetes.join("kube-controller-manager"),
        found.kubernetes.join("kube-scheduler"),
        found.kubernetes.join("kubectl"),
        found.cloud_controller.join("aws-cloud-controller-manager"),
    ] {
        assert!(
            bin.exists(),
            "{} is not built: run scripts/ensure-tools (it builds the Kubernetes binaries from \
             their Go modules once into the user cache). This test does not skip without it.",
            bin.display()
        );
    }
    found
}

/// An instance the stack launched, as EC2 (moto) describes it.
#[derive(Debug, Clone)]
struct Ec2Instance {
    id: String,
    name: String,
    private_ip: String,
    private_dns_name: String,
    zone: String,
    vpc_id: String,
    mac: String,
}

fn stack_instances(cluster: &str) -> Vec<Ec2Instance> {
    block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto().sdk_config().await);
        let out = ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag-key")
                    .values(format!("kubernetes.io/cluster/{cluster}"))
                    .build(),
            )
            .send()
            .await
            .expect("DescribeInstances");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| Ec2Instance {
                id: i.instance_id().unwrap().to_string(),
                name: i
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some("Name"))
                    .and_then(|t| t.value())
                    .unwrap_or_default()
                    .to_string(),
                private_ip: i.private_ip_address().unwrap().to_string(),
                private_dns_name: i.private_dns_name().unwrap().to_string(),
                zone: i
                    .placement()
                    .and_then(|p| p.availability_zone())
                    .unwrap()
                    .to_string(),
                vpc_id: i.vpc_id().unwrap_or_default().to_string(),
                mac: i
                    .network_interfaces()
                    .first()
                    .and_then(|n| n.mac_address())
                    .unwrap_or("0e:00:00:00:00:01")
                    .to_string(),
            })
            .collect()
    })
}

/// What IMDS says on `instance`: what the rendered scripts and the cloud controller read.
fn imds_of(instance: &Ec2Instance) -> Vec<(String, String)> {
    let region = &instance.zone[..instance.zone.len() - 1];
    let mac = &instance.mac;
    [
        ("meta-data/instance-id", instance.id.clone()),
        (
            "meta-data/local-hostname",
            instance.private_dns_name.clone(),
        ),
        ("meta-data/local-ipv4", instance.private_ip.clone()),
        (
            "meta-data/placement/availability-zone",
            instance.zone.clone(),
        ),
        ("meta-data/placement/region", region.to_string()),
        ("meta-data/mac", mac.clone()),
        ("meta-data/network/interfaces/macs/", format!("{mac}/")),
        (
            &*format!("meta-data/network/interfaces/macs/{mac}/vpc-id"),
            instance.vpc_id.clone(),
        ),
        (
            "dynamic/instance-identity/document",
            // Pretty-printed, a key a line, as EC2 serves it.
            serde_json::to_string_pretty(&json!({"accountId": "123456789012",
                   "instanceId": instance.id, "region": region,
                   "availabilityZone": instance.zone, "privateIp": instance.private_ip}))
            .unwrap(),
        ),
        ("meta-data/services/domain", "amazonaws.com".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Every instance user data of the plan's template, decoded, by logical id.
fn planned_user_data(plan: &Value) -> BTreeMap<String, String> {
    let template: Value =
        serde_json::from_str(plan["template"].as_str().expect("the plan's template")).unwrap();
    let mut out = BTreeMap::new();
    for (id, resource) in template["Resources"].as_object().unwrap() {
        let props = &resource["Properties"];
        let user_data = props["UserData"]
            .as_str()
            .or_else(|| props["LaunchTemplateData"]["UserData"].as_str());
        if let Some(text) = user_data {
            out.insert(
                id.clone(),
                kube_aws::diff::decode_userdata(text).expect("gzip+base64 user data"),
            );
        }
    }
    out
}

/// The `command` of the static pod a rendered manifest under `root` describes.
fn static_pod_command(root: &Path, name: &str) -> Vec<String> {
    let path = root.join(format!("etc/kubernetes/manifests/{name}.yaml"));
    let pod: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    pod["spec"]["containers"][0]["command"]
        .as_sequence()
        .expect("a command")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The tag of the image a rendered static pod under `root` runs (`v1.37.1`).
fn static_pod_image_tag(root: &Path, name: &str) -> String {
    let path = root.join(format!("etc/kubernetes/manifests/{name}.yaml"));
    let pod: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let image = pod["spec"]["containers"][0]["image"].as_str().unwrap();
    image_tag(image)
}

/// `registry/name:TAG[@digest]` → `TAG`.
fn image_tag(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap();
    without_digest.rsplit_once(':').unwrap().1.to_string()
}

/// Starts `program` in the lab with its output in `work/<log>.log`.
fn start(
    lab: &mut Lab,
    binds: &[(PathBuf, &str)],
    program: &[&str],
    env: &[(&str, String)],
    log: &str,
) -> usize {
    let log = std::fs::File::create(lab.work.path().join(format!("{log}.log"))).unwrap();
    let mut c = lab.command(binds, program);
    c.envs(env.iter().map(|(k, v)| (*k, v.clone())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    lab.processes.push(c.spawn().expect("starts"));
    lab.processes.len() - 1
}

/// Starts the static pod `name` of the controller laid out at `root`: its exact command, the
/// binary of the same name run directly. Returns its index in the lab's processes.
fn start_static_pod(
    lab: &mut Lab,
    bins: &Binaries,
    root: &Path,
    binds: &[(PathBuf, &str)],
    name: &str,
) -> usize {
    let mut command = static_pod_command(root, name);
    assert_eq!(command[0], name);
    command[0] = bins.kubernetes.join(name).to_str().unwrap().to_string();
    let argv: Vec<&str> = command.iter().map(String::as_str).collect();
    start(lab, binds, &argv, &[], name)
}

fn wait_ready(lab: &Lab, bins: &Binaries, admin: &str) {
    wait_for(
        lab,
        "kube-apiserver /readyz through the admin kubeconfig",
        120,
        &["kube-apiserver"],
        || {
            let out = kubectl(lab, bins, &[], admin, &["get", "--raw", "/readyz"]);
            (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok")
                .then_some(())
        },
    );
}

/// The controller's running API server: where its files are laid out, its address, what its
/// processes bind, and its index among the lab's processes.
struct ApiServer<'a> {
    root: &'a Path,
    ip: &'a str,
    binds: &'a [(PathBuf, &'a str)],
    index: usize,
}

/// The controller of plan `file` laid out over the running one (its keys decrypted again), and
/// its API server restarted with its static pod, as the instance that plan boots would start it.
fn redeploy_apiserver(
    lab: &mut Lab,
    bins: &Binaries,
    admin: &str,
    cluster: &Cluster,
    file: &str,
    server: &ApiServer,
) {
    let text = planned_user_data(&cluster.plan_file(file))
        .into_values()
        .find(|t| t.contains("\n# Kubernetes controller"))
        .expect("the controller's user data");
    let (files, _) = cloud_config_parts(&text, Some(server.ip));
    lay_out(server.root, &files);
    decrypt_assets(lab, server.root);
    let mut old = lab.processes.swap_remove(server.index);
    let _ = old.kill();
    let _ = old.wait();
    let started = start_static_pod(lab, bins, server.root, server.binds, "kube-apiserver");
    lab.processes.swap(server.index, started);
    wait_ready(lab, bins, admin);
}

/// The secretbox key each Secret in etcd is encrypted with (`key2`), by etcd key.
fn secret_keys_in_etcd(lab: &Lab, client: &Path, endpoints: &str) -> BTreeMap<String, String> {
    let out = etcdctl(
        lab,
        client,
        endpoints,
        &["get", "/registry/secrets/", "--prefix", "-w", "json"],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["kvs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            let key =
                String::from_utf8(BASE64.decode(kv["key"].as_str().unwrap()).unwrap()).unwrap();
            let value = BASE64.decode(kv["value"].as_str().unwrap()).unwrap();
            let text = String::from_utf8_lossy(&value);
            let name = text
                .strip_prefix("k8s:enc:secretbox:v1:")
                .and_then(|rest| rest.split(':').next())
                .unwrap_or("plaintext")
                .to_string();
            (key, name)
        })
        .collect()
}

fn log_tail(lab: &Lab, log: &str) -> String {
    let text =
        std::fs::read_to_string(lab.work.path().join(format!("{log}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// Polls `check` every half second for up to `seconds`; panics with the logs named.
fn wait_for<T>(
    lab: &Lab,
    what: &str,
    seconds: u64,
    logs: &[&str],
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            let shown: Vec<String> = logs
                .iter()
                .map(|l| format!("--- {l}.log\n{}", log_tail(lab, l)))
                .collect();
            panic!("{what}: not within {seconds} s\n{}", shown.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// kubectl (the built one, of the cluster's version) in the lab, as whoever `kubeconfig` names.
fn kubectl(
    lab: &Lab,
    bins: &Binaries,
    binds: &[(PathBuf, &str)],
    kubeconfig: &str,
    args: &[&str],
) -> Output {
    let bin = bins.kubernetes.join("kubectl");
    let mut program = vec![bin.to_str().unwrap(), "--kubeconfig", kubeconfig];
    program.extend_from_slice(args);
    run(&mut lab.command(binds, &program))
}

fn kubectl_stdin(
    lab: &Lab,
    bins: &Binaries,
    binds: &[(PathBuf, &str)],
    kubeconfig: &str,
    args: &[&str],
    input: &str,
) -> Output {
    use std::io::Write;
    let bin = bins.kubernetes.join("kubectl");
    let mut program = vec![bin.to_str().unwrap(), "--kubeconfig", kubeconfig];
    program.extend_from_slice(args);
    let mut child = lab
        .command(binds, &program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A kubelet's heartbeat: its Lease renewed every 5 s with the node's own credentials.
const HEARTBEAT: &str = r#"#!/bin/bash
while true; do
  now=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
  "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" apply --server-side --field-manager=kubelet -f - >/dev/null <<EOF
{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
 "metadata": {"name": "$NODE", "namespace": "kube-node-lease"},
 "spec": {"holderIdentity": "$NODE", "leaseDurationSeconds": 40, "renewTime": "$now"}}
EOF
  sleep 5
done
"#;

/// What the rendered kubelet registers its Node with: `--node-labels`, `--register-with-taints`,
/// and, under `--cloud-provider=external`, the taint the cloud controller lifts.
fn kubelet_registration(units: &[WrittenUnit]) -> (Value, Value) {
    let exec = unit_lines(units, "kubelet.service", "ExecStart=")
        .first()
        .expect("a kubelet ExecStart")
        .to_string();
    let mut labels = serde_json::Map::new();
    let mut taints = Vec::new();
    for flag in exec.split_whitespace() {
        if let Some(list) = flag.strip_prefix("--node-labels=") {
            for pair in list.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                labels.insert(k.to_string(), json!(v));
            }
        } else if let Some(list) = flag.strip_prefix("--register-with-taints=") {
            for taint in list.split(',') {
                let (kv, effect) = taint.rsplit_once(':').expect("key[=value]:Effect");
                let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
                taints.push(json!({"key": key, "value": value, "effect": effect}));
            }
        }
    }
    assert!(exec.contains("--cloud-provider=external"), "{exec}");
    taints.push(json!({"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"}));
    (Value::Object(labels), Value::Array(taints))
}

/// A node joining as its kubelet would: the rendered `/opt/bin/node-bootstrap` under `root`
/// obtains its client certificate (a controller signs its own; a worker tags its instance
/// with its key's SHA-256 and sends a CSR that node-csr-approver decides), then the Node is
/// registered with that certificate (its provider id and taints as the rendered kubelet flags
/// give them). Returns the binds under which `/var/lib/kubelet/kubeconfig` is the node's.
fn bootstrap_node(
    lab: &mut Lab,
    bins: &Binaries,
    root: &Path,
    (name, provider_id): (&str, &str),
    units: &[WrittenUnit],
    env: &[(&str, String)],
) -> Vec<(PathBuf, &'static str)> {
    let (mut labels, taints) = kubelet_registration(units);
    for (k, v) in [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
    ] {
        labels[k] = json!(v);
    }
    let binds = vec![
        (root.join("etc/kubernetes"), "/etc/kubernetes"),
        (root.join("run/kube-aws"), "/run/kube-aws"),
        (root.join("var/lib/kubelet"), "/var/lib/kubelet"),
    ];
    std::fs::create_dir_all(root.join("var/lib/kubelet")).unwrap();
    assert!(
        unit_lines(units, "kubelet.service", "ExecStartPre=").contains(&"/opt/bin/node-bootstrap"),
        "the kubelet runs node-bootstrap before it starts"
    );
    let script = root.join("opt/bin/node-bootstrap");
    let out = run(lab
        .command(&binds, &["/bin/bash", script.to_str().unwrap()])
        .envs(env.iter().map(|(k, v)| (*k, v.clone()))));
    assert!(
        out.status.success(),
        "node-bootstrap of {name}: {}",
        output_text(&out)
    );
    let said = String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace('\n', "; ");
    let kubeconfig = "/var/lib/kubelet/kubeconfig";
    // With the capacity of an m6i.large and Ready, as a kubelet reports them when it registers.
    let capacity = json!({"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"});
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"providerID": provider_id, "taints": taints},
        "status": {"capacity": capacity, "allocatable": capacity, "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastHeartbeatTime": now, "lastTransitionTime": now}]},
    });
    let out = kubectl_stdin(
        lab,
        bins,
        &binds,
        kubeconfig,
        &["create", "-f", "-"],
        &node.to_string(),
    );
    assert!(
        out.status.success(),
        "node {name} registers itself: {}",
        output_text(&out)
    );
    // The kubelet's heartbeat: its Lease in kube-node-lease, renewed every 5 s as the node.
    let script = root.join("heartbeat.sh");
    std::fs::write(&script, HEARTBEAT).unwrap();
    let env = [
        (
            "KUBECTL",
            bins.kubernetes.join("kubectl").display().to_string(),
        ),
        ("KUBECONFIG_FILE", kubeconfig.to_string()),
        ("NODE", name.to_string()),
    ];
    start(
        lab,
        &binds,
        &["/bin/bash", script.to_str().unwrap()],
        &env,
        &format!("heartbeat-{name}"),
    );
    println!("node-bootstrap: {said}; node {name} registered with its certificate");
    binds
}

/// A fresh P-256 key and a CSR for `system:node:<name>` under `dir` (with `extra` openssl req
/// arguments); returns the CSR object and the SHA-256 of the key's public half.
fn node_csr(dir: &Path, name: &str, extra: &[&str]) -> (Value, String) {
    std::fs::create_dir_all(dir).unwrap();
    let (key, csr) = (dir.join("key.pem"), dir.join("csr.pem"));
    let out = run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key));
    assert!(out.status.success(), "{}", output_text(&out));
    let out = run(Command::new("openssl")
        .args(["req", "-new", "-config", "/dev/null", "-key"])
        .arg(&key)
        .args(["-subj", &format!("/O=system:nodes/CN=system:node:{name}")])
        .args(extra)
        .arg("-out")
        .arg(&csr));
    assert!(out.status.success(), "{}", output_text(&out));
    let out = run(Command::new("sh")
        .arg("-c")
        .arg("openssl pkey -in \"$1\" -pubout -outform DER | sha256sum | cut -d' ' -f1")
        .arg("x")
        .arg(&key));
    let sha256 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(sha256.len(), 64, "{}", output_text(&out));
    let request = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "node-csr-"},
        "spec": {
            "request": BASE64.encode(std::fs::read(&csr).unwrap()),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        }
    });
    (request, sha256)
}

/// One bootstrap attempt from a worker: what it is, the name asked for, whether its key is
/// tagged on the worker's own instance, extra openssl arguments, whether a second CSR is
/// smuggled after the first, and the approver's reason for denying it.
type Attempt<'a> = (&'a str, &'a str, bool, &'a [&'a str], bool, &'a str);

/// What root on a worker can try with the bootstrap token and the instance role it holds, each
/// denied by the running node-csr-approver and no certificate issued: the controller's name
/// with a key tagged on the worker's own instance, its own name with a key its instance does
/// not carry, and its own name with a tagged key but a SAN. Then the API server's side: a
/// bootstrap token past its expiry is refused, one within it accepted; and what the approver
/// acts as may approve CSRs and read nothing else.
fn refused_bootstraps(
    lab: &Lab,
    bins: &Binaries,
    worker_root: &Path,
    worker: &Ec2Instance,
    controller: &Ec2Instance,
    admin: &str,
) {
    let binds = [(worker_root.join("etc/kubernetes"), "/etc/kubernetes")];
    let bootstrap = "/etc/kubernetes/bootstrap-kubeconfig.yaml";
    let san = ["-addext", "subjectAltName=DNS:kubernetes.default"];
    // (what, the name asked for, the key tagged on the worker's own instance, extra openssl
    // arguments, a second CSR smuggled after the first, the approver's reason).
    let attempts: [Attempt; 4] = [
        (
            "the controller's name, the key tagged on the worker's own instance",
            &controller.private_dns_name,
            true,
            &[],
            false,
            "no one running worker of this cluster is named",
        ),
        (
            "the worker's own name, a key its instance does not carry",
            &worker.private_dns_name,
            false,
            &[],
            false,
            "does not carry this key's SHA-256",
        ),
        (
            "the worker's own name and a tagged key, with a SAN",
            &worker.private_dns_name,
            true,
            &san,
            false,
            "it holds more than a node's subject and P-256 key",
        ),
        (
            "its own tagged CSR without its END line, then one for the controller's name \
             (openssl reads the first block, Go's PEM decoder the second)",
            &worker.private_dns_name,
            true,
            &[],
            true,
            "is not one PEM CSR signed by its own key",
        ),
    ];
    for (i, (what, name, tag_own, extra, smuggle, reason)) in attempts.into_iter().enumerate() {
        let dir = lab.work.path().join(format!("hijack-{i}"));
        let (mut request, sha256) = node_csr(&dir, name, extra);
        if smuggle {
            let own = std::fs::read_to_string(dir.join("csr.pem")).unwrap();
            let (_, _) = node_csr(&dir.join("victim"), &controller.private_dns_name, &[]);
            let victim = std::fs::read_to_string(dir.join("victim/csr.pem")).unwrap();
            let own = own.replace("-----END CERTIFICATE REQUEST-----\n", "");
            request["spec"]["request"] = json!(BASE64.encode(format!("{own}{victim}")));
        }
        if tag_own {
            let out = run(&mut lab.command(
                &[],
                &[
                    "aws",
                    "ec2",
                    "create-tags",
                    "--region",
                    "us-west-2",
                    "--resources",
                    &worker.id,
                    "--tags",
                    &format!("Key=kube-aws:node-client-key,Value={sha256}"),
                ],
            ));
            assert!(out.status.success(), "{}", output_text(&out));
        }
        let out = kubectl_stdin(
            lab,
            bins,
            &binds,
            bootstrap,
            &["create", "-f", "-", "-o", "jsonpath={.metadata.name}"],
            &request.to_string(),
        );
        assert!(out.status.success(), "{what}: {}", output_text(&out));
        let csr = String::from_utf8_lossy(&out.stdout).into_owned();
        let decided = wait_for(
            lab,
            &format!("CSR {csr} ({what}) decided"),
            60,
            &["node-csr-approver"],
            || {
                let out = kubectl(
                    lab,
                    bins,
                    &[],
                    admin,
                    &[
                        "get",
                        "csr",
                        &csr,
                        "-o",
                        "jsonpath={.status.conditions[*].type}|{.status.certificate}",
                    ],
                );
                let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
                (out.status.success() && text != "|").then_some(text)
            },
        );
        assert_eq!(decided, "Denied|", "{what}: CSR {csr}");
        // The approver logs its verdict once kubectl returns from denying: it may lag.
        let line = wait_for(
            lab,
            &format!("the approver's verdict on {csr} in its log"),
            10,
            &["node-csr-approver"],
            || {
                std::fs::read_to_string(lab.work.path().join("node-csr-approver.log"))
                    .ok()?
                    .lines()
                    .find(|l| l.starts_with(&format!("denied {csr}: ")))
                    .map(str::to_string)
            },
        );
        assert!(line.contains(reason), "{what}: {line}");
        println!("hijack refused ({what}): {line}");
    }

    // The API server refuses a bootstrap token past its expiry, and takes one within it.
    let ca = worker_root.join("etc/kubernetes/ssl/ca.pem");
    for (id, expiration, accepted) in [
        ("expird", "2020-01-01T00:00:00Z", false),
        ("fresh1", "2099-01-01T00:00:00Z", true),
    ] {
        let out = kubectl(
            lab,
            bins,
            &[],
            admin,
            &[
                "-n",
                "kube-system",
                "create",
                "secret",
                "generic",
                &format!("bootstrap-token-{id}"),
                "--type=bootstrap.kubernetes.io/token",
                &format!("--from-literal=token-id={id}"),
                "--from-literal=token-secret=0123456789abcdef",
                "--from-literal=usage-bootstrap-authentication=true",
                "--from-literal=auth-extra-groups=system:bootstrappers:kube-aws",
                &format!("--from-literal=expiration={expiration}"),
            ],
        );
        assert!(out.status.success(), "{}", output_text(&out));
        let kubeconfig = lab.work.path().join(format!("token-{id}.kubeconfig"));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n  - name: c\n    cluster:\n      certificate-authority: {}\n      server: https://127.0.0.1:443\nusers:\n  - name: t\n    user:\n      token: {id}.0123456789abcdef\ncontexts:\n  - name: t\n    context: {{cluster: c, user: t}}\ncurrent-context: t\n",
                ca.display()
            ),
        )
        .unwrap();
        let out = kubectl(
            lab,
            bins,
            &[],
            kubeconfig.to_str().unwrap(),
            &["get", "--raw", "/api"],
        );
        assert_eq!(
            out.status.success(),
            accepted,
            "bootstrap token expiring {expiration}: {}",
            output_text(&out)
        );
        if !accepted {
            assert!(
                output_text(&out).contains("Unauthorized"),
                "{}",
                output_text(&out)
            );
        }
        println!(
            "bootstrap token expiring {expiration}: {}",
            if accepted {
                "accepted"
            } else {
                "refused (Unauthorized)"
            }
        );
    }

    // What the approver acts as.
    for (verb, resource, allowed) in [
        (
            "update",
            "certificatesigningrequests --subresource=approval",
            "yes",
        ),
        ("get", "secrets", "no"),
        ("create", "serviceaccounts --subresource=token", "no"),
        ("create", "certificatesigningrequests", "no"),
    ] {
        let out = kubectl(
            lab,
            bins,
            &[],
            admin,
            &[
                &["auth", "can-i", verb][..],
                &resource.split(' ').collect::<Vec<_>>(),
                &["--all-namespaces", "--as=kube-aws:node-csr-approver"],
            ]
            .concat(),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            allowed,
            "{verb} {resource}"
        );
    }
}

/// The resource versions of every object the add-on manifests under `root` name.
fn addon_versions(
    lab: &Lab,
    bins: &Binaries,
    admin: &str,
    root: &Path,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root.join("etc/kubernetes/addons")).unwrap() {
        let path = entry.unwrap().path();
        // The token's Secret is applied by its own script; node-csr-approver is run, not applied.
        if path.file_name().unwrap() == "bootstrap-token.yaml"
            || path.extension().is_none_or(|e| e != "yaml")
        {
            continue;
        }
        let got = kubectl(
            lab,
            bins,
            &[],
            admin,
            &[
                "get",
                "-f",
                path.to_str().unwrap(),
                "-o",
                "jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name}={.metadata.resourceVersion}{\"\\n\"}{end}",
            ],
        );
        assert!(
            got.status.success(),
            "{}: {}",
            path.display(),
            output_text(&got)
        );
        for line in String::from_utf8_lossy(&got.stdout).lines() {
            let (object, version) = line.split_once('=').unwrap();
            out.insert(object.to_string(), version.to_string());
        }
    }
    out
}

/// A JWT's signature checked by openssl against the PEM public key at `public_key`.
fn jwt_verifies(token: &str, public_key: &Path, work: &Path) -> bool {
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT");
    let header: Value = serde_json::from_slice(&BASE64URL.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256", "{header}");
    let (signed, signature) = (work.join("jwt.signed"), work.join("jwt.sig"));
    std::fs::write(&signed, format!("{}.{}", parts[0], parts[1])).unwrap();
    std::fs::write(&signature, BASE64URL.decode(parts[2]).unwrap()).unwrap();
    run(Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(public_key)
        .arg("-signature")
        .arg(&signature)
        .arg(&signed))
    .status
    .success()
}

#[test]
#[ignore = "real-component tier (root, etcd, the Kubernetes binaries): scripts/test and CI run it"]
fn the_applied_control_plane_boots_joins_nodes_by_tls_bootstrap_and_the_cloud_controller_initialises_them()
 {
    require_root();
    for tool in [
        "etcd", "etcdctl", "aws", "socat", "setpriv", "ip", "unshare", "openssl", "curl",
        "envsubst",
    ] {
        require(tool);
    }
    let bins = binaries();
    let moto = moto();

    // The default cluster, applied on moto; the controller is whatever instance the stack made.
    let cluster = Cluster::new("boot", false, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    cluster.set("stackPerPool", "false");
    cluster.plan_and_apply();
    cluster.expect(0, &["kubeconfig", "-o", "admin.kubeconfig"]);
    let admin = cluster.path("admin.kubeconfig");
    let admin = admin.to_str().unwrap();
    let plan = cluster.plan_file("plan.json");
    let user_data = planned_user_data(&plan);
    let config = kube_aws::config::ClusterConfig::load(cluster.dir.path()).unwrap();
    let instances = stack_instances(&cluster.name);
    let controller = instances
        .iter()
        .find(|i| i.name.contains("controller"))
        .unwrap_or_else(|| panic!("no controller among the stack's instances: {instances:?}"))
        .clone();
    let worker = instances
        .iter()
        .find(|i| !i.name.contains("controller") && !i.name.contains("etcd"))
        .unwrap_or_else(|| panic!("no worker among the stack's instances: {instances:?}"))
        .clone();
    println!(
        "controller {} ({}), worker {} ({})",
        controller.id, controller.private_dns_name, worker.id, worker.private_dns_name
    );

    // Names nodes and clients use, resolving to the controller inside the lab.
    let controller_text = user_data
        .values()
        .find(|t| t.contains("\n# Kubernetes controller"))
        .expect("the controller's user data");
    let worker_text = user_data
        .values()
        .find(|t| {
            t.contains("/etc/kubernetes/bootstrap-kubeconfig.yaml")
                && !t.contains("\n# Kubernetes controller")
        })
        .expect("a worker's user data");
    let (worker_files, worker_units) = cloud_config_parts(worker_text, Some(&worker.private_ip));
    let worker_server = worker_files
        .iter()
        .find(|f| f.path == "/etc/kubernetes/bootstrap-kubeconfig.yaml")
        .map(|f| String::from_utf8_lossy(&f.content).into_owned())
        .unwrap();
    let worker_api_host = worker_server
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .map(|h| h.split([':', '/']).next().unwrap().to_string())
        .unwrap();
    let members = config.etcd_members();
    let member_ips: Vec<String> = (0..members.len())
        .map(|i| format!("10.250.0.{}", 10 + i))
        .collect();
    let mut hosts: Vec<(String, String)> = members
        .iter()
        .zip(&member_ips)
        .map(|(m, ip)| (m.host.clone(), ip.clone()))
        .collect();
    hosts.push((
        config.external_dns_name.clone(),
        controller.private_ip.clone(),
    ));
    if worker_api_host != config.external_dns_name {
        hosts.push((worker_api_host.clone(), controller.private_ip.clone()));
    }
    let mut lab = Lab::new(moto, &hosts);
    // AWS reached through the cluster's proxy, which records the calls and answers
    // SignalResource (moto has no SignalResource).
    let proxy_port: u16 = cluster
        .proxy
        .endpoint
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    lab.aws_through(proxy_port);
    // etcd-join lets the members found the cluster only while its stack is being created: so
    // the stack is said to be, while they start (and only then: kube-aws plans through here).
    let founding = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let creating = founding.clone();
    cluster.proxy.intercept(Arc::new(move |req| {
        (req.service == "cloudformation" && req.operation == "SignalResource").then(|| {
            (200, r#"<SignalResourceResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><ResponseMetadata><RequestId>s1</RequestId></ResponseMetadata></SignalResourceResponse>"#.to_string())
        }).or_else(|| {
            creating
                .load(std::sync::atomic::Ordering::SeqCst)
                .then(|| describe_stacks_answer(req, "CREATE_IN_PROGRESS"))
                .flatten()
        })
    }));
    let aws_endpoint = format!("http://127.0.0.1:{proxy_port}");
    lab.ip(&["addr", "add", "169.254.169.254/32", "dev", "lo"]);
    let imds = serve_imds(imds_of(&controller));
    let imds_port: u16 = imds.rsplit(':').next().unwrap().parse().unwrap();
    lab.bridge(imds_port, "169.254.169.254", 80);
    lab.mount_points(&[
        "/etc/kubernetes",
        "/run/kube-aws",
        "/opt/bin",
        "/etc/aws",
        "/run/secrets/kubernetes.io/serviceaccount",
        "/var/lib/kubelet",
    ]);

    // etcd: every member as its user data lays it out, keys decrypted through moto's KMS.
    let mut etcd = Vec::new();
    for (m, ip) in members.iter().zip(&member_ips) {
        let text = user_data
            .values()
            .find(|t| t.contains(&format!("# etcd member {} ", m.name)))
            .unwrap_or_else(|| panic!("user data of {}", m.name));
        let (files, units) = cloud_config_parts(text, Some(ip));
        let root = lab.work.path().join(&m.name);
        lay_out(&root, &files);
        decrypt_assets(&lab, &root);
        etcd.push(Member::of_units(&m.name, &m.host, &root, &units));
    }

    // The controller: its files, its keys decrypted by its script, its identity from IMDS.
    let root = lab.work.path().join("controller");
    let (files, controller_units) =
        cloud_config_parts(controller_text, Some(&controller.private_ip));
    lay_out(&root, &files);
    std::fs::create_dir_all(root.join("run/kube-aws")).unwrap();
    decrypt_assets(&lab, &root);
    founding.store(true, std::sync::atomic::Ordering::SeqCst);
    for m in &etcd {
        start_member(&mut lab, m);
    }
    founding.store(false, std::sync::atomic::Ordering::SeqCst);
    let endpoints: String = etcd
        .iter()
        .map(|m| format!("https://{}:2379", m.host))
        .collect::<Vec<_>>()
        .join(",");
    wait_healthy(&lab, &root, &endpoints, &etcd);
    let kube = [
        (root.join("etc/kubernetes"), "/etc/kubernetes"),
        (root.join("run/kube-aws"), "/run/kube-aws"),
        (root.join("opt/bin"), "/opt/bin"),
    ];
    let out = run(&mut lab.command(
        &kube,
        &[
            "/bin/bash",
            root.join("opt/bin/node-identity").to_str().unwrap(),
        ],
    ));
    assert!(out.status.success(), "node-identity: {}", output_text(&out));
    let identity: BTreeMap<String, String> = env_file(&root.join("run/kube-aws/node-identity"))
        .into_iter()
        .collect();
    assert_eq!(identity["NODE_NAME"], controller.private_dns_name);

    // The static pods' commands, each binary run directly.
    let mut apiserver_index = usize::MAX;
    for name in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let index = start_static_pod(&mut lab, &bins, &root, &kube, name);
        if name == "kube-apiserver" {
            apiserver_index = index;
            wait_ready(&lab, &bins, admin);
        }
    }
    // The binaries are the version the cluster deploys.
    let version = kubectl(&lab, &bins, &[], admin, &["version", "-o", "json"]);
    let version: Value = serde_json::from_slice(&version.stdout).unwrap();
    assert_eq!(
        version["serverVersion"]["gitVersion"],
        static_pod_image_tag(&root, "kube-apiserver")
    );
    assert_eq!(
        version["clientVersion"]["gitVersion"],
        static_pod_image_tag(&root, "kube-apiserver")
    );
    println!(
        "kube-apiserver and kubectl {}: the tag of the static pod's image",
        version["serverVersion"]["gitVersion"]
    );
    for (path, server) in [
        ("/readyz", format!("https://{}", config.external_dns_name)),
        ("/livez", format!("https://{}", config.external_dns_name)),
        ("/readyz", "https://127.0.0.1:443".to_string()),
        ("/livez", "https://127.0.0.1:443".to_string()),
    ] {
        let out = kubectl(
            &lab,
            &bins,
            &[],
            admin,
            &["--server", &server, "get", "--raw", path],
        );
        assert!(
            out.status.success(),
            "{path} at {server}: {}",
            output_text(&out)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
        println!("{path} at {server} through the admin kubeconfig: ok");
    }
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        let holder = wait_for(&lab, &format!("lease {lease} held"), 90, &[lease], || {
            let out = kubectl(
                &lab,
                &bins,
                &[],
                admin,
                &[
                    "-n",
                    "kube-system",
                    "get",
                    "lease",
                    lease,
                    "-o",
                    "jsonpath={.spec.holderIdentity}",
                ],
            );
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !text.is_empty()).then_some(text)
        });
        println!("lease kube-system/{lease} held by {holder}");
    }

    // apply-addons as the unit runs it, as if the machine had booted a minute ago.
    let uptime: u64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let path = format!(
        "{}:{}",
        bins.kubernetes.display(),
        std::env::var("PATH").unwrap()
    );
    let addons_env = [
        ("PATH", path.clone()),
        ("AWS_ENDPOINT_URL", aws_endpoint.clone()),
    ];
    let boottime = format!("-{}", uptime.saturating_sub(60));
    let apply_addons = "/opt/bin/apply-addons";
    let apply_addons_argv = [
        "unshare",
        "--time",
        "--boottime",
        &boottime,
        "--fork",
        "/bin/bash",
        apply_addons,
    ];
    start(
        &mut lab,
        &kube,
        &apply_addons_argv,
        &addons_env,
        "apply-addons",
    );

    // The controller's kubelet joins with the certificate its node-bootstrap signs; apply-addons
    // labels it.
    let token = std::fs::read_to_string(root.join("etc/kubernetes/ssl/bootstrap-token")).unwrap();
    let token_secret = format!("bootstrap-token-{}", token.split('.').next().unwrap());
    wait_for(
        &lab,
        "the bootstrap token and its RBAC applied",
        120,
        &["apply-addons"],
        || {
            let rbac = kubectl(
                &lab,
                &bins,
                &[],
                admin,
                &["get", "clusterrolebinding", "kube-aws:node-csr-approver"],
            );
            let secret = kubectl(
                &lab,
                &bins,
                &[],
                admin,
                &["-n", "kube-system", "get", "secret", &token_secret],
            );
            (rbac.status.success() && secret.status.success()).then_some(())
        },
    );
    // Before the add-ons, apply-addons gave the node drainer its queue: this account's queue
    // of the cluster stack, as the stack names it.
    let queue_url = kubectl(
        &lab,
        &bins,
        &[],
        admin,
        &[
            "-n",
            "kube-system",
            "get",
            "configmap",
            "aws-node-termination-handler",
            "-o",
            "jsonpath={.data.queue-url}",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&queue_url.stdout),
        format!(
            "https://sqs.us-west-2.amazonaws.com/123456789012/{}-node-drain",
            cluster.name
        ),
        "{}",
        String::from_utf8_lossy(&queue_url.stderr)
    );
    // node-csr-approver as its unit runs it, with a short grace so that a refused CSR is denied
    // within seconds; its EC2 calls go through the proxy.
    let approver_env = [
        ("PATH", path.clone()),
        ("AWS_ENDPOINT_URL", aws_endpoint.clone()),
        ("KUBE_AWS_CSR_GRACE_SECONDS", "4".to_string()),
    ];
    let approver = unit_lines(&controller_units, "node-csr-approver.service", "ExecStart=")
        .first()
        .expect("node-csr-approver's ExecStart")
        .to_string();
    assert_eq!(
        approver,
        "/usr/bin/bash /etc/kubernetes/addons/node-csr-approver"
    );
    let approver: Vec<&str> = approver.split(' ').collect();
    start(
        &mut lab,
        &kube,
        &approver,
        &approver_env,
        "node-csr-approver",
    );
    // node-ready-signaller as its unit runs it; it signals for the worker once the cloud
    // controller has initialised its Node (below).
    let signaller = unit_lines(
        &controller_units,
        "node-ready-signaller.service",
        "ExecStart=",
    )
    .first()
    .expect("node-ready-signaller's ExecStart")
    .to_string();
    assert_eq!(
        signaller,
        "/usr/bin/bash /etc/kubernetes/addons/node-ready-signaller"
    );
    let signaller_env = [
        ("PATH", path.clone()),
        ("AWS_ENDPOINT_URL", aws_endpoint.clone()),
        (
            "KUBE_AWS_SIGNALLED_FILE",
            lab.work
                .path()
                .join("node-ready-signalled")
                .display()
                .to_string(),
        ),
    ];
    start(
        &mut lab,
        &kube,
        &signaller.split(' ').collect::<Vec<_>>(),
        &signaller_env,
        "node-ready-signaller",
    );
    let controller_provider_id = identity["PROVIDER_ID"].clone();
    bootstrap_node(
        &mut lab,
        &bins,
        &root,
        (&controller.private_dns_name, &controller_provider_id),
        &controller_units,
        &[("PATH", path.clone())],
    );
    let signalled = wait_for(
        &lab,
        "apply-addons signals SUCCESS",
        180,
        &["apply-addons"],
        || {
            cluster.proxy.seen().into_iter().find(|s| {
                s.operation == "SignalResource"
                    && s.body.contains(&format!("UniqueId={}", controller.id))
            })
        },
    );
    assert!(
        signalled.body.contains("Status=SUCCESS"),
        "{}",
        signalled.body
    );
    assert!(
        signalled
            .body
            .contains(&format!("UniqueId={}", controller.id)),
        "{}",
        signalled.body
    );
    println!(
        "apply-addons: every add-on applied, node labelled, SignalResource {}",
        signalled.body
    );
    let labels = kubectl(
        &lab,
        &bins,
        &[],
        admin,
        &[
            "get",
            "node",
            &controller.private_dns_name,
            "-o",
            "jsonpath={.metadata.labels}",
        ],
    );
    assert!(
        output_text(&labels).contains("node-role.kubernetes.io/control-plane"),
        "{}",
        output_text(&labels)
    );

    // A second apply of the same add-ons changes nothing, but for removing the binding with
    // which earlier templates approved every bootstrap CSR.
    let old_binding = "kube-aws:node-autoapprove-bootstrap";
    let out = kubectl(
        &lab,
        &bins,
        &[],
        admin,
        &[
            "create",
            "clusterrolebinding",
            old_binding,
            "--clusterrole=system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "--group=system:bootstrappers:kube-aws",
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let before = addon_versions(&lab, &bins, admin, &root);
    assert!(before.len() > 20, "{before:?}");
    let out = run(lab
        .command(&kube, &apply_addons_argv)
        .envs(addons_env.iter().map(|(k, v)| (*k, v.clone()))));
    assert!(
        out.status.success(),
        "apply-addons again: {}",
        output_text(&out)
    );
    let after = addon_versions(&lab, &bins, admin, &root);
    assert_eq!(before, after, "a second apply-addons changed objects");
    let out = kubectl(
        &lab,
        &bins,
        &[],
        admin,
        &["get", "clusterrolebinding", old_binding],
    );
    assert!(
        !out.status.success() && output_text(&out).contains("NotFound"),
        "apply-addons left {old_binding}: {}",
        output_text(&out)
    );
    println!("apply-addons removed {old_binding}");
    println!(
        "apply-addons again: {} objects, every resourceVersion unchanged",
        after.len()
    );

    // A worker joins through the name nodes use, with its own bootstrap kubeconfig and token.
    let worker_root = lab.work.path().join("worker");
    lay_out(&worker_root, &worker_files);
    decrypt_assets(&lab, &worker_root);
    // Its name and provider id from its own identity script, against the worker's IMDS.
    let worker_imds = serve_imds(imds_of(&worker));
    let worker_imds_port: u16 = worker_imds.rsplit(':').next().unwrap().parse().unwrap();
    lab.bridge(worker_imds_port, "127.0.0.1", worker_imds_port);
    let worker_run = worker_root.join("run/kube-aws");
    let out = run(lab
        .command(
            &[],
            &[
                "/bin/bash",
                worker_root.join("opt/bin/node-identity").to_str().unwrap(),
            ],
        )
        .env(
            "KUBE_AWS_IMDS_ENDPOINT",
            format!("http://127.0.0.1:{worker_imds_port}"),
        )
        .env("KUBE_AWS_IDENTITY_DIR", &worker_run));
    assert!(
        out.status.success(),
        "worker node-identity: {}",
        output_text(&out)
    );
    let worker_identity: BTreeMap<String, String> = env_file(&worker_run.join("node-identity"))
        .into_iter()
        .collect();
    let worker_provider = format!("aws:///{}/{}", worker.zone, worker.id);
    assert_eq!(worker_identity["NODE_NAME"], worker.private_dns_name);
    assert_eq!(worker_identity["PROVIDER_ID"], worker_provider);
    let worker_binds = bootstrap_node(
        &mut lab,
        &bins,
        &worker_root,
        (
            &worker_identity["NODE_NAME"],
            &worker_identity["PROVIDER_ID"],
        ),
        &worker_units,
        &[
            ("PATH", path.clone()),
            ("AWS_ENDPOINT_URL", aws_endpoint.clone()),
        ],
    );
    let approved = wait_for(
        &lab,
        "node-csr-approver's verdict on the worker",
        30,
        &["node-csr-approver"],
        || {
            log_tail(&lab, "node-csr-approver")
                .lines()
                .find(|l| l.starts_with("approved "))
                .map(str::to_string)
        },
    );
    assert!(
        approved.contains(&format!(
            "worker {} ({})",
            worker.id, worker.private_dns_name
        )),
        "{approved}"
    );
    println!("node-csr-approver: {approved}");
    // Once issued, the worker's tag no longer names its key: a copy of it vouches for nothing.
    let out = run(&mut lab.command(
        &[],
        &[
            "aws",
            "ec2",
            "describe-tags",
            "--region",
            "us-west-2",
            "--filters",
            &format!("Name=resource-id,Values={}", worker.id),
            "Name=key,Values=kube-aws:node-client-key",
            "--query",
            "Tags[0].Value",
            "--output",
            "text",
        ],
    ));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "issued",
        "{}",
        output_text(&out)
    );
    refused_bootstraps(&lab, &bins, &worker_root, &worker, &controller, admin);
    let as_worker = |args: &[&str]| {
        kubectl(
            &lab,
            &bins,
            &worker_binds,
            "/var/lib/kubelet/kubeconfig",
            args,
        )
    };

    // The Node authorizer: the worker reads the Secret of a pod bound to it, not another's.
    for (secret, node) in [
        ("on-worker", &worker.private_dns_name),
        ("on-controller", &controller.private_dns_name),
    ] {
        let out = kubectl(
            &lab,
            &bins,
            &[],
            admin,
            &[
                "-n",
                "default",
                "create",
                "secret",
                "generic",
                secret,
                "--from-literal=k=v",
            ],
        );
        assert!(out.status.success(), "{}", output_text(&out));
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": secret, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]}],
                "tolerations": [{"operator": "Exists"}]}});
        let out = kubectl_stdin(
            &lab,
            &bins,
            &[],
            admin,
            &["create", "-f", "-"],
            &pod.to_string(),
        );
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let own = wait_for(
        &lab,
        "the worker reads its pod's secret",
        30,
        &["kube-apiserver"],
        || {
            let out = as_worker(&["-n", "default", "get", "secret", "on-worker", "-o", "name"]);
            out.status.success().then_some(output_text(&out))
        },
    );
    let other = as_worker(&["-n", "default", "get", "secret", "on-controller"]);
    assert!(
        !other.status.success() && output_text(&other).contains("Forbidden"),
        "{}",
        output_text(&other)
    );
    let other_node = as_worker(&["label", "node", &controller.private_dns_name, "x=y"]);
    assert!(!other_node.status.success(), "{}", output_text(&other_node));
    println!(
        "as the worker: {} read; on-controller: {}",
        own.trim(),
        output_text(&other).trim()
    );

    // Secrets are encrypted in etcd.
    let raw = etcdctl(
        &lab,
        &root,
        &endpoints,
        &[
            "get",
            "/registry/secrets/default/on-worker",
            "--print-value-only",
        ],
    );
    let raw_text = String::from_utf8_lossy(&raw.stdout);
    assert!(
        raw.status.success() && raw_text.starts_with("k8s:enc:"),
        "{raw_text}"
    );
    assert!(!raw_text.contains("\"k\""), "plaintext in etcd");
    let prefix: String = raw_text.chars().take(22).collect();
    println!(
        "etcd holds Secret default/on-worker as {prefix}… ({} bytes)",
        raw.stdout.len()
    );

    // A service-account token verifies against service-account.pub.
    let token = kubectl(
        &lab,
        &bins,
        &[],
        admin,
        &["-n", "default", "create", "token", "default"],
    );
    assert!(token.status.success(), "{}", output_text(&token));
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let public_key = root.join("etc/kubernetes/ssl/service-account.pub");
    assert!(
        jwt_verifies(&token, &public_key, lab.work.path()),
        "the token does not verify against service-account.pub"
    );
    println!("a service-account token verifies against service-account.pub (RS256)");

    // Every certificate renewed by a plan and apply: the API server restarts with its new
    // serving certificate, and the token issued before still authenticates (the
    // service-account key is its own asset, kept across renewals).
    let served_serial = |lab: &Lab| {
        let out = run(&mut lab.command(&[], &["sh", "-c", "openssl s_client -connect 127.0.0.1:443 </dev/null 2>/dev/null | openssl x509 -noout -serial"]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let apiserver = ApiServer {
        root: &root,
        ip: &controller.private_ip,
        binds: &kube,
        index: apiserver_index,
    };
    let serial_before = served_serial(&lab);
    cluster.expect(0, &["plan", "--renew-before", "400", "-o", "renew.json"]);
    cluster.expect(0, &["apply", "renew.json"]);
    redeploy_apiserver(&mut lab, &bins, admin, &cluster, "renew.json", &apiserver);
    let serial_after = served_serial(&lab);
    assert_ne!(
        serial_before, serial_after,
        "the API server serves its renewed certificate"
    );
    let ca = root.join("etc/kubernetes/ssl/ca.pem");
    let whoami = kubectl(
        &lab,
        &bins,
        &[],
        "/dev/null",
        &[
            "--server",
            "https://127.0.0.1:443",
            "--certificate-authority",
            ca.to_str().unwrap(),
            "--token",
            &token,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout).trim(),
        "system:serviceaccount:default:default",
        "{}",
        output_text(&whoami)
    );
    println!(
        "API server certificate renewed ({serial_before} -> {serial_after}); the earlier token still authenticates as {}",
        String::from_utf8_lossy(&whoami.stdout).trim()
    );

    // The Secrets key rotated in its three plans: after the second, apply-addons has rewritten
    // every Secret with the new key; after the third, the old key is gone and all still read.
    for step in 1..=3 {
        let file = format!("rotate-{step}.json");
        let out = cluster.expect(
            2,
            &[
                "plan",
                "--rotate-secrets-key",
                "--detailed-exitcode",
                "-o",
                &file,
            ],
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("step {step} of 3")),
            "{}",
            output_text(&out)
        );
        cluster.expect(0, &["apply", &file]);
        redeploy_apiserver(&mut lab, &bins, admin, &cluster, &file, &apiserver);
        let out = run(lab
            .command(&kube, &apply_addons_argv)
            .envs(addons_env.iter().map(|(k, v)| (*k, v.clone()))));
        assert!(
            out.status.success(),
            "apply-addons after rotation step {step}: {}",
            output_text(&out)
        );
        let keys = secret_keys_in_etcd(&lab, &root, &endpoints);
        let used: std::collections::BTreeSet<&String> = keys.values().collect();
        println!(
            "rotation step {step}: {} Secrets in etcd, encrypted with {used:?}",
            keys.len()
        );
        if step >= 2 {
            assert!(keys.values().all(|k| k == "key2"), "{keys:?}");
        }
    }
    let value = kubectl(
        &lab,
        &bins,
        &[],
        admin,
        &[
            "-n",
            "default",
            "get",
            "secret",
            "on-worker",
            "-o",
            "jsonpath={.data.k}",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&value.stdout),
        BASE64.encode("v"),
        "{}",
        output_text(&value)
    );
    let all = kubectl(
        &lab,
        &bins,
        &[],
        admin,
        &["get", "secrets", "--all-namespaces", "-o", "name"],
    );
    assert!(all.status.success(), "{}", output_text(&all));
    println!(
        "after the rotation: {} Secrets read, on-worker intact",
        String::from_utf8_lossy(&all.stdout).lines().count()
    );

    // The cloud controller, as its DaemonSet runs it, with the rendered cloud config plus a
    // service override that sends EC2 to moto; in-cluster credentials of its service account.
    let manifest = std::fs::read_to_string(
        root.join("etc/kubernetes/addons/aws-cloud-controller-manager.yaml"),
    )
    .unwrap();
    let mut args = Vec::new();
    let mut cloud_conf = String::new();
    let mut ccm_image = String::new();
    for doc in serde_norway::Deserializer::from_str(&manifest) {
        let doc: serde_norway::Value = serde::Deserialize::deserialize(doc).unwrap();
        match doc["kind"].as_str() {
            Some("DaemonSet") => {
                ccm_image = doc["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_string();
                args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect();
            }
            Some("ConfigMap") => {
                cloud_conf = doc["data"]["cloud.conf"].as_str().unwrap().to_string()
            }
            _ => {}
        }
    }
    let region = &controller.zone[..controller.zone.len() - 1];
    let etc_aws = lab.work.path().join("etc-aws");
    std::fs::create_dir_all(&etc_aws).unwrap();
    std::fs::write(etc_aws.join("cloud.conf"), format!("{cloud_conf}\n[ServiceOverride \"1\"]\nService = EC2\nRegion = {region}\nURL = {aws_endpoint}\nSigningRegion = {region}\n")).unwrap();
    let sa = lab.work.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    let token = kubectl(
        &lab,
        &bins,
        &[],
        admin,
        &[
            "-n",
            "kube-system",
            "create",
            "token",
            "cloud-controller-manager",
        ],
    );
    assert!(token.status.success(), "{}", output_text(&token));
    std::fs::write(sa.join("token"), &token.stdout).unwrap();
    std::fs::copy(root.join("etc/kubernetes/ssl/ca.pem"), sa.join("ca.crt")).unwrap();
    std::fs::write(sa.join("namespace"), "kube-system").unwrap();
    // Before any node is initialised the cloud controller's pod, and kube-proxy's through which
    // it reaches the API, must already be placed on the controller: every node still carries
    // the uninitialized taint, which only the cloud controller lifts.
    for (namespace, selector) in [
        ("kube-system", "k8s-app=aws-cloud-controller-manager"),
        ("kube-system", "k8s-app=kube-proxy"),
    ] {
        let nodes = wait_for(
            &lab,
            &format!("a pod of {selector} on the uninitialised controller"),
            60,
            &["kube-scheduler", "kube-controller-manager"],
            || {
                let out = kubectl(
                    &lab,
                    &bins,
                    &[],
                    admin,
                    &[
                        "-n",
                        namespace,
                        "get",
                        "pods",
                        "-l",
                        selector,
                        "-o",
                        "jsonpath={.items[*].spec.nodeName}",
                    ],
                );
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.split_whitespace()
                    .any(|n| n == controller.private_dns_name)
                    .then_some(text)
            },
        );
        let taints = kubectl(
            &lab,
            &bins,
            &[],
            admin,
            &[
                "get",
                "node",
                &controller.private_dns_name,
                "-o",
                "jsonpath={.spec.taints[*].key}",
            ],
        );
        assert!(
            output_text(&taints).contains("node.cloudprovider.kubernetes.io/uninitialized"),
            "{}",
            output_text(&taints)
        );
        println!(
            "before the cloud controller runs: {selector} placed on {nodes} (controller still uninitialised)"
        );
    }

    // In its pod, in-cluster config reaches the API at the kubernetes Service's address, which
    // kube-proxy on the controller sends to the endpoint the API server advertises; a socat
    // stands in for kube-proxy's DNAT.
    let service_ip = kubectl(
        &lab,
        &bins,
        &[],
        admin,
        &[
            "-n",
            "default",
            "get",
            "service",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    );
    let service_ip = String::from_utf8_lossy(&service_ip.stdout)
        .trim()
        .to_string();
    let endpoints = kubectl(
        &lab,
        &bins,
        &[],
        admin,
        &[
            "-n",
            "default",
            "get",
            "endpointslice",
            "kubernetes",
            "-o",
            "jsonpath={.endpoints[*].addresses[*]}:{.ports[*].port}",
        ],
    );
    let endpoints = String::from_utf8_lossy(&endpoints.stdout)
        .trim()
        .to_string();
    assert_eq!(
        endpoints,
        format!("{}:443", controller.private_ip),
        "the kubernetes Service's endpoint is the controller's address"
    );
    lab.ip(&["addr", "add", &format!("{service_ip}/32"), "dev", "lo"]);
    start(
        &mut lab,
        &[],
        &[
            "socat",
            &format!("TCP-LISTEN:443,bind={service_ip},fork,reuseaddr"),
            &format!("TCP:{endpoints}"),
        ],
        &[],
        "kube-proxy-stand-in",
    );
    let ccm = bins.cloud_controller.join("aws-cloud-controller-manager");
    let ccm_version = run(Command::new(&ccm).arg("--version"));
    let ccm_version = String::from_utf8_lossy(&ccm_version.stdout)
        .trim()
        .to_string();
    assert_eq!(
        ccm_version,
        format!("Kubernetes {}", image_tag(&ccm_image)),
        "the cloud controller built is the one the DaemonSet runs"
    );
    println!(
        "aws-cloud-controller-manager --version: {ccm_version}, the DaemonSet's image {ccm_image}"
    );
    let mut argv = vec![ccm.to_str().unwrap()];
    argv.extend(args.iter().map(String::as_str));
    let ccm_env = [
        ("KUBERNETES_SERVICE_HOST", service_ip.clone()),
        ("KUBERNETES_SERVICE_PORT", "443".to_string()),
        ("AWS_REGION", region.to_string()),
        ("AWS_ENDPOINT_URL", aws_endpoint.clone()),
        ("AWS_EC2_METADATA_DISABLED", "false".to_string()),
    ];
    start(
        &mut lab,
        &[
            (etc_aws.clone(), "/etc/aws"),
            (sa.clone(), "/run/secrets/kubernetes.io/serviceaccount"),
        ],
        &argv,
        &ccm_env,
        "aws-cloud-controller-manager",
    );
    for (node, instance) in [
        (&controller.private_dns_name, &controller),
        (&worker.private_dns_name, &worker),
    ] {
        let node_json = wait_for(
            &lab,
            &format!("node {node} initialised by the cloud controller"),
            120,
            &["aws-cloud-controller-manager"],
            || {
                let out = kubectl(
                    &lab,
                    &bins,
                    &[],
                    admin,
                    &["get", "node", node, "-o", "json"],
                );
                let v: Value = serde_json::from_slice(&out.stdout).ok()?;
                let tainted = v["spec"]["taints"].as_array().is_some_and(|t| {
                    t.iter()
                        .any(|t| t["key"] == "node.cloudprovider.kubernetes.io/uninitialized")
                });
                // The cloud controller lifts the taint first and writes the addresses in a
                // second update (cloud-provider's node controller, initializeNode then
                // updateNodeAddress): a node may be seen between the two.
                let addressed = v["status"]["addresses"]
                    .to_string()
                    .contains(&instance.private_ip);
                (!tainted && addressed).then_some(v)
            },
        );
        let addresses = node_json["status"]["addresses"].to_string();
        assert!(addresses.contains(&instance.private_ip), "{addresses}");
        assert_eq!(
            node_json["spec"]["providerID"],
            format!("aws:///{}/{}", instance.zone, instance.id)
        );
        println!(
            "cloud controller initialised {node}: uninitialized taint gone, providerID {}, addresses {addresses}",
            node_json["spec"]["providerID"]
        );
    }
    // The worker signals nothing itself: node-ready-signaller on the controller signals for
    // it, to the group and stack its instance's tags name (propagated from the group).
    let for_worker = wait_for(
        &lab,
        "node-ready-signaller signals for the worker",
        60,
        &["node-ready-signaller"],
        || {
            cluster.proxy.seen().into_iter().find(|s| {
                s.operation == "SignalResource"
                    && s.body.contains(&format!("UniqueId={}", worker.id))
            })
        },
    );
    for part in [
        "Status=SUCCESS".to_string(),
        "LogicalResourceId=AutoScaleWorkers".to_string(),
        format!("StackName={}", cluster.name),
    ] {
        assert!(
            for_worker.body.contains(&part),
            "{part}: {}",
            for_worker.body
        );
    }
    let line = log_tail(&lab, "node-ready-signaller")
        .lines()
        .find(|l| l.starts_with("signalled "))
        .map(str::to_string);
    println!("node-ready-signaller: {line:?}; {}", for_worker.body);
    // Every add-on workload lands on a node: the real DaemonSet controller and scheduler weigh
    // its selectors, tolerations, requests and priority class against the nodes as their
    // kubelets registered them, the cloud controller initialised them and apply-addons
    // labelled them.
    let deadline = Instant::now() + Duration::from_secs(120);
    let placed = loop {
        let out = kubectl(
            &lab,
            &bins,
            &[],
            admin,
            &[
                "get",
                "deployments,daemonsets,pods",
                "--all-namespaces",
                "-o",
                "json",
            ],
        );
        let items: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let items = items["items"].as_array().cloned().unwrap_or_default();
        let pods: Vec<&Value> = items.iter().filter(|i| i["kind"] == "Pod").collect();
        let mut missing = Vec::new();
        let mut placed = Vec::new();
        for workload in items.iter().filter(|i| i["kind"] != "Pod") {
            let name = workload["metadata"]["name"].as_str().unwrap();
            let wanted = if workload["kind"] == "Deployment" {
                workload["spec"]["replicas"].as_u64().unwrap_or(1)
            } else {
                workload["status"]["desiredNumberScheduled"]
                    .as_u64()
                    .unwrap_or(0)
            };
            let selector = workload["spec"]["selector"]["matchLabels"]
                .as_object()
                .unwrap();
            let mine: Vec<&&Value> = pods
                .iter()
                .filter(|p| {
                    p["metadata"]["namespace"] == workload["metadata"]["namespace"]
                        && selector
                            .iter()
                            .all(|(k, v)| p["metadata"]["labels"][k] == *v)
                })
                .collect();
            let nodes: Vec<&str> = mine
                .iter()
                .filter_map(|p| p["spec"]["nodeName"].as_str())
                .collect();
            if wanted == 0 || nodes.len() as u64 != wanted {
                let why: Vec<String> = mine
                    .iter()
                    .flat_map(|p| {
                        p["status"]["conditions"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .filter(|c| c["type"] == "PodScheduled" && c["status"] == "False")
                    .map(|c| c["message"].as_str().unwrap_or("").to_string())
                    .collect();
                missing.push(format!(
                    "{} {name}: {} of {wanted} pods on a node {why:?}",
                    workload["kind"].as_str().unwrap(),
                    nodes.len()
                ));
            } else {
                placed.push(format!(
                    "{} {name}: {wanted} on {nodes:?}",
                    workload["kind"].as_str().unwrap()
                ));
            }
        }
        if missing.is_empty() && !placed.is_empty() {
            break placed;
        }
        if Instant::now() > deadline {
            let events = kubectl(
                &lab,
                &bins,
                &[],
                admin,
                &[
                    "get",
                    "events",
                    "--all-namespaces",
                    "--field-selector",
                    "type=Warning",
                ],
            );
            panic!(
                "add-on workloads not placed:\n{}\n{}",
                missing.join("\n"),
                output_text(&events)
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    for line in &placed {
        println!("placed: {line}");
    }
    assert!(
        placed.iter().any(|l| l.starts_with(&format!(
            "DaemonSet aws-cloud-controller-manager: 1 on [\"{}\"]",
            controller.private_dns_name
        ))),
        "the cloud controller runs on the controller: {placed:?}"
    );

    let described = cluster
        .proxy
        .seen()
        .into_iter()
        .filter(|s| s.service == "ec2" && s.operation == "DescribeInstances")
        .count();
    assert!(
        described > 0,
        "the cloud controller asked moto's EC2 through the override"
    );
}
