//! The cluster a plan deploys, checked with the real components wherever they run here: the
//! rendered etcd members form a cluster under Debian's etcd in a network namespace, with keys
//! decrypted through moto's KMS by the rendered script; openssl checks every certificate
//! against its consumers; shellcheck and systemd-analyze check every script and unit.
//! Tests that need root (network and mount namespaces) say so and fail without it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kube_aws::aws::images::Ec2Images;
use kube_aws::aws::kms::KmsVault;
use kube_aws::config::ClusterConfig;
use kube_aws::engine;
use kube_aws::render::Rendered;

use std::sync::{Arc, Mutex};

use crate::harness::{aws_env, block_on, init_cluster_with, moto};
use crate::lab::{
    Lab, Member, decrypt_assets, describe_stacks_answer, etcdctl, lay_out, output_text, require,
    require_root, run, start_member, stop_members, wait_healthy,
};
use crate::proxy::Proxy;

/// A cluster as configured, and what plan would render for it, with certificates issued and
/// keys sealed through moto's KMS.
pub struct RenderedCluster {
    /// Keeps the cluster directory (and its state) alive as long as the rendered cluster.
    pub _dir: tempfile::TempDir,
    pub config: ClusterConfig,
    pub rendered: Rendered,
    /// Every certificate the plan would record in the state (the admin's among them).
    pub tls: kube_aws::assets::TlsAssets,
}

pub const THREE_AND_THREE: &str = "controllerCount: 3\netcdCount: 3\nsubnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.1.0/24\nnodePools:\n  - name: gpu\n    count: 2\n";

pub fn render_cluster(prefix: &str, extra: &str) -> RenderedCluster {
    let moto = moto();
    let (dir, _cluster) = init_cluster_with(moto, prefix, &[]);
    let file = dir.path().join("cluster.yaml");
    let mut text = std::fs::read_to_string(&file).expect("cluster.yaml");
    // init's own layout line gives way to one the test sets.
    if extra.contains("stackPerPool:") {
        text = text
            .lines()
            .filter(|l| !l.starts_with("stackPerPool:"))
            .map(|l| format!("{l}\n"))
            .collect();
    }
    text.push_str(extra);
    std::fs::write(&file, text).expect("write cluster.yaml");
    let config = ClusterConfig::load(dir.path()).expect("cluster.yaml parses");
    let (rendered, tls) = block_on(async {
        let sdk = moto.sdk_config().await;
        let vault = KmsVault::new(aws_sdk_kms::Client::new(&sdk));
        let images = Ec2Images::new(aws_sdk_ec2::Client::new(&sdk));
        let now = time::OffsetDateTime::now_utc();
        let inputs = engine::BuildInputs::new(&config, None, now);
        let built = engine::build(
            dir.path(),
            &inputs,
            Some(&vault),
            Some(&images),
            &mut |_| {},
        )
        .await
        .expect("build");
        (built.rendered, built.tls.assets)
    });
    RenderedCluster {
        _dir: dir,
        config,
        rendered,
        tls,
    }
}

impl RenderedCluster {
    /// What a plan renders for the same cluster with `etcd_count` members (one step of a
    /// membership change): the same certificates, one issued for a new member.
    pub fn with_etcd_count(&self, etcd_count: u32) -> Rendered {
        let config = ClusterConfig {
            etcd_count,
            ..self.config.clone()
        };
        block_on(async {
            let sdk = moto().sdk_config().await;
            let vault = KmsVault::new(aws_sdk_kms::Client::new(&sdk));
            let images = Ec2Images::new(aws_sdk_ec2::Client::new(&sdk));
            let mut inputs =
                engine::BuildInputs::new(&config, None, time::OffsetDateTime::now_utc());
            inputs.previous_tls = &self.tls;
            engine::build(
                self._dir.path(),
                &inputs,
                Some(&vault),
                Some(&images),
                &mut |_| {},
            )
            .await
            .expect("build")
            .rendered
        })
    }
}

