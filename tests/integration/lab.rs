//! Real components in a network namespace: the planned addresses on its loopback, the
//! cluster's names resolving to them, moto (and any other loopback server of the host) bridged
//! in, and each process started with an instance's files bound at their real paths. The etcd
//! and control-plane tests share it; everything it starts or mounts is removed on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Moto, aws_env, moto};
use crate::payload::{WrittenFile, WrittenUnit};

pub fn run(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    command.output().unwrap_or_else(|e| panic!("{shown}: {e}"))
}

pub fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run scripts/ensure-tools. These tests check the payload with \
         the real component and do not skip without it."
    );
}

pub fn require_root() {
    let uid = run(Command::new("id").arg("-u"));
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (it creates network and mount namespaces); CI runs as root"
    );
}

/// A network namespace with the planned addresses, the cluster's names resolving to them,
/// moto reachable inside it, and every process started in it; all removed on drop. One lab
/// at a time: labs bind instances' files onto the same host paths.
pub struct Lab {
    pub netns: String,
    pub work: tempfile::TempDir,
    pub processes: Vec<Child>,
    /// Each etcd member [`start_member`] started, by name.
    pub etcd: Vec<(String, Child)>,
    /// The host's loopback port the lab's AWS calls go to: moto, or a proxy in front of it.
    pub aws_port: u16,
    made_dirs: Vec<PathBuf>,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held by whatever binds instance files onto host paths (`/etc/kubernetes` …) and creates or
/// removes those mount points: a lab, or one run of a rendered script in a mount namespace.
/// Removing a mount point another test has bound in its own namespace leaves that binding
/// unreachable by path (CI met it: fetch-addons' files vanished when a lab ended).
pub fn host_mount_points() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where an etcd member's files are bound (see [`Lab::member_command`]).
const MEMBER_MOUNTS: [&str; 3] = ["/etc/kubernetes/ssl", "/etc/etcd", "/var/lib/etcd"];

impl Lab {
    pub fn new(moto: &Moto, hosts: &[(String, String)]) -> Lab {
        let guard = host_mount_points();
        let netns = format!("kaws-lab-{}", std::process::id());
        let moto_port: u16 = moto.endpoint.rsplit(':').next().unwrap().parse().unwrap();
        let mut lab = Lab {
            netns: netns.clone(),
            work: tempfile::tempdir().unwrap(),
            processes: Vec::new(),
            etcd: Vec::new(),
            aws_port: moto_port,
            made_dirs: Vec::new(),
            _one_at_a_time: guard,
        };
        assert!(
            run(Command::new("ip").args(["netns", "add", &netns]))
                .status
                .success()
        );
        // The sandbox kernel has no dummy interfaces; loopback holds the planned addresses.
        lab.ip(&["link", "set", "lo", "up"]);
        let addresses: std::collections::BTreeSet<&String> =
            hosts.iter().map(|(_, ip)| ip).collect();
        for ip in addresses {
            lab.ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
        }
        // `ip netns exec` bind-mounts /etc/netns/NAME/hosts over /etc/hosts.
        let etc = PathBuf::from(format!("/etc/netns/{netns}"));
        std::fs::create_dir_all(&etc).unwrap();
        let mut text = String::from("127.0.0.1 localhost\n");
        for (name, ip) in hosts {
            text.push_str(&format!("{ip} {name}\n"));
        }
        std::fs::write(etc.join("hosts"), text).unwrap();
        lab.mount_points(&MEMBER_MOUNTS);
        lab.bridge(moto_port, "127.0.0.1", moto_port);
        lab
    }

    /// Makes each directory an instance's files can be bound onto (removed on drop if made here).
    pub fn mount_points(&mut self, dirs: &[&str]) {
        for dir in dirs {
            let path = PathBuf::from(dir);
            if !path.exists() {
                // Its missing ancestors too, each removed on drop (deepest first).
                let mut missing: Vec<PathBuf> = path
                    .ancestors()
                    .take_while(|p| !p.exists())
                    .map(Path::to_path_buf)
                    .collect();
                std::fs::create_dir_all(&path).unwrap();
                missing.reverse();
                self.made_dirs.extend(missing);
            }
        }
    }

