//! etcd membership changes, one reviewed step at a time, proven with real etcd in the lab: the
//! rendered etcd-join and etcd-membership scripts grow a running cluster 3 → 5 and shrink it
//! back to 3, a member is killed, and members come back with and without their data volume,
//! while a client writes a key every 50 ms. Each step reports the writer's longest error window.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kube_aws::config::ClusterConfig;
use kube_aws::render::Rendered;

use crate::harness::moto;
use crate::lab::{
    Lab, Member, decrypt_assets, etcdctl, lay_out, output_text, require, require_root, run,
    start_member, stop_member, wait_healthy,
};
use crate::payload::{
    THREE_AND_THREE, cloud_config_parts, etcd_client, founding_through, render_cluster,
};

/// The most members a step of this test runs: 3 → 5 → 3.
const MOST: usize = 5;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A client writing one key every 50 ms through the apiserver's etcd certificate, to the
/// founding members (as the API servers' `--etcd-servers`), each write logged with its result.
struct Writer {
    child: Child,
    log: PathBuf,
}

/// What the writer saw during one step.
#[derive(Debug, Default)]
struct Window {
    writes: usize,
    failed: usize,
    /// From the first failed write of a run of failures to the next acknowledged one.
    longest_error_ms: u64,
    /// The longest time between two acknowledged writes.
    longest_gap_ms: u64,
}

impl Writer {
    fn start(lab: &Lab, client: &Path, endpoints: &str) -> Writer {
        let ssl = client.join("etc/kubernetes/ssl");
        let log = lab.work.path().join("writer.log");
        let script = r#"while :; do
  start=$(date +%s%3N)
  if etcdctl --endpoints="$ENDPOINTS" --cacert="$SSL/ca.pem" --cert="$SSL/etcd-client.pem" \
      --key="$SSL/etcd-client-key.pem" --dial-timeout=1s --command-timeout=2s \
      put /kube-aws/writer "$start" >/dev/null 2>&1; then
    result=ok
  else
    result=err
  fi
  echo "$start $(date +%s%3N) $result" >>"$LOG"
  sleep 0.05
done"#;
        let mut command = lab.command(&[], &["bash", "-c", script]);
        command
            .env("ETCDCTL_API", "3")
            .env("ENDPOINTS", endpoints)
            .env("SSL", &ssl)
            .env("LOG", &log);
        Writer {
            child: command.spawn().expect("the writer starts"),
            log,
        }
    }

    /// The writes started between `from` and `to` (ms since the epoch).
    fn window(&self, from: u64, to: u64) -> Window {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let writes: Vec<(u64, u64, bool)> = text
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                let start = parts.next()?.parse().ok()?;
                let end = parts.next()?.parse().ok()?;
                Some((start, end, parts.next()? == "ok"))
            })
            .filter(|(start, _, _)| (from..to).contains(start))
            .collect();
        let mut window = Window {
            writes: writes.len(),
            failed: writes.iter().filter(|w| !w.2).count(),
            ..Window::default()
        };
        let mut failing_since = None;
        let mut last_ok = from;
        for &(start, end, ok) in &writes {
            if ok {
                if let Some(since) = failing_since.take() {
                    window.longest_error_ms = window.longest_error_ms.max(end - since);
                }
                window.longest_gap_ms = window.longest_gap_ms.max(end.saturating_sub(last_ok));
                last_ok = end;
            } else if failing_since.is_none() {
                failing_since = Some(start);
            }
        }
        if let Some(since) = failing_since {
            window.longest_error_ms = window.longest_error_ms.max(to - since);
        }
        window
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lab's etcd members, laid out from one render after another.
struct Members<'a> {
    lab: Lab,
    client: PathBuf,
    hosts: Vec<(String, String)>,
    rendered: &'a Rendered,
    /// What the rendered scripts printed, step by step.
    said: Vec<String>,
}

