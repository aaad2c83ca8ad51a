//! An apply killed with SIGKILL at every one of its AWS requests: the state is never corrupt,
//! `status` shows a lock left behind, `state unlock` clears it (audited), and the next plan
//! converges.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{kube_aws, moto};
use crate::workflow::{Cluster, stdout};

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

    // How many requests one apply makes.
    c.set("workerCount", "2");
    c.expect(0, &["plan", "-o", "plan.json"]);
    c.proxy.reset();
    c.expect(0, &["apply", "plan.json"]);
    let requests = c.proxy.seen().len() as u64;
    assert!(requests > 10, "{:?}", c.proxy.seen());

    let mut killed_holding_lock = 0;
    let mut flagged_unfinished = 0;
    for k in 1..=requests {
        c.set("workerCount", if k % 2 == 0 { "2" } else { "3" });
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
            c.expect(0, &["state", "unlock", &id]);
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
        "killed an apply at each of its {requests} requests; {killed_holding_lock} kills left a lock that state unlock cleared; status flagged {flagged_unfinished} unfinished applies"
    );
    assert!(killed_holding_lock > 0);
    assert!(flagged_unfinished > 0);
}
