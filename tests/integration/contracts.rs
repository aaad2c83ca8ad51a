//! Contracts between components that no single tool sees: the name a node registers under
//! against how the AWS cloud controller finds its instance, the addresses nodes reach the API
//! by against what the stack creates, and each wait against what it waits for. Each runs the
//! rendered scripts or reads the rendered files, and asks moto's EC2 where AWS has the answer.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::{FLATCAR_AMI, block_on, moto};
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

/// An IMDSv2 stand-in on loopback: a session token by PUT, then metadata only with it.
fn serve_imds(answers: Vec<(&'static str, String)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut token_ok = false;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if header.to_ascii_lowercase().trim() == "x-aws-ec2-metadata-token: session-token" {
                    token_ok = true;
                }
            }
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, body) = match (method, path) {
                ("PUT", "/latest/api/token") => ("200 OK", "session-token".to_string()),
                ("GET", _) if !token_ok => ("401 Unauthorized", String::new()),
                ("GET", p) => match p
                    .strip_prefix("/latest/meta-data/")
                    .and_then(|k| answers.iter().find(|(key, _)| *key == k))
                {
                    Some((_, v)) => ("200 OK", v.clone()),
                    None => ("404 Not Found", String::new()),
                },
                _ => ("405 Method Not Allowed", String::new()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    endpoint
}

fn imds_answers(instance: &Instance, local_hostname: &str) -> Vec<(&'static str, String)> {
    vec![
        ("local-hostname", local_hostname.to_string()),
        ("instance-id", instance.id.clone()),
        ("placement/availability-zone", instance.zone.clone()),
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
        let path = work.path().join("node-identity");
        std::fs::write(&path, &script.content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
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
fn every_kubelet_registers_under_the_name_and_provider_id_the_cloud_controller_looks_up() {
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
fn the_node_identity_script_refuses_a_hostile_host_name_and_writes_nothing() {
    let cluster = render_cluster("identitybad", "");
    let (files, _) = cloud_config_parts(
        &cluster.rendered.cloud_configs["cloud-config-worker"],
        Some("10.0.0.99"),
    );
    let script = files
        .iter()
        .find(|f| f.path == "/opt/bin/node-identity")
        .expect("the worker writes /opt/bin/node-identity");
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("node-identity");
    std::fs::write(&path, &script.content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
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