/// A file a cloud-config writes.
pub struct WrittenFile {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// A unit a cloud-config installs (drop-ins appended, as systemd would read them).
pub struct WrittenUnit {
    pub name: String,
    pub content: Option<String>,
    pub drop_ins: Vec<(String, String)>,
}

/// The files and units of one rendered cloud-config, as coreos-cloudinit would write them
/// (with `$private_ipv4` substituted when an address is given).
pub fn cloud_config_parts(
    text: &str,
    private_ipv4: Option<&str>,
) -> (Vec<WrittenFile>, Vec<WrittenUnit>) {
    let text = match private_ipv4 {
        Some(ip) => text.replace("$private_ipv4", ip),
        None => text.to_string(),
    };
    let doc: serde_norway::Value = serde_norway::from_str(&text).expect("cloud-config is YAML");
    let str_of =
        |v: &serde_norway::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let files = doc["write_files"]
        .as_sequence()
        .expect("write_files")
        .iter()
        .map(|f| {
            let raw = str_of(f, "content").unwrap_or_default();
            let content = match str_of(f, "encoding").as_deref() {
                Some("base64") | Some("b64") => BASE64.decode(raw.trim()).expect("base64 content"),
                None => raw.into_bytes(),
                Some(other) => panic!("encoding {other} is not used by the templates"),
            };
            let mode = str_of(f, "permissions")
                .map(|p| u32::from_str_radix(&p, 8).expect("octal permissions"))
                .unwrap_or(0o644);
            WrittenFile {
                path: str_of(f, "path").expect("path"),
                content,
                mode,
            }
        })
        .collect();
    let units = doc["coreos"]["units"]
        .as_sequence()
        .expect("coreos.units")
        .iter()
        .map(|u| WrittenUnit {
            name: str_of(u, "name").expect("unit name"),
            content: str_of(u, "content"),
            drop_ins: u
                .get("drop-ins")
                .and_then(|d| d.as_sequence())
                .map(|d| {
                    d.iter()
                        .map(|x| (str_of(x, "name").unwrap(), str_of(x, "content").unwrap()))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    (files, units)
}

// ---------------------------------------------------------------------------------------------
// openssl

fn write_pems(dir: &Path, files: &[WrittenFile]) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for f in files {
        let Some(name) = f.path.strip_prefix("/etc/kubernetes/ssl/") else {
            continue;
        };
        if !(name.ends_with(".pem") || name.ends_with(".pub")) || name.ends_with("-key.pem") {
            continue;
        }
        let path = dir.join(name);
        std::fs::write(&path, &f.content).unwrap();
        out.insert(name.to_string(), path);
    }
    out
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = run(Command::new("openssl").args(args));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every `server:` of every kubeconfig a cloud-config writes.
fn kubeconfig_servers(files: &[WrittenFile]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in files.iter().filter(|f| f.path.ends_with("kubeconfig.yaml")) {
        let text = String::from_utf8_lossy(&f.content);
        for line in text.lines() {
            if let Some(server) = line.trim().strip_prefix("server: ") {
                out.push((f.path.clone(), server.to_string()));
            }
        }
    }
    out
}

fn check_certificates_with_openssl(cluster: &RenderedCluster) -> (Vec<String>, BTreeSet<String>) {
    let work = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    // Each cloud-config's files in a folder of their own: two cloud-configs may write the same
    // name with different content, and each is checked.
    let mut written: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
    let mut servers = Vec::new();
    let mut etcd_servers = Vec::new();
    for (name, text) in &cluster.rendered.cloud_configs {
        let (files, _) = cloud_config_parts(text, Some("10.0.0.99"));
        let dir = work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, path) in write_pems(&dir, &files) {
            written.insert((name.clone(), file), path);
        }
        servers.extend(
            kubeconfig_servers(&files)
                .into_iter()
                .map(|s| (name.clone(), s)),
        );
        for f in &files {
            let text = String::from_utf8_lossy(&f.content);
            for line in text.lines() {
                if let Some(list) = line.trim().strip_prefix("- --etcd-servers=") {
                    etcd_servers.extend(list.split(',').map(str::to_string));
                }
            }
        }
    }
    // The admin's client certificate is in no cloud-config: `kubeconfig` writes it.
    let admin_dir = work.path().join("kubeconfig");
    std::fs::create_dir_all(&admin_dir).unwrap();
    let admin = admin_dir.join("admin.pem");
    std::fs::write(&admin, &cluster.tls["admin"].certificate_pem).unwrap();
    written.insert(("kubeconfig".into(), "admin.pem".into()), admin);

    // One CA everywhere.
    let cas: BTreeSet<Vec<u8>> = written
        .iter()
        .filter(|((_, file), _)| file == "ca.pem")
        .map(|(_, path)| std::fs::read(path).unwrap())
        .collect();
    assert_eq!(cas.len(), 1, "the cloud-configs carry different CAs");
    let all: BTreeMap<String, PathBuf> = written
        .iter()
        .map(|((_, file), path)| (file.clone(), path.clone()))
        .collect();
    let ca = all["ca.pem"].display().to_string();
    // What each certificate's consumer needs it to be good for.
    let usages: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("apiserver.pem", &["TLS Web Server Authentication"][..]),
        (
            "apiserver-kubelet-client.pem",
            &["TLS Web Client Authentication"][..],
        ),
        (
            "kube-controller-manager.pem",
            &["TLS Web Client Authentication"][..],
        ),
        ("kube-scheduler.pem", &["TLS Web Client Authentication"][..]),
        ("kube-addons.pem", &["TLS Web Client Authentication"][..]),
        ("etcd-client.pem", &["TLS Web Client Authentication"][..]),
        ("admin.pem", &["TLS Web Client Authentication"][..]),
        // Peers present it as server and as client.
        (
            "etcd-server.pem",
            &[
                "TLS Web Server Authentication",
                "TLS Web Client Authentication",
            ][..],
        ),
    ]);
    let mut verified = BTreeSet::new();
    for ((asset, name), path) in &written {
        if name == "ca.pem" || name.ends_with(".pub") {
            continue;
        }
        let path = path.display().to_string();
        let (ok, text) = openssl(&["verify", "-CAfile", &ca, &path]);
        assert!(ok, "{asset} {name} does not chain to the CA: {text}");
        report.push(format!(
            "openssl verify {asset}/{name}: {}",
            text.trim().rsplit(' ').next().unwrap_or("")
        ));
        let needed = usages
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name}: no consumer usage recorded for this certificate"));
        let (ok, eku) = openssl(&["x509", "-in", &path, "-noout", "-ext", "extendedKeyUsage"]);
        assert!(ok, "{asset} {name}: {eku}");
        for usage in *needed {
            assert!(eku.contains(usage), "{asset} {name} lacks {usage}: {eku}");
        }
        verified.insert(format!("{asset}/{name}"));
    }
    let (ok, subject) = openssl(&[
        "x509",
        "-in",
        &all["admin.pem"].display().to_string(),
        "-noout",
        "-subject",
    ]);
    assert!(
        ok && subject.contains("O = system:masters"),
        "admin: {subject}"
    );
    let apiserver = all["apiserver.pem"].display().to_string();
    assert!(!servers.is_empty());
    for (asset, (file, server)) in &servers {
        let host = server
            .trim_start_matches("https://")
            .split(':')
            .next()
            .unwrap()
            .to_string();
        let flag = if host.parse::<std::net::Ipv4Addr>().is_ok() {
            "-checkip"
        } else {
            "-checkhost"
        };
        let (ok, text) = openssl(&["x509", "-in", &apiserver, "-noout", flag, &host]);
        assert!(
            ok && text.contains("does match"),
            "{asset} {file}: server {server} is not covered by the apiserver certificate: {text}"
        );
        report.push(format!("{asset} {file}: {server} {}", text.trim()));
    }
    let etcd = all["etcd-server.pem"].display().to_string();
    assert_eq!(etcd_servers.len(), cluster.config.etcd_count as usize);
    for url in &etcd_servers {
        let host = url
            .trim_start_matches("https://")
            .split(':')
            .next()
            .unwrap();
        let (ok, text) = openssl(&["x509", "-in", &etcd, "-noout", "-checkhost", host]);
        assert!(ok && text.contains("does match"), "{url}: {text}");
        report.push(format!("etcd-server.pem: {url} {}", text.trim()));
    }
    let sa = all["service-account.pub"].display().to_string();
    let (ok, text) = openssl(&["pkey", "-pubin", "-in", &sa, "-noout", "-text_pub"]);
    assert!(ok && text.contains("Public-Key: (2048 bit)"), "{text}");
    report.push("service-account.pub: openssl pkey -pubin: RSA Public-Key (2048 bit)".into());
    (report, verified)
}

#[test]
#[ignore = "real-component tier (openssl): scripts/test and CI run it"]
fn openssl_checks_every_certificate_against_its_consumers() {
    require("openssl");
    for (prefix, extra) in [("ossl", ""), ("ossl3", THREE_AND_THREE)] {
        let cluster = render_cluster(prefix, extra);
        let (report, verified) = check_certificates_with_openssl(&cluster);
        println!("{prefix}:\n  {}", report.join("\n  "));
        // Exactly these, each from the cloud-config that installs it: the control plane's
        // client and serving certificates, one etcd server certificate per member, the
        // admin's; workers carry none (they bootstrap their own).
        let mut expected: BTreeSet<String> = [
            "apiserver-kubelet-client.pem",
            "apiserver.pem",
            "etcd-client.pem",
            "kube-addons.pem",
            "kube-controller-manager.pem",
            "kube-scheduler.pem",
        ]
        .iter()
        .map(|c| format!("cloud-config-controller/{c}"))
        .collect();
        for member in 0..cluster.config.etcd_count {
            expected.insert(format!("cloud-config-etcd-{member}/etcd-server.pem"));
        }
        expected.insert("kubeconfig/admin.pem".into());
        assert_eq!(verified, expected, "{prefix}");
    }
}

// ---------------------------------------------------------------------------------------------
// shellcheck and systemd-analyze

/// Every script and unit the cloud-configs write, checked by shellcheck and systemd-analyze.
fn lint_cloud_configs(cluster: &RenderedCluster) -> (usize, usize) {
    let mut scripts = 0;
    let mut units = 0;
    for (asset, text) in &cluster.rendered.cloud_configs {
        let (files, written_units) = cloud_config_parts(text, Some("10.0.0.99"));
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // The image's units (targets, sockets) and stubs for what Flatcar or boot provides.
        std::fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
        assert!(
            run(Command::new("cp")
                .args(["-r", "/lib/systemd/system"])
                .arg(r.join("usr/lib/systemd")))
            .status
            .success()
        );
        let unit_dir = r.join("etc/systemd/system");
        std::fs::create_dir_all(&unit_dir).unwrap();
        for stub in ["docker.service", "containerd.service"] {
            std::fs::write(
                unit_dir.join(stub),
                "[Unit]\nDescription=stub of Flatcar's unit\n[Service]\nExecStart=/usr/bin/true\n",
            )
            .unwrap();
        }
        // What the units run from the host image: a copy of this machine's binary of that path.
        for u in &written_units {
            for line in u.content.as_deref().unwrap_or("").lines() {
                let Some((key, command)) = line.split_once('=') else {
                    continue;
                };
                if !key.starts_with("Exec") {
                    continue;
                }
                let program = command.trim_start_matches(['-', '@', '+', '!']);
                let program = program.split_whitespace().next().unwrap_or("");
                let host = Path::new(program);
                let target = r.join(program.trim_start_matches('/'));
                if program.starts_with("/usr/") && host.exists() && !target.exists() {
                    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                    std::fs::copy(host, &target).unwrap();
                }
            }
        }
        for exe in ["usr/bin/docker", "opt/bin/kubelet"] {
            let path = r.join(exe);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for f in &files {
            let path = r.join(f.path.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &f.content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode)).unwrap();
            if f.content.starts_with(b"#!/bin/bash") {
                shellcheck(&path, &format!("{asset}: {}", f.path));
                scripts += 1;
            }
        }
        let mut names = Vec::new();
        for u in &written_units {
            if let Some(content) = &u.content {
                std::fs::write(unit_dir.join(&u.name), content).unwrap();
                names.push(u.name.clone());
            }
            if !u.drop_ins.is_empty() {
                let d = unit_dir.join(format!("{}.d", u.name));
                std::fs::create_dir_all(&d).unwrap();
                for (name, content) in &u.drop_ins {
                    std::fs::write(d.join(name), content).unwrap();
                }
            }
        }
        assert!(!names.is_empty(), "{asset} writes no unit");
        let out = run(Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", r.display()))
            .args(&names));
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{asset}: systemd-analyze verify {names:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        units += names.len();
    }
    // The controller scripts that travel with the add-on manifests.
    let work = tempfile::tempdir().unwrap();
    for (name, text) in &cluster.rendered.manifests {
        if name.ends_with(".yaml") {
            continue;
        }
        assert!(text.starts_with("#!/bin/bash\n"), "{name}");
        let path = work.path().join(name);
        std::fs::write(&path, text).unwrap();
        shellcheck(&path, &format!("addons/{name}"));
        scripts += 1;
    }
    (scripts, units)
}

/// shellcheck at warning level on the bash script at `path` (`what` names it).
fn shellcheck(path: &Path, what: &str) {
    let out = run(Command::new("shellcheck")
        .args(["-S", "warning", "-s", "bash"])
        .arg(path));
    assert!(
        out.status.success(),
        "{what}: shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
#[ignore = "real-component tier (shellcheck, systemd-analyze): scripts/test and CI run it"]
fn shellcheck_and_systemd_analyze_are_clean_on_every_script_and_unit() {
    require("shellcheck");
    require("systemd-analyze");
    let stacks = format!("{SHAPED_POOLS}stackPerPool: true\n");
    for (prefix, extra) in [
        ("lint", ""),
        ("lint3", THREE_AND_THREE),
        // Each pool's cloud-config signals its own stack.
        ("lintstacks", stacks.as_str()),
    ] {
        let cluster = render_cluster(prefix, extra);
        let (scripts, units) = lint_cloud_configs(&cluster);
        println!(
            "{prefix}: {} cloud-configs, shellcheck -S warning clean on {scripts} scripts, systemd-analyze verify clean on {units} units",
            cluster.rendered.cloud_configs.len()
        );
        assert!(scripts >= 3 * cluster.rendered.cloud_configs.len());
    }
}

/// The controller's files laid out in `lab`, with the apiserver's etcd client certificate
/// decrypted by the controller's rendered script: the etcd client the tests use.
pub fn etcd_client(lab: &Lab, cluster: &RenderedCluster) -> PathBuf {
    let client = lab.work.path().join("controller");
    let (files, _) = cloud_config_parts(
        &cluster.rendered.cloud_configs["cloud-config-controller"],
        Some("10.0.0.50"),
    );
    lay_out(&client, &files);
    decrypt_assets(lab, &client);
    client
}

/// Sends `lab`'s AWS calls through a proxy that tells etcd-join the cluster's stack is being
/// created (so its members found the cluster); the status can be changed while it runs.
pub fn founding_through(lab: &mut Lab) -> (Proxy, Arc<Mutex<String>>) {
    let proxy = Proxy::start(&moto().endpoint, None);
    let status = Arc::new(Mutex::new("CREATE_IN_PROGRESS".to_string()));
    let answer = status.clone();
    proxy.intercept(Arc::new(move |request| {
        describe_stacks_answer(request, &answer.lock().unwrap())
    }));
    lab.aws_through(proxy.endpoint.rsplit(':').next().unwrap().parse().unwrap());
    (proxy, status)
}

#[test]
#[ignore = "real-component tier (root, etcd, the AWS CLI): scripts/test and CI run it"]
fn real_etcd_forms_the_rendered_three_member_cluster_and_restores_a_snapshot() {
    require_root();
    for tool in ["etcd", "etcdctl", "aws", "socat", "setpriv", "ip"] {
        require(tool);
    }
    let moto = moto();
    let cluster = render_cluster("etcdlab", THREE_AND_THREE);
    let members_config = cluster.config.etcd_members();
    let addresses: Vec<String> = (0..members_config.len())
        .map(|i| format!("10.0.0.{}", 10 + i))
        .collect();
    let hosts: Vec<(String, String)> = members_config
        .iter()
        .zip(&addresses)
        .map(|(m, ip)| (m.host.clone(), ip.clone()))
        .collect();
    let mut lab = Lab::new(moto, &hosts);
    let _founding = founding_through(&mut lab);

    // Each member's files, laid out as its cloud-config writes them; keys decrypted by the
    // rendered script through moto's KMS.
    let mut members = Vec::new();
    for (m, ip) in members_config.iter().zip(&addresses) {
        let text = &cluster.rendered.cloud_configs[&format!("cloud-config-etcd-{}", m.index)];
        let (files, units) = cloud_config_parts(text, Some(ip));
        let root = lab.work.path().join(&m.name);
        lay_out(&root, &files);
        decrypt_assets(&lab, &root);
        let key = root.join("etc/kubernetes/ssl/etcd-server-key.pem");
        let meta = std::fs::metadata(&key).expect("decrypt-assets wrote the key");
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (232, 232, 0o400),
            "{}",
            m.name
        );
        members.push(Member::of_units(&m.name, &m.host, &root, &units));
    }
    let client = etcd_client(&lab, &cluster);

    for m in &members {
        start_member(&mut lab, m);
    }
    let endpoints: String = members
        .iter()
        .map(|m| format!("https://{}:2379", m.host))
        .collect::<Vec<_>>()
        .join(",");
    let health = wait_healthy(&lab, &client, &endpoints, &members);
    println!("{}", health.trim());
    let list = etcdctl(&lab, &client, &endpoints, &["member", "list"]);
    let list_text = output_text(&list);
    assert!(list.status.success(), "{list_text}");
    assert_eq!(list_text.matches(", started, ").count(), 3, "{list_text}");
    println!("{}", list_text.trim());

    // A write on one member is read on another.
    let first = format!("https://{}:2379", members[0].host);
    let last = format!("https://{}:2379", members[2].host);
    let put = etcdctl(
        &lab,
        &client,
        &first,
        &["put", "/kube-aws/probe", "written-on-etcd-0"],
    );
    assert!(put.status.success(), "{}", output_text(&put));
    let get = etcdctl(
        &lab,
        &client,
        &last,
        &["get", "/kube-aws/probe", "--print-value-only"],
    );
    assert_eq!(output_text(&get).trim(), "written-on-etcd-0");
    println!(
        "put on {} and read on {}: {}",
        members[0].name,
        members[2].name,
        output_text(&get).trim()
    );

    // A client without a certificate is refused.
    let ssl = client.join("etc/kubernetes/ssl");
    let anonymous = run(lab
        .member_command(&client, &["etcdctl"])
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={first}"))
        .arg(format!("--cacert={}", ssl.join("ca.pem").display()))
        .args([
            "--dial-timeout=3s",
            "--command-timeout=5s",
            "get",
            "/kube-aws/probe",
        ]));
    assert!(
        !anonymous.status.success(),
        "a client without a certificate was served"
    );
    println!(
        "without a client certificate: exit {:?}: {}",
        anonymous.status.code(),
        output_text(&anonymous).lines().last().unwrap_or("")
    );

    // Snapshot with the rendered script (the leader uploads to S3), wipe, restore, read back.
    for i in 0..10 {
        let put = etcdctl(
            &lab,
            &client,
            &first,
            &["put", &format!("/kube-aws/key-{i}"), &format!("value-{i}")],
        );
        assert!(put.status.success());
    }
    let bucket = moto.create_bucket("etcd-snapshots", true);
    let mut uploaded = Vec::new();
    for m in &members {
        let script = m.root.join("opt/bin/etcd-snapshot");
        let out = run(
            &mut lab.member_command(&m.root, &["/bin/bash", script.to_str().unwrap(), &bucket])
        );
        let text = output_text(&out);
        assert!(out.status.success(), "{}: etcd-snapshot: {text}", m.name);
        if let Some(uri) = text.lines().find_map(|l| l.strip_prefix("saved ")) {
            uploaded.push(uri.to_string());
        }
    }
    assert_eq!(
        uploaded.len(),
        1,
        "exactly the leader saves a snapshot: {uploaded:?}"
    );
    let snapshot = uploaded.pop().unwrap();
    println!("snapshot: {snapshot}");
    stop_members(&mut lab);
    for m in &members {
        let data = m.root.join("var/lib/etcd/data");
        std::fs::remove_dir_all(&data).unwrap();
        let script = m.root.join("opt/bin/etcd-restore");
        let out =
            run(&mut lab
                .member_command(&m.root, &["/bin/bash", script.to_str().unwrap(), &snapshot]));
        assert!(
            out.status.success(),
            "{}: etcd-restore: {}",
            m.name,
            output_text(&out)
        );
        let meta = std::fs::metadata(&data).expect("restore wrote the data dir");
        assert_eq!((meta.uid(), meta.mode() & 0o777), (232, 0o700));
    }
    for m in &members {
        start_member(&mut lab, m);
    }
    wait_healthy(&lab, &client, &endpoints, &members);
    let get = etcdctl(
        &lab,
        &client,
        &last,
        &["get", "/kube-aws/", "--prefix", "--keys-only"],
    );
    let keys = output_text(&get);
    assert_eq!(
        keys.lines()
            .filter(|l| l.starts_with("/kube-aws/key-"))
            .count(),
        10,
        "{keys}"
    );
    assert!(keys.contains("/kube-aws/probe"), "{keys}");
    println!("after wiping every member and restoring {snapshot}: 11 keys back");
}

// ---------------------------------------------------------------------------------------------
// kubernetes-validate and kubectl

/// Pools with every per-pool setting: zones, an on-demand/spot mix of instance types, a role
/// of their own or the user's instance profile, and one the cluster-autoscaler sizes.
pub const SHAPED_POOLS: &str = "subnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.1.0/24\nclusterAutoscaler: {enabled: true}\nnodePools:\n  - name: spot\n    count: 2\n    instanceTypes: [m6i.large, m5.large]\n    onDemandBaseCapacity: 1\n    spotPrice: \"0.08\"\n    subnets: [us-west-2b]\n  - name: batch\n    autoscaled: true\n    minSize: 0\n    maxSize: 20\n    labels: {workload: batch}\n    taints: [{key: dedicated, value: batch, effect: NoSchedule}]\n    managedPolicies: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]\n  - name: byo\n    instanceProfileArn: arn:aws:iam::123456789012:instance-profile/byo-nodes\n";

const THREE_POOLS: &str = "nodePools:\n  - name: gpu\n    labels: {accelerator: nvidia}\n  - name: batch\n  - name: spot\n    spotPrice: \"0.1\"\n";

fn kubernetes_validate() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/kubernetes-validate/bin/kubernetes-validate");
    assert!(
        path.exists(),
        "kubernetes-validate is not installed at {}: run scripts/ensure-tools. These tests do not skip without it.",
        path.display()
    );
    path
}

#[test]
#[ignore = "real-component tier (kubernetes-validate, kubectl): scripts/test and CI run it"]
fn kubernetes_validate_and_kubectl_read_every_manifest_and_kubeconfig() {
    let validator = kubernetes_validate();
    require("kubectl");
    for (prefix, extra) in [("kv", ""), ("kv3", THREE_POOLS), ("kvpools", SHAPED_POOLS)] {
        let cluster = render_cluster(prefix, extra);
        let work = tempfile::tempdir().unwrap();
        let mut manifests = Vec::new();
        for (name, text) in &cluster.rendered.manifests {
            if !name.ends_with(".yaml") {
                continue; // a controller script (shellchecked with the cloud-configs)
            }
            // What apply-addons fills in at boot from the decrypted token.
            let text = text
                .replace("${TOKEN_ID}", "abcdef")
                .replace("${TOKEN_SECRET}", "0123456789abcdef")
                .replace("${EXPIRATION}", "2027-01-05T08:00:00Z");
            let path = work.path().join(name);
            std::fs::write(&path, text).unwrap();
            manifests.push(path);
        }
        let mut kubeconfigs = Vec::new();
        for (asset, text) in &cluster.rendered.cloud_configs {
            let (files, _) = cloud_config_parts(text, Some("10.0.0.99"));
            for f in files {
                let file_name = f.path.rsplit('/').next().unwrap().to_string();
                if f.path.starts_with("/etc/kubernetes/manifests/") {
                    let path = work.path().join(format!("static-{file_name}"));
                    std::fs::write(&path, &f.content).unwrap();
                    manifests.push(path);
                } else if f.path.ends_with("kubeconfig.yaml") {
                    let path = work.path().join(format!("{asset}-{file_name}"));
                    std::fs::write(&path, &f.content).unwrap();
                    kubeconfigs.push(path);
                }
            }
        }
        let minor = cluster.config.kubernetes_version.trim_start_matches('v');
        let minor = minor.rsplit_once('.').unwrap().0;
        let out = run(Command::new(&validator)
            .args(["--strict", "-k", &format!("{minor}.0")])
            .args(&manifests));
        let text = output_text(&out);
        assert!(
            out.status.success(),
            "kubernetes-validate --strict -k {minor}.0:\n{text}"
        );
        let passed = text.matches(" passed for resource ").count();
        assert!(passed >= 20, "{text}");
        println!(
            "{prefix}: kubernetes-validate --strict -k {minor}.0: {passed} resources in {} files passed",
            manifests.len()
        );
        for path in &manifests {
            // Reads and parses every object without a server (apply --dry-run=client needs
            // the API's discovery to map kinds).
            let out = run(Command::new("kubectl")
                .args([
                    "annotate",
                    "--local",
                    "-o",
                    "name",
                    "kube-aws/checked=true",
                    "-f",
                ])
                .arg(path));
            assert!(
                out.status.success(),
                "kubectl {}: {}",
                path.display(),
                output_text(&out)
            );
        }
        for path in &kubeconfigs {
            let out = run(Command::new("kubectl")
                .args([
                    "config",
                    "view",
                    "-o",
                    "jsonpath={.clusters[0].cluster.server}",
                    "--kubeconfig",
                ])
                .arg(path));
            let server = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                out.status.success() && server.starts_with("https://"),
                "kubectl config view {}: {}",
                path.display(),
                output_text(&out)
            );
        }
        println!(
            "{prefix}: kubectl read {} manifest files and {} kubeconfigs",
            manifests.len(),
            kubeconfigs.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// checkov

fn checkov() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/checkov/bin/checkov");
    assert!(
        path.exists(),
        "checkov is not installed at {}: run scripts/ensure-tools. These tests do not skip without it.",
        path.display()
    );
    path
}

#[test]
#[ignore = "real-component tier (checkov): scripts/test and CI run it"]
fn checkov_finds_nothing_but_the_listed_exemptions_in_the_exported_templates() {
    let checkov = checkov();
    let exemptions: serde_json::Value =
        serde_json::from_str(include_str!("../../data/checkov-exemptions.json")).unwrap();
    let exempt: Vec<(String, String)> = exemptions["exemptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(
                !e["reason"].as_str().unwrap_or("").is_empty(),
                "{e}: every exemption says why"
            );
            (
                e["check"].as_str().unwrap().to_string(),
                e["resource"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut used = std::collections::BTreeSet::new();
    for (prefix, extra) in [
        ("ckv", ""),
        ("ckv3", THREE_AND_THREE),
        (
            "ckvpriv",
            "subnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.1.0/24\nprivateSubnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.10.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.11.0/24\netcdCount: 3\n",
        ),
        (
            "ckvnlb",
            "apiEndpointLoadBalancer: {type: network, scheme: internal}\nsubnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.1.0/24\nprivateSubnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.10.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.11.0/24\n",
        ),
        (
            "ckvopt",
            "ssmSessionManager: true\nebsKmsKeyArn: arn:aws:kms:us-west-2:123456789012:key/ebs\napiAccessAllowedSourceCIDRs: [198.51.100.0/24]\nnodePools:\n  - name: batch\n  - name: spot\n    spotPrice: \"0.1\"\n",
        ),
        ("ckvpools", SHAPED_POOLS),
        (
            "ckvstacks",
            format!("{SHAPED_POOLS}stackPerPool: true\n").as_str(),
        ),
    ] {
        let cluster = render_cluster(prefix, extra);
        let work = tempfile::tempdir().unwrap();
        // The cluster stack and, with stackPerPool, each pool's stack.
        std::fs::write(
            work.path().join("stack.json"),
            &cluster.rendered.stack_template,
        )
        .unwrap();
        for (pool, stack) in &cluster.rendered.pool_stacks {
            std::fs::write(
                work.path().join(format!("pool-{pool}.json")),
                &stack.template,
            )
            .unwrap();
        }
        let file = work.path();
        let out = run(Command::new(&checkov)
            .args([
                "--framework",
                "cloudformation",
                "--skip-download",
                "--quiet",
                "-o",
                "json",
                "-d",
            ])
            .arg(file)
            .current_dir(work.path()));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("checkov output is not JSON ({e}): {}", output_text(&out)));
        let summary = &report["summary"];
        let failed: Vec<(String, String)> = report["results"]["failed_checks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        (
                            f["check_id"].as_str().unwrap().to_string(),
                            f["resource"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let unexpected: Vec<&(String, String)> =
            failed.iter().filter(|f| !exempt.contains(f)).collect();
        assert!(
            unexpected.is_empty(),
            "{prefix}: checkov findings not in data/checkov-exemptions.json: {unexpected:?}"
        );
        used.extend(failed.iter().cloned());
        assert_eq!(summary["parsing_errors"], 0, "{prefix}: {summary}");
        println!(
            "{prefix}: checkov {}: passed {}, failed {} (all exempted: {:?}), resources {}",
            summary["checkov_version"],
            summary["passed"],
            summary["failed"],
            failed,
            summary["resource_count"]
        );
    }
    for e in &exempt {
        assert!(
            used.contains(e),
            "exemption {e:?} matches no finding any more: remove it"
        );
    }
}

#[test]
fn applied_launch_templates_require_imdsv2_and_encrypt_every_volume_on_moto() {
    // S3 state: with a second pool the template is over the inline limit and is uploaded.
    let c = crate::cluster::Cluster::new("imds", true, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.set("nodePools", "[{name: batch}]");
    c.plan_and_apply();
    let checked = block_on(async {
        let sdk = moto().sdk_config().await;
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let mut checked = Vec::new();
        for (logical, kind, id) in moto().stack_resources(&c.name).await {
            if kind != "AWS::EC2::LaunchTemplate" {
                continue;
            }
            let versions = ec2
                .describe_launch_template_versions()
                .launch_template_id(&id)
                .versions("$Latest")
                .send()
                .await
                .expect("describe launch template versions");
            let data = versions.launch_template_versions()[0]
                .launch_template_data()
                .expect("launch template data");
            let metadata = data.metadata_options().expect("metadata options");
            assert_eq!(
                metadata.http_tokens().map(|t| t.as_str()),
                Some("required"),
                "{logical}"
            );
            assert_eq!(metadata.http_put_response_hop_limit(), Some(1), "{logical}");
            let devices = data.block_device_mappings();
            assert!(!devices.is_empty(), "{logical}");
            for d in devices {
                assert_eq!(d.ebs().and_then(|e| e.encrypted()), Some(true), "{logical}");
            }
            checked.push(logical);
        }
        checked
    });
    checked.iter().for_each(|l| println!("{l}: HttpTokens required, hop limit 1, every block device encrypted (DescribeLaunchTemplateVersions)"));
    assert_eq!(checked.len(), 3, "{checked:?}");
}

#[test]
fn a_private_subnet_cluster_plans_and_applies_on_moto_with_its_nat_gateways() {
    let c = crate::cluster::Cluster::new("private", true, None);
    c.use_private_subnets();
    c.plan_and_apply();
    let resources = block_on(moto().stack_resources(&c.name));
    let count = |kind: &str, prefix: &str| {
        resources
            .iter()
            .filter(|(logical, k, _)| k == kind && logical.starts_with(prefix))
            .count()
    };
    let (gateways, private) = (
        count("AWS::EC2::NatGateway", "NatGateway"),
        count("AWS::EC2::Subnet", "PrivateSubnet"),
    );
    println!("private cluster on moto: {gateways} NAT gateways, {private} private subnets");
    assert_eq!((gateways, private), (2, 2));
    c.expect(0, &["plan", "--detailed-exitcode"]);
}

#[test]
fn shaped_pools_plan_and_apply_on_moto_and_a_second_plan_is_empty() {
    // Mixed instance types with spot, one zone of two, a pool role of its own, the user's
    // instance profile, and an autoscaled pool with the cluster-autoscaler add-on.
    let c = crate::cluster::Cluster::new("pools", true, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.use_private_subnets();
    c.set("clusterAutoscaler", "{enabled: true}");
    c.set(
        "nodePools",
        "[{name: spot, count: 2, instanceTypes: [m6i.large, m5.large], onDemandBaseCapacity: 1, spotPrice: '0.08', subnets: [us-west-2b]}, {name: batch, autoscaled: true, minSize: 0, maxSize: 20, labels: {workload: batch}, managedPolicies: ['arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess']}, {name: byo, instanceProfileArn: 'arn:aws:iam::123456789012:instance-profile/byo-nodes'}]",
    );
    c.plan_and_apply();
    let resources = block_on(moto().stack_resources(&c.name));
    let logical: BTreeSet<&str> = resources.iter().map(|(l, _, _)| l.as_str()).collect();
    for wanted in [
        "AutoScaleSpot",
        "AutoScaleBatch",
        "AutoScaleByo",
        "IAMRolePoolBatch",
        "IAMInstanceProfilePoolBatch",
    ] {
        assert!(logical.contains(wanted), "{wanted} missing: {logical:?}");
    }
    assert!(!logical.contains("IAMRolePoolByo"), "{logical:?}");
    let groups = resources
        .iter()
        .filter(|(_, kind, _)| kind == "AWS::AutoScaling::AutoScalingGroup")
        .count();
    println!(
        "shaped pools on moto: {} resources, {groups} Auto Scaling groups",
        resources.len()
    );
    // The cluster-autoscaler's manifest went to the artifact bucket with the others.
    let plan = c.plan_file("plan.json");
    assert!(
        plan["assets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["path"] == "addons/cluster-autoscaler.yaml"),
        "{:#?}",
        plan["assets"]
    );
    c.expect(0, &["plan", "--detailed-exitcode"]);
}

// ---------------------------------------------------------------------------------------------
// Add-on manifests through S3

/// Runs the rendered `fetch-addons` of the controller laid out at `root`, with `/etc/kubernetes`
/// bound to the one under `root` in a private mount namespace, and the AWS CLI pointed at moto.
fn fetch_addons(root: &Path) -> Output {
    let _mount_points = crate::lab::host_mount_points();
    let host_dir = Path::new("/etc/kubernetes");
    let made = !host_dir.exists();
    std::fs::create_dir_all(host_dir).expect("create the /etc/kubernetes mount point");
    let script = root.join("opt/bin/fetch-addons");
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "sh", "-c"])
        .arg("set -e; mount --bind \"$1/etc/kubernetes\" /etc/kubernetes; exec /bin/bash \"$2\"")
        .arg("fetch")
        .arg(root)
        .arg(&script);
    for (k, v) in aws_env(moto()) {
        command.env(k, v);
    }
    let out = run(&mut command);
    if made {
        let _ = std::fs::remove_dir(host_dir);
    }
    out
}

#[test]
#[ignore = "real-component tier (root, the AWS CLI): scripts/test and CI run it"]
fn the_controller_fetches_exactly_the_planned_addons_from_s3_and_refuses_a_changed_one() {
    require_root();
    require("aws");
    require("unshare");
    let cluster = crate::cluster::Cluster::new("fetch", false, None);
    cluster.expect(0, &["plan", "-o", "plan.json"]);
    let plan = cluster.plan_file("plan.json");
    let template: serde_json::Value =
        serde_json::from_str(plan["template"].as_str().expect("the plan's template")).unwrap();
    let userdata = template["Resources"]["InstanceController"]["Properties"]["UserData"]
        .as_str()
        .expect("controller user data");
    let cloud_config = kube_aws::diff::decode_userdata(userdata).expect("gzip+base64");
    let (files, _) = cloud_config_parts(&cloud_config, None);
    let planned: BTreeMap<String, String> = plan["assets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "manifest")
        .map(|a| {
            let name = a["path"].as_str().unwrap().trim_start_matches("addons/");
            (
                name.to_string(),
                a["new_sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        planned.len(),
        crate::harness::default_addons() + kube_aws::render::CONTROLLER_SCRIPTS.len(),
        "{planned:?}"
    );

    let first = tempfile::tempdir().unwrap();
    lay_out(first.path(), &files);
    let out = fetch_addons(first.path());
    assert!(out.status.success(), "fetch-addons: {}", output_text(&out));
    let mut fetched = BTreeMap::new();
    for entry in std::fs::read_dir(first.path().join("etc/kubernetes/addons")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        fetched.insert(
            path.file_name().unwrap().to_string_lossy().into_owned(),
            kube_aws::hash::sha256_hex(&bytes),
        );
    }
    assert_eq!(
        fetched, planned,
        "the files fetched are the manifests the plan lists"
    );

    // Someone with write access to the bucket swaps a manifest: the controller stops there.
    let key = format!(
        "{}/addons/{}.yaml",
        cluster.name, planned["aws-cloud-controller-manager.yaml"]
    );
    block_on(async {
        moto()
            .s3()
            .await
            .put_object()
            .bucket(moto().artifact_bucket())
            .key(&key)
            .body(
                b"apiVersion: v1\nkind: Namespace\nmetadata: {name: planted}\n"
                    .to_vec()
                    .into(),
            )
            .send()
            .await
            .expect("moto stores the swapped object")
    });
    let second = tempfile::tempdir().unwrap();
    lay_out(second.path(), &files);
    let out = fetch_addons(second.path());
    let said = output_text(&out);
    assert!(
        !out.status.success(),
        "a changed manifest was accepted: {said}"
    );
    assert!(
        said.contains(&format!(
            "s3://{}/{key} does not have SHA-256 {}",
            moto().artifact_bucket(),
            planned["aws-cloud-controller-manager.yaml"]
        )),
        "{said}"
    );
    assert!(
        !second
            .path()
            .join("etc/kubernetes/addons/aws-cloud-controller-manager.yaml")
            .exists()
    );

    // The next plan puts the reviewed content back (its key names its hash).
    cluster.expect(0, &["plan", "-o", "plan.json"]);
    let third = tempfile::tempdir().unwrap();
    lay_out(third.path(), &files);
    let out = fetch_addons(third.path());
    assert!(out.status.success(), "fetch-addons: {}", output_text(&out));

    // After the apply, a plan with nothing to change still puts back a deleted object, which a
    // controller the group replaces would need.
    cluster.expect(0, &["apply", "plan.json"]);
    let exists = |key: &str| {
        block_on(async {
            moto()
                .s3()
                .await
                .head_object()
                .bucket(moto().artifact_bucket())
                .key(key)
                .send()
                .await
                .is_ok()
        })
    };
    block_on(async {
        moto()
            .s3()
            .await
            .delete_object()
            .bucket(moto().artifact_bucket())
            .key(&key)
            .send()
            .await
            .expect("moto deletes the object")
    });
    assert!(!exists(&key));
    let out = cluster.expect(0, &["plan", "--detailed-exitcode"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No changes."),
        "{}",
        output_text(&out)
    );
    assert!(exists(&key), "the no-op plan restored {key}");
}