    /// Serves `host_port` of the host's loopback at `ip:port` inside the namespace: a unix
    /// socket carries each connection across.
    pub fn bridge(&mut self, host_port: u16, ip: &str, port: u16) {
        let socket = self.work.path().join(format!("bridge-{ip}-{port}.sock"));
        self.processes.push(
            Command::new("socat")
                .arg(format!("UNIX-LISTEN:{},fork", socket.display()))
                .arg(format!("TCP:127.0.0.1:{host_port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        self.processes.push(
            Command::new("ip")
                .args(["netns", "exec", &self.netns, "socat"])
                .arg(format!("TCP-LISTEN:{port},bind={ip},fork,reuseaddr"))
                .arg(format!("UNIX-CONNECT:{}", socket.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Both listen before anything connects.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists()
            || !run(Command::new("ip")
                .args(["netns", "exec", &self.netns, "sh", "-c"])
                .arg(format!("ss -Hltn 'sport = :{port}' | grep -q .")))
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "the bridge to {ip}:{port} did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends the lab's AWS calls to `port` of the host's loopback (a [`crate::proxy::Proxy`]
    /// in front of moto, answering what moto cannot) instead of straight to moto.
    pub fn aws_through(&mut self, port: u16) {
        self.bridge(port, "127.0.0.1", port);
        self.aws_port = port;
    }

    pub fn ip(&self, args: &[&str]) {
        let out = run(Command::new("ip")
            .args(["netns", "exec", &self.netns, "ip"])
            .args(args));
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A command run inside the namespace, in a mount namespace of its own with each
    /// `(source, target)` bound, and the AWS CLI and SDKs pointed at moto.
    pub fn command(&self, binds: &[(PathBuf, &str)], program: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, "sh", "-c"])
            .arg(
                "set -e; n=$1; shift; while [ \"$n\" -gt 0 ]; do mount --bind \"$1\" \"$2\"; \
                 shift 2; n=$((n - 1)); done; exec \"$@\"",
            )
            .arg("bind")
            .arg(binds.len().to_string());
        for (source, target) in binds {
            c.arg(source).arg(target);
        }
        c.args(program);
        let path = std::env::var("PATH").unwrap_or_default();
        c.env("PATH", path);
        for (k, v) in aws_env(moto()) {
            c.env(k, v);
        }
        c.env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", self.aws_port),
        );
        c
    }

    /// A command run inside the namespace with etcd `member`'s files bound at their real paths.
    pub fn member_command(&self, member: &Path, program: &[&str]) -> Command {
        let binds: Vec<(PathBuf, &str)> = MEMBER_MOUNTS
            .iter()
            .map(|target| (member.join(target.trim_start_matches('/')), *target))
            .collect();
        self.command(&binds, program)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in self
            .processes
            .iter_mut()
            .chain(self.etcd.iter_mut().map(|(_, p)| p))
        {
            let _ = p.kill();
            let _ = p.wait();
        }
        let _ = Command::new("sh")
            .args([
                "-c",
                "ip netns pids \"$1\" | xargs -r kill -9",
                "kill",
                &self.netns,
            ])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.netns));
        for dir in self.made_dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Writes a cloud-config's files under `root` at their paths, with their modes.
pub fn lay_out(root: &Path, files: &[WrittenFile]) {
    for dir in ["etc/kubernetes/ssl", "etc/etcd", "var/lib/etcd", "opt/bin"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for f in files {
        let path = root.join(f.path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &f.content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode)).unwrap();
    }
}

pub fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub fn unit_lines<'a>(units: &'a [WrittenUnit], name: &str, key: &str) -> Vec<&'a str> {
    let unit = units.iter().find(|u| u.name == name).expect("unit");
    unit.content
        .as_deref()
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.strip_prefix(key))
        .collect()
}

pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the rendered `decrypt-assets` of the instance laid out at `root`, through moto's KMS.
pub fn decrypt_assets(lab: &Lab, root: &Path) {
    let script = root.join("opt/bin/decrypt-assets");
    let out = run(&mut lab.member_command(root, &["/bin/bash", script.to_str().unwrap()]));
    assert!(
        out.status.success(),
        "{}: decrypt-assets: {}",
        root.display(),
        output_text(&out)
    );
}

pub struct Member {
    pub name: String,
    pub host: String,
    pub root: PathBuf,
    /// etcd.service's `ExecStartPre=` lines, run as the unit runs them.
    pub start_pre: Vec<String>,
    /// The `--env-file`s of etcd.service's `ExecStart=`, read (later ones win) after
    /// `start_pre` has run: etcd-join writes one of them.
    pub env_files: Vec<String>,
}

impl Member {
    /// Member `name`, laid out at `root` from its cloud-config's `units`.
    pub fn of_units(name: &str, host: &str, root: &Path, units: &[WrittenUnit]) -> Member {
        let start = unit_lines(units, "etcd.service", "ExecStart=");
        let words: Vec<&str> = start[0].split_whitespace().collect();
        Member {
            name: name.to_string(),
            host: host.to_string(),
            root: root.to_path_buf(),
            start_pre: unit_lines(units, "etcd.service", "ExecStartPre=")
                .into_iter()
                .map(str::to_string)
                .collect(),
            env_files: words
                .windows(2)
                .filter(|w| w[0] == "--env-file")
                .map(|w| w[1].to_string())
                .collect(),
        }
    }

