//! Operations on a running cluster, against moto: Kubernetes upgrades in the version skew
//! policy's order.

use kube_aws::releases::releases;

use crate::cluster::{Cluster, stderr, stdout};

/// The patch release kube-aws pins for minor `minor`.
fn pinned(minor: u32) -> String {
    releases()
        .minors
        .iter()
        .find(|m| m.minor == minor)
        .unwrap_or_else(|| panic!("1.{minor} is supported"))
        .patch
        .clone()
}

/// The 1-based line of top-level `key:` in the cluster's cluster.yaml.
fn line_of(c: &Cluster, key: &str) -> usize {
    let text = std::fs::read_to_string(c.path("cluster.yaml")).unwrap();
    text.lines()
        .position(|l| l.starts_with(&format!("{key}:")))
        .expect("the key is set")
        + 1
}

#[test]
fn a_minor_upgrade_moves_the_control_plane_first_and_a_skipped_minor_is_refused_at_its_line() {
    let (v35, v36, v37) = (pinned(35), pinned(36), pinned(37));
    let c = Cluster::new("upgrade", false, None);
    c.set("stackPerPool", "true");
    c.set("nodePools", "[{name: gpu, count: 1}]");
    c.set("kubernetesVersion", &v35);
    c.plan_and_apply();
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.json")).unwrap()).unwrap();
    assert_eq!(state["kubernetes_version"], v35.as_str());

    // Two minors at once: refused at kubernetesVersion's line by plan and validate alike,
    // before any AWS change.
    c.set("kubernetesVersion", &v37);
    let at = format!(
        "cluster.yaml:{}: error: kubernetesVersion: {v37} is 2 minors after the running {v35}",
        line_of(&c, "kubernetesVersion")
    );
    c.proxy.reset();
    let refused = c.expect(1, &["plan", "-o", "skip.json"]);
    assert!(stderr(&refused).contains(&at), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&format!("plan and apply {v36}, then {v37} in turn")),
        "{}",
        stderr(&refused)
    );
    assert!(!c.path("skip.json").exists());
    assert_eq!(c.proxy.cluster_writes(), Vec::<&str>::new());
    let validated = c.expect(1, &["validate", "--offline"]);
    assert!(stdout(&validated).contains(&at), "{}", stdout(&validated));

    // One minor: planned, said in words, applied with the cluster stack before the pool's.
    c.set("kubernetesVersion", &v36);
    c.expect(0, &["validate", "--offline"]);
    let planned = c.expect(2, &["plan", "--detailed-exitcode", "-o", "plan.json"]);
    let text = stdout(&planned);
    assert!(
        text.contains(&format!(
            "Note: Kubernetes minor upgrade {v35} → {v36}, 1.35 to 1.36: the one step this plan may take (one minor per plan). The control plane goes first"
        )) && text.contains("apply changes the pool stacks only once the cluster stack has"),
        "{text}"
    );
    c.proxy.reset();
    c.expect(0, &["apply", "plan.json"]);
    let executed: Vec<String> = c
        .proxy
        .seen()
        .into_iter()
        .filter(|s| s.operation == "ExecuteChangeSet")
        .map(|s| {
            let pool = s.body.contains("-pool-");
            if pool { "pool" } else { "cluster" }.to_string()
        })
        .collect();
    // The cluster stack, then the stacks of the default workers and of gpu.
    assert_eq!(executed, ["cluster", "pool", "pool"]);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.json")).unwrap()).unwrap();
    assert_eq!(state["kubernetes_version"], v36.as_str());

    // Back a minor: refused.
    c.set("kubernetesVersion", &v35);
    let back = c.expect(1, &["plan", "-o", "back.json"]);
    assert!(
        stderr(&back).contains(&format!("{v35} is an older minor than the running {v36}")),
        "{}",
        stderr(&back)
    );
}