impl Members<'_> {
    fn endpoint(&self, index: usize) -> String {
        format!("https://{}:2379", self.hosts[index].0)
    }

    /// Member `index` as the current render lays it out (keeping whatever data it has).
    fn lay_out(&self, index: usize) -> Member {
        let text = &self.rendered.cloud_configs[&format!("cloud-config-etcd-{index}")];
        let (host, ip) = &self.hosts[index];
        let (files, units) = cloud_config_parts(text, Some(ip));
        let name = format!("etcd-{index}");
        let root = self.lab.work.path().join(&name);
        lay_out(&root, &files);
        decrypt_assets(&self.lab, &root);
        Member::of_units(&name, host, &root, &units)
    }

    /// Starts member `index` as its unit would (etcd-join first), then runs its etcd-membership
    /// until it succeeds (as etcd-healthy does) and the member answers as healthy.
    fn start(&mut self, index: usize) {
        let member = self.lay_out(index);
        let joined = start_member(&mut self.lab, &member);
        for line in joined.lines() {
            self.said.push(format!("  {}: {line}", member.name));
        }
        let join = std::fs::read_to_string(member.root.join("etc/etcd/etcd-join.env")).unwrap();
        self.said.push(format!(
            "  {}: etcd-join.env: {}",
            member.name,
            join.lines().collect::<Vec<_>>().join(" ")
        ));
        let script = member.root.join("opt/bin/etcd-membership");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = run(&mut self
                .lab
                .member_command(&member.root, &["/bin/bash", script.to_str().unwrap()]));
            if out.status.success() {
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    self.said.push(format!("  {}: {line}", member.name));
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: etcd-membership did not succeed within 90 s: {}",
                member.name,
                output_text(&out)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let endpoint = self.endpoint(index);
        wait_healthy(
            &self.lab,
            &self.client,
            &endpoint,
            std::slice::from_ref(&member),
        );
    }

    /// Replaces member `index`'s instance with one of the current render, with its volume.
    fn roll(&mut self, index: usize) {
        stop_member(&mut self.lab, &format!("etcd-{index}"), "TERM");
        self.start(index);
    }

    /// The member list as the running members give it: (id, name, started, learner).
    fn list(&self, running: &[usize]) -> Vec<(String, String, bool, bool)> {
        let endpoints: Vec<String> = running.iter().map(|&i| self.endpoint(i)).collect();
        let out = etcdctl(
            &self.lab,
            &self.client,
            &endpoints.join(","),
            &["member", "list", "--write-out=simple"],
        );
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(", ").collect();
                (
                    f[0].to_string(),
                    f[2].to_string(),
                    f[1] == "started",
                    f[5] == "true",
                )
            })
            .collect()
    }

    /// Exactly members `0..count` are started voters.
    fn assert_voters(&self, count: usize) {
        let running: Vec<usize> = (0..count).collect();
        let list = self.list(&running);
        let mut names: Vec<String> = list
            .iter()
            .filter(|(_, _, started, learner)| *started && !learner)
            .map(|(_, name, _, _)| name.clone())
            .collect();
        names.sort();
        let wanted: Vec<String> = running.iter().map(|i| format!("etcd-{i}")).collect();
        assert_eq!(names, wanted, "{list:?}");
        assert_eq!(list.len(), count, "no other member: {list:?}");
    }
}

fn measured(report: &mut Vec<(String, Window)>, writer: &Writer, label: &str, step: impl FnOnce()) {
    let from = now_ms();
    step();
    // The writes in flight when the step ended belong to it.
    std::thread::sleep(Duration::from_millis(500));
    let window = writer.window(from, now_ms());
    println!(
        "{label}: {} writes, {} failed, longest error window {} ms, longest gap {} ms",
        window.writes, window.failed, window.longest_error_ms, window.longest_gap_ms
    );
    report.push((label.to_string(), window));
}