    /// etcd's environment as the unit gives it.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env_files
            .iter()
            .flat_map(|f| env_file(&self.root.join(f.trim_start_matches('/'))))
            .collect()
    }
}

pub fn etcdctl(lab: &Lab, client: &Path, endpoints: &str, args: &[&str]) -> Output {
    let ssl = client.join("etc/kubernetes/ssl");
    let mut c = lab.member_command(client, &["etcdctl"]);
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg(format!("--cacert={}", ssl.join("ca.pem").display()))
        .arg(format!("--cert={}", ssl.join("etcd-client.pem").display()))
        .arg(format!(
            "--key={}",
            ssl.join("etcd-client-key.pem").display()
        ))
        .arg("--dial-timeout=5s")
        .args(args);
    run(&mut c)
}

/// Starts `m` as etcd.service would; returns what its `ExecStartPre` lines printed.
pub fn start_member(lab: &mut Lab, m: &Member) -> String {
    let mut said = String::new();
    // The unit's ExecStartPre lines, as the unit runs them; the member's own scripts from where
    // its cloud-config laid them out.
    for pre in &m.start_pre {
        if pre.starts_with("-/usr/bin/docker") {
            continue;
        }
        let mut words: Vec<String> = pre.split_whitespace().map(str::to_string).collect();
        if words[0].starts_with("/opt/bin/") {
            let script = m.root.join(words[0].trim_start_matches('/'));
            words.splice(
                0..1,
                ["/bin/bash".to_string(), script.display().to_string()],
            );
        }
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let out = run(&mut lab.member_command(&m.root, &words));
        assert!(
            out.status.success(),
            "{}: {pre}: {}",
            m.name,
            output_text(&out)
        );
        said.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(m.root.join("etcd.log"))
        .unwrap();
    let mut c = lab.member_command(
        &m.root,
        &[
            "setpriv",
            "--reuid=232",
            "--regid=232",
            "--clear-groups",
            "etcd",
        ],
    );
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(m.env())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    lab.etcd
        .push((m.name.clone(), c.spawn().expect("etcd starts")));
    said
}

/// Stops member `name`'s etcd with `signal` (`TERM`: its instance shuts down; `KILL`: it dies).
pub fn stop_member(lab: &mut Lab, name: &str, signal: &str) {
    let at = lab
        .etcd
        .iter()
        .position(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} is not running"));
    let (_, mut child) = lab.etcd.remove(at);
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

pub fn wait_healthy(lab: &Lab, client: &Path, endpoints: &str, members: &[Member]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = etcdctl(lab, client, endpoints, &["endpoint", "health"]);
        let text = output_text(&out);
        if out.status.success() && text.matches("is healthy").count() == members.len() {
            return text;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = members
                .iter()
                .map(|m| {
                    let log = std::fs::read_to_string(m.root.join("etcd.log")).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    format!(
                        "{}:\n{}",
                        m.name,
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    )
                })
                .collect();
            panic!(
                "members not healthy within 60 s: {text}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn stop_members(lab: &mut Lab) {
    let names: Vec<String> = lab.etcd.iter().map(|(n, _)| n.clone()).collect();
    for name in names {
        stop_member(lab, &name, "TERM");
    }
}

/// CloudFormation's DescribeStacks answer for the stack a request names, in `status`: what
/// etcd-join asks before it lets a member found the cluster (moto's stacks are never
/// CREATE_IN_PROGRESS). Any other request is left to moto.
pub fn describe_stacks_answer(
    request: &crate::proxy::Intercepted<'_>,
    status: &str,
) -> Option<(u16, String)> {
    if request.service != "cloudformation" || request.operation != "DescribeStacks" {
        return None;
    }
    let name = request
        .body
        .split('&')
        .find_map(|p| p.strip_prefix("StackName="))
        .unwrap_or("");
    Some((
        200,
        format!(
            r#"<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><DescribeStacksResult><Stacks><member><StackName>{name}</StackName><StackId>arn:aws:cloudformation:us-west-2:123456789012:stack/{name}/guid</StackId><CreationTime>2026-12-07T00:00:00Z</CreationTime><StackStatus>{status}</StackStatus></member></Stacks></DescribeStacksResult><ResponseMetadata><RequestId>d1</RequestId></ResponseMetadata></DescribeStacksResponse>"#
        ),
    ))
}

/// An IMDSv2 stand-in on loopback: a session token by PUT, then metadata only with it.
/// `answers` are keyed by their path under `/latest/` (`meta-data/instance-id`).
pub fn serve_imds(answers: Vec<(String, String)>) -> String {
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
                    .strip_prefix("/latest/")
                    .and_then(|k| answers.iter().find(|(key, _)| key == k))
                {
                    Some((_, v)) => ("200 OK", v.clone()),
                    None => {
                        // What a component asked for that this stand-in does not know.
                        eprintln!("imds: 404 for {p}");
                        ("404 Not Found", String::new())
                    }
                },
                _ => ("405 Method Not Allowed", String::new()),
            };
            // IMDS answers a token with its lifetime, which the AWS SDKs read to cache it.
            let ttl = if method == "PUT" {
                "X-Aws-Ec2-Metadata-Token-Ttl-Seconds: 300\r\n"
            } else {
                ""
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{ttl}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    endpoint
}
