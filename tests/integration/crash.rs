//! An apply killed with SIGKILL at every one of its AWS requests: the state is never corrupt,
//! `status` shows a lock left behind, `state unlock` clears it (audited), and the next plan
//! converges.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube_aws::planfile::CertificateAction;
use serde_json::Value;

use crate::cluster::{Cluster, stderr, stdout};
use crate::harness::{kube_aws, moto};

fn lock_id(status: &str) -> Option<String> {
    status
        .lines()
        .find(|l| l.starts_with("Lock: HELD"))
        .and_then(|l| l.split("(id ").nth(1))
        .map(|rest| rest.split(')').next().unwrap().to_string())
}

#[test]
fn killed_at_every_request_of_an_apply_nothing_is_corrupt_and_the_next_plan_converges() {
    let c = Cluster::new("crash", true, None);
    c.plan_and_apply();
    kill_at_every_request(&c, "one stack", &|c: &Cluster, k: u64| {
        c.set("workerCount", if k.is_multiple_of(2) { "2" } else { "3" });
    });
}

#[test]
fn killed_at_every_request_of_an_apply_of_pool_stacks_nothing_is_corrupt_and_the_next_plan_converges()
 {
    let c = Cluster::new("crashpools", true, None);
    c.set("stackPerPool", "true");
    c.set("nodePools", "[{name: gpu, count: 1}]");
    c.plan_and_apply();
    // Every stack changes: the cluster stack's snapshot bucket, the default workers' size,
    // the other pool's instance type.
    kill_at_every_request(&c, "a stack per pool", &|c: &Cluster, k: u64| {
        let even = k.is_multiple_of(2);
        c.set("workerCount", if even { "2" } else { "3" });
        c.set("etcdSnapshotRetentionDays", if even { "7" } else { "8" });
        c.set(
            "nodePools",
            &format!(
                "[{{name: gpu, count: 1, instanceType: {}}}]",
                if even { "m5.large" } else { "m6i.large" }
            ),
        );
    });
}