#[test]
#[ignore = "real-component tier (root, etcd, the AWS CLI): scripts/test and CI run it"]
fn real_etcd_changes_membership_one_reviewed_step_at_a_time_while_a_client_writes() {
    require_root();
    for tool in ["etcd", "etcdctl", "aws", "socat", "setpriv", "ip"] {
        require(tool);
    }
    let cluster = render_cluster("etcdsteps", THREE_AND_THREE);
    let four = cluster.with_etcd_count(4);
    let five = cluster.with_etcd_count(5);
    let every = ClusterConfig {
        etcd_count: MOST as u32,
        ..cluster.config.clone()
    }
    .etcd_members();
    let hosts: Vec<(String, String)> = every
        .iter()
        .map(|m| (m.host.clone(), format!("10.0.0.{}", 10 + m.index)))
        .collect();
    let mut lab = Lab::new(moto(), &hosts);
    let (_proxy, stack_status) = founding_through(&mut lab);
    let client = etcd_client(&lab, &cluster);
    let mut members = Members {
        lab,
        client,
        hosts,
        rendered: &cluster.rendered,
        said: Vec::new(),
    };

    // The stack creates the members one after another; each founds the cluster.
    for index in 0..3 {
        let member = members.lay_out(index);
        start_member(&mut members.lab, &member);
    }
    let founders: Vec<String> = (0..3).map(|i| members.endpoint(i)).collect();
    let founders = founders.join(",");
    for index in 0..3 {
        let join = std::fs::read_to_string(
            members
                .lab
                .work
                .path()
                .join(format!("etcd-{index}/etc/etcd/etcd-join.env")),
        )
        .unwrap();
        assert!(
            join.contains("ETCD_INITIAL_CLUSTER_STATE=new"),
            "etcd-{index} founds: {join}"
        );
    }
    let put = etcdctl(
        &members.lab,
        &members.client,
        &founders,
        &["put", "/kube-aws/founded", "before-every-step"],
    );
    assert!(put.status.success(), "{}", output_text(&put));
    members.assert_voters(3);
    let writer = Writer::start(&members.lab, &members.client, &founders);
    std::thread::sleep(Duration::from_secs(1));
    *stack_status.lock().unwrap() = "UPDATE_IN_PROGRESS".into();

    let mut report = Vec::new();
    let mut said = Vec::new();
    // Each step as the stack update runs it: every member rolled in turn with its volume
    // (their renders changed), then the new member, or the removed member's instance deleted.
    let steps: [(&str, &Rendered, usize, usize); 4] = [
        ("grow 3 → 4", &four, 3, 4),
        ("grow 4 → 5", &five, 4, 5),
        ("shrink 5 → 4", &four, 5, 4),
        ("shrink 4 → 3", &cluster.rendered, 4, 3),
    ];
    for (label, rendered, from, to) in steps {
        members.rendered = rendered;
        measured(&mut report, &writer, label, || {
            for index in 0..from.min(to) {
                members.roll(index);
            }
            if to > from {
                members.start(from);
            } else {
                stop_member(&mut members.lab, &format!("etcd-{to}"), "TERM");
            }
        });
        members.assert_voters(to);
        said.push(format!("{label}:"));
        said.append(&mut members.said);
    }
    let removed: Vec<&String> = said
        .iter()
        .filter(|l| l.contains("removed member"))
        .collect();
    assert_eq!(removed.len(), 2, "one member removed per shrink: {said:#?}");
    assert!(
        said.iter()
            .filter(|l| l.contains("promoted to a voting member"))
            .count()
            == 2,
        "one learner promoted per growth: {said:#?}"
    );

    // One member of three dies; the other two keep serving. Its instance is replaced with its
    // volume: it rejoins with its data.
    *stack_status.lock().unwrap() = "UPDATE_COMPLETE".into();
    measured(&mut report, &writer, "etcd-0 killed", || {
        stop_member(&mut members.lab, "etcd-0", "KILL");
        std::thread::sleep(Duration::from_secs(3));
    });
    measured(&mut report, &writer, "etcd-0 back with its volume", || {
        members.start(0)
    });
    members.assert_voters(3);
    said.push("etcd-0 back with its volume:".into());
    said.append(&mut members.said);

    // A member whose volume is lost: etcd-join removes its stale entry and adds it again as a
    // learner, which catches up from the leader and is promoted.
    let before = members.list(&[0, 2]);
    let old_id = before.iter().find(|m| m.1 == "etcd-1").unwrap().0.clone();
    measured(
        &mut report,
        &writer,
        "etcd-1 replaced without its volume",
        || {
            stop_member(&mut members.lab, "etcd-1", "TERM");
            let data = members.lab.work.path().join("etcd-1/var/lib/etcd/data");
            std::fs::remove_dir_all(&data).unwrap();
            // What a first start that failed before its log leaves: etcd would found a
            // cluster of its own on it.
            std::fs::create_dir_all(data.join("member/snap")).unwrap();
            members.start(1);
        },
    );
    members.assert_voters(3);
    let after = members.list(&[0, 1, 2]);
    let new_id = after.iter().find(|m| m.1 == "etcd-1").unwrap().0.clone();
    assert_ne!(old_id, new_id, "etcd-1 came back as a new member");
    assert!(
        members
            .said
            .iter()
            .any(|l| l.contains("has a member folder without a log"))
            && members
                .said
                .iter()
                .any(|l| l.contains("lost its data: removing it")),
        "{:#?}",
        members.said
    );
    said.push("etcd-1 without its volume:".into());
    said.append(&mut members.said);
    drop(writer);

    // etcd-1 caught up: it holds what was written before every step, read from itself alone.
    let get = etcdctl(
        &members.lab,
        &members.client,
        &members.endpoint(1),
        &[
            "get",
            "/kube-aws/founded",
            "--print-value-only",
            "--consistency=s",
        ],
    );
    assert_eq!(output_text(&get).trim(), "before-every-step");

    for line in &said {
        println!("{line}");
    }
    println!("step | writes | failed | longest error window | longest gap between writes");
    for (label, w) in &report {
        println!(
            "{label} | {} | {} | {} ms | {} ms",
            w.writes, w.failed, w.longest_error_ms, w.longest_gap_ms
        );
        assert!(w.writes > 0, "{label}: the writer made no write");
        // A step that lost quorum would fail writes until the end of the step and beyond.
        assert!(
            w.longest_gap_ms < 10_000,
            "{label}: no acknowledged write for {} ms",
            w.longest_gap_ms
        );
    }
}