/// Kills an apply (SIGKILL) at each of the requests one apply makes, in turn: the state always
/// reads and validates, a lock left behind is shown and cleared with an audit entry, and the
/// next plan and apply converge. `change` makes round `k`'s change.
fn kill_at_every_request(c: &Cluster, layout: &str, change: &dyn Fn(&Cluster, u64)) {
    // How many requests one apply makes.
    change(c, 0);
    c.expect(0, &["plan", "-o", "plan.json"]);
    c.proxy.reset();
    c.expect(0, &["apply", "plan.json"]);
    let requests = c.proxy.seen().len() as u64;
    assert!(requests > 10, "{:?}", c.proxy.seen());

    let mut killed_holding_lock = 0;
    let mut flagged_unfinished = 0;
    for k in 1..=requests {
        change(c, k);
        c.expect(0, &["plan", "-o", "plan.json"]);
        c.proxy.hold_request(k);
        let mut child = kube_aws(moto(), c.dir.path())
            .env("AWS_ENDPOINT_URL", &c.proxy.endpoint)
            .args(["apply", "plan.json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let finished_first = loop {
            if c.proxy.holding() {
                break false;
            }
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            assert!(
                Instant::now() < deadline,
                "apply neither finished nor reached request {k}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        if !finished_first {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
        c.proxy.release();

        // Never corrupt: the state reads and validates.
        let pulled = c.expect(0, &["state", "pull"]);
        let state: Value = serde_json::from_slice(&pulled.stdout).unwrap();
        crate::schemas::assert_valid("state.schema.json", &state);

        // A lock left behind is shown, and cleared with an audit entry.
        let status = stdout(&c.expect(0, &["status"]));
        if status.contains("recorded `started` and nothing after it") {
            flagged_unfinished += 1;
        }
        if let Some(id) = lock_id(&status) {
            killed_holding_lock += 1;
            c.expect(0, &["state", "unlock", &id, "--force"]);
            let last: Value =
                serde_json::from_slice(&c.expect(0, &["history", "--json", "--limit", "1"]).stdout)
                    .unwrap();
            assert_eq!(last[0]["command"], "state unlock", "killed at request {k}");
            assert!(stdout(&c.expect(0, &["status"])).contains("Lock: free"));
        }

        // The next plan converges.
        c.plan_and_apply();
        c.expect(0, &["plan", "--detailed-exitcode"]);
        c.expect(0, &["history", "--verify"]);
    }
    eprintln!(
        "{layout}: killed an apply at each of its {requests} requests; {killed_holding_lock} kills left a lock that state unlock cleared; status flagged {flagged_unfinished} unfinished applies"
    );
    assert!(killed_holding_lock > 0);
    assert!(flagged_unfinished > 0);
}

#[test]
fn a_lock_removed_before_execution_stops_the_apply_and_the_log_says_so() {
    let c = Cluster::new("lostlock", false, None);
    c.plan_and_apply();

    // Where in an apply the change set is checked, one step before it is executed.
    c.set("workerCount", "2");
    c.expect(0, &["plan", "-o", "plan.json"]);
    c.proxy.reset();
    c.expect(0, &["apply", "plan.json"]);
    let at = c
        .proxy
        .seen()
        .iter()
        .position(|r| r.operation == "DescribeChangeSet")
        .expect("apply describes the change set") as u64
        + 1;

    c.set("workerCount", "3");
    c.expect(0, &["plan", "-o", "plan.json"]);
    c.proxy.reset();
    c.proxy.hold_request(at);
    let child = c.spawn_apply(&[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !c.proxy.holding() {
        assert!(
            Instant::now() < deadline,
            "apply never reached request {at}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Someone runs `state unlock` on the running apply's lock (straight to moto).
    let lock: Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.lock")).unwrap()).unwrap();
    let id = lock["id"].as_str().unwrap().to_string();
    let unlocked = kube_aws(moto(), c.dir.path())
        .args(["state", "unlock", &id, "--force"])
        .output()
        .unwrap();
    assert!(
        unlocked.status.success(),
        "{}",
        String::from_utf8_lossy(&unlocked.stderr)
    );
    c.proxy.release();

    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("the state lock {id} was removed or taken over while this apply ran; nothing was executed")),
        "{said}"
    );
    let executed: Vec<String> = c
        .proxy
        .seen()
        .iter()
        .map(|r| r.operation.clone())
        .filter(|op| op == "ExecuteChangeSet")
        .collect();
    assert!(executed.is_empty(), "{executed:?}");
    let last: Value =
        serde_json::from_slice(&c.expect(0, &["history", "--json", "--limit", "1"]).stdout)
            .unwrap();
    assert_eq!(last[0]["result"], "failed", "the started entry is closed");
    assert!(
        last[0]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was executed")
    );
    // The reviewed plan is still good: nothing changed.
    c.expect(0, &["apply", "plan.json"]);
}

/// The worst moment to die: the first apply's change set has executed (the cluster now runs
/// with the CA and keys that plan issued) and the state is not written yet. The next plan
/// reuses exactly those certificates instead of issuing a new CA that would re-key it.
#[test]
fn killed_after_executing_before_the_state_write_the_next_plan_reuses_the_shipped_certificates() {
    let c = Cluster::new("shipped", false, None);
    c.expect(0, &["plan", "-o", "plan.json"]);
    let first = c.decoded_plan("plan.json");
    assert!(
        first
            .certificates
            .iter()
            .all(|cert| cert.action == CertificateAction::Issue)
    );
    let mut child = crate::edges::apply_while_the_stack_is_busy(&c, Duration::from_secs(3), &[]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !c.path("state/state.json").exists(),
        "killed before the state write"
    );
    std::thread::sleep(Duration::from_secs(4)); // moto answers for the stack again

    let status = stdout(&c.expect(0, &["status"]));
    println!("status after the kill:\n{status}");
    assert!(
        status.contains("recorded `started` and nothing after it"),
        "{status}"
    );
    assert!(status.contains("was executed"), "{status}");
    assert!(
        status.contains("were kept aside; the next plan reuses them"),
        "{status}"
    );
    let id = lock_id(&status).expect("the killed apply left its lock");
    c.expect(0, &["state", "unlock", &id, "--force"]);

    let out = c.expect(0, &["plan", "-o", "again.json"]);
    assert!(
        stdout(&out).contains("shipped by the interrupted apply of plan"),
        "{}",
        stdout(&out)
    );
    let again = c.decoded_plan("again.json");
    let issued: Vec<&str> = again
        .certificates
        .iter()
        .filter(|cert| cert.action != CertificateAction::Keep)
        .map(|cert| cert.name.as_str())
        .collect();
    assert!(issued.is_empty(), "re-issued after the crash: {issued:?}");
    assert_eq!(
        again.new_state.tls, first.new_state.tls,
        "the shipped CA and keys, unchanged"
    );
    c.expect(0, &["apply", "again.json"]);
    let state: Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.json")).unwrap()).unwrap();
    assert_eq!(
        state["tls"]["ca"]["certificate_sha256"],
        first.new_state.tls["ca"].certificate_sha256.as_str()
    );
    assert!(
        !c.path("state/pending.json").exists(),
        "cleared once the state holds them"
    );
    assert!(stdout(&c.expect(0, &["plan"])).contains("No changes."));
}

/// Terraform's plan takes the lock; this one refuses a locked state and names the holder:
/// while an apply holds it, a plan would describe a state that is changing, and after one died
/// holding it (its lease expired), a state that may be half-applied until someone looks.
#[test]
fn plan_refuses_a_locked_state_and_says_who_holds_it() {
    let c = Cluster::new("planlock", false, None);
    c.plan_and_apply();
    let lock = |lease: &str| {
        serde_json::json!({
            "format_version": 1,
            "id": "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
            "holder": "arn:aws:sts::123456789012:assumed-role/ci/apply",
            "operation": "apply plan.json",
            "created": "2026-12-06T10:00:00Z",
            "lease_expires": lease,
        })
        .to_string()
    };
    std::fs::write(c.path("state/state.lock"), lock("2999-01-01T00:00:00Z")).unwrap();
    let out = c.expect(1, &["plan", "-o", "held.json"]);
    let text = crate::cluster::stderr(&out);
    assert!(
        text.contains("the state is locked by arn:aws:sts::123456789012:assumed-role/ci/apply for `apply plan.json`")
            && text.contains("--force"),
        "{text}"
    );
    assert!(!c.path("held.json").exists());

    std::fs::write(c.path("state/state.lock"), lock("2026-01-01T00:00:00Z")).unwrap();
    let out = c.expect(1, &["plan"]);
    let text = crate::cluster::stderr(&out);
    assert!(
        text.contains("expired at 2026-01-01T00:00:00Z")
            && text.contains(
                "`kube-aws state unlock 7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f` removes the lock"
            ),
        "{text}"
    );
    c.expect(
        0,
        &["state", "unlock", "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"],
    );
    let out = c.expect(0, &["plan", "--detailed-exitcode"]);
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
}

/// Two applies in a row write the state and then cannot write their closing entry (S3
/// refuses every audit write after the state's): each next apply first closes the run before
/// it, so the log still names the entry that wrote the state, and plan, apply and
/// `history --verify` go on. (The fault-injection test met this: the second such run left a
/// state no entry accounted for, and every later plan refused it.)
#[test]
fn two_applies_in_a_row_without_their_closing_entries_leave_a_state_the_log_accounts_for() {
    let c = Cluster::new("unclosed", true, None);
    c.plan_and_apply();
    let state_written = Arc::new(AtomicBool::new(false));
    for count in ["2", "3"] {
        c.set("workerCount", count);
        c.expect(0, &["plan", "-o", "plan.json"]);
        state_written.store(false, Ordering::SeqCst);
        let written = state_written.clone();
        c.proxy.intercept(Arc::new(move |req| {
            if req.service != "s3" || !req.operation.starts_with("PUT ") {
                return None;
            }
            if req.operation.ends_with("/state.json") {
                written.store(true, Ordering::SeqCst);
                return None;
            }
            (written.load(Ordering::SeqCst) && req.operation.contains("/state.json.audit/")).then(|| {
                (503, r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>r</RequestId></Error>"#.to_string())
            })
        }));
        let out = c.expect(1, &["apply", "plan.json"]);
        assert!(state_written.load(Ordering::SeqCst), "{}", stderr(&out));
        assert!(stderr(&out).contains("SlowDown"), "{}", stderr(&out));
        c.proxy.intercept(Arc::new(|_| None));
    }
    c.set("workerCount", "4");
    c.expect(0, &["plan", "-o", "plan.json"]);
    c.expect(0, &["apply", "plan.json"]);
    c.expect(0, &["history", "--verify"]);
    let history: Value =
        serde_json::from_slice(&c.expect(0, &["history", "--json", "--limit", "8"]).stdout)
            .unwrap();
    let closings: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["command"]
                .as_str()
                .unwrap()
                .contains("(closing the run of entry")
        })
        .collect();
    assert_eq!(closings.len(), 2, "{history:#}");
    for closing in closings {
        assert_eq!(closing["result"], "failed");
        assert!(
            closing["message"]
                .as_str()
                .unwrap()
                .contains("has no closing entry (it was killed, writing the entry failed, or the entry was deleted)"),
            "{closing}"
        );
    }
    assert_eq!(history[0]["result"], "succeeded", "{history:#}");
}
