//! Operations on a running cluster, against moto: Kubernetes upgrades in the version skew
//! policy's order, etcd member count steps, and a control plane spread over zones.

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

/// `at` is the refusal both plan and validate print for what cluster.yaml now says: plan
/// writes no plan file and changes nothing in AWS. Plan's error text.
fn refused_by_plan_and_validate(c: &Cluster, at: &str) -> String {
    c.proxy.reset();
    let refused = c.expect(1, &["plan", "-o", "refused.json"]);
    assert!(stderr(&refused).contains(at), "{}", stderr(&refused));
    assert!(!c.path("refused.json").exists());
    assert_eq!(c.proxy.cluster_writes(), Vec::<&str>::new());
    let validated = c.expect(1, &["validate", "--offline"]);
    assert!(stdout(&validated).contains(at), "{}", stdout(&validated));
    stderr(&refused)
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
        c.setting_line("kubernetesVersion")
    );
    let refused = refused_by_plan_and_validate(&c, &at);
    assert!(
        refused.contains(&format!("plan and apply {v36}, then {v37} in turn")),
        "{refused}"
    );

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

/// Each instance whose `Name` tag starts with `name_prefix`, with the zone moto placed it in.
fn instance_zones(name_prefix: &str) -> Vec<(String, String)> {
    crate::harness::block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&crate::harness::moto().sdk_config().await);
        // Filtered by name on the server: moto holds every test's instances.
        let out = ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:Name")
                    .values(format!("{name_prefix}*"))
                    .build(),
            )
            .send()
            .await
            .expect("DescribeInstances");
        let mut found = Vec::new();
        for instance in out.reservations().iter().flat_map(|r| r.instances()) {
            let name = instance
                .tags()
                .iter()
                .find(|t| t.key() == Some("Name"))
                .and_then(|t| t.value())
                .unwrap_or_default();
            let zone = instance
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap_or_default();
            if name.starts_with(name_prefix) {
                found.push((name.to_string(), zone.to_string()));
            }
        }
        found.sort();
        found
    })
}

/// cluster.yaml without its top-level `availabilityZone` (subnets name their zones).
fn drop_availability_zone(c: &Cluster) {
    let path = c.path("cluster.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("availabilityZone:"))
        .collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
}

fn subnets(zones: &[&str]) -> String {
    let each: Vec<String> = zones
        .iter()
        .enumerate()
        .map(|(i, zone)| format!("{{availabilityZone: {zone}, instanceCIDR: 10.0.{i}.0/24}}"))
        .collect();
    format!("[{}]", each.join(", "))
}

#[test]
fn a_three_zone_control_plane_runs_in_three_zones_and_one_a_zone_can_stop_is_warned() {
    let c = Cluster::new("zones", false, None);
    c.set("etcdCount", "3");
    c.set("controllerCount", "3");
    let warnings = |c: &Cluster| {
        let out = c.expect(0, &["validate", "--offline"]);
        stdout(&out)
            .lines()
            .filter(|l| l.contains("warning") && l.contains("zone"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // One zone: the default layout.
    let one = warnings(&c);
    assert!(
        one.len() == 1
            && one[0].contains("availabilityZone: the control plane (3 etcd member(s), 3 controller(s)) sits in one zone, us-west-2a"),
        "{one:?}"
    );
    // Two zones, members 0 and 2 in the first: a quorum there.
    drop_availability_zone(&c);
    c.set("subnets", &subnets(&["us-west-2a", "us-west-2b"]));
    let two = warnings(&c);
    assert!(
        two.len() == 1
            && two[0].contains("subnets: 2 of the 3 etcd members run in us-west-2a, a quorum"),
        "{two:?}"
    );
    // Three zones: nothing to warn of, and the members and controllers run in all three.
    c.set(
        "subnets",
        &subnets(&["us-west-2a", "us-west-2b", "us-west-2c"]),
    );
    assert_eq!(warnings(&c), Vec::<String>::new());
    c.plan_and_apply();
    let etcd = instance_zones(&format!("{}-etcd-", c.name));
    assert_eq!(
        etcd.iter()
            .map(|(_, zone)| zone.as_str())
            .collect::<Vec<_>>(),
        ["us-west-2a", "us-west-2b", "us-west-2c"],
        "{etcd:?}"
    );
    // The controllers' group spans a subnet in each zone (AWS balances a group's instances
    // over its zones; moto starts them all in the first).
    let template: serde_json::Value =
        serde_json::from_str(c.decoded_plan("plan.json").template.as_deref().unwrap()).unwrap();
    let refs: Vec<String> =
        template["Resources"]["AutoScaleController"]["Properties"]["VPCZoneIdentifier"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Ref"].as_str().unwrap().to_string())
            .collect();
    let physical: std::collections::BTreeMap<String, String> =
        crate::harness::block_on(crate::harness::moto().stack_resources(&c.name))
            .into_iter()
            .map(|(logical, _, physical)| (logical, physical))
            .collect();
    let subnet_ids: Vec<String> = refs.iter().map(|r| physical[r].clone()).collect();
    let zones = crate::harness::block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&crate::harness::moto().sdk_config().await);
        let out = ec2
            .describe_subnets()
            .set_subnet_ids(Some(subnet_ids.clone()))
            .send()
            .await
            .expect("DescribeSubnets");
        out.subnets()
            .iter()
            .filter_map(|s| s.availability_zone().map(str::to_string))
            .collect::<std::collections::BTreeSet<String>>()
    });
    assert_eq!(
        zones.into_iter().collect::<Vec<_>>(),
        ["us-west-2a", "us-west-2b", "us-west-2c"],
        "{refs:?} {subnet_ids:?}"
    );
}

/// The etcd members a state records (one cloud-config asset each), by name.
fn recorded_etcd_members(c: &Cluster) -> Vec<String> {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.json")).unwrap()).unwrap();
    let mut members: Vec<String> = state["assets"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|k| k.rsplit('/').next())
        .filter(|k| k.starts_with("cloud-config-etcd-"))
        .map(|k| k.trim_start_matches("cloud-config-").to_string())
        .collect();
    members.sort();
    members
}

#[test]
fn the_etcd_member_count_of_a_running_cluster_moves_one_member_per_reviewed_plan() {
    let c = Cluster::new("etcdsize", false, None);
    c.set("etcdCount", "3");
    c.plan_and_apply();
    let line = c.setting_line("etcdCount");
    let steps = [
        (
            "5",
            "grows from 3 to 4 members",
            "1 more plan(s) after this one reach etcdCount: 5",
            "etcd-3",
        ),
        (
            "5",
            "grows from 4 to 5 members",
            "this plan reaches etcdCount: 5",
            "etcd-4",
        ),
        (
            "3",
            "shrinks from 5 to 4 members",
            "1 more plan(s) after this one reach etcdCount: 3",
            "etcd-4",
        ),
        (
            "3",
            "shrinks from 4 to 3 members",
            "this plan reaches etcdCount: 3",
            "etcd-3",
        ),
    ];
    for (wanted, step, after, member) in steps {
        c.set("etcdCount", wanted);
        // validate says the steps at etcdCount's line, as a warning.
        let validated = c.run(&["validate", "--offline"]);
        let text = stdout(&validated);
        assert!(
            text.contains(&format!(
                "cluster.yaml:{line}: warning: etcdCount: the running cluster has"
            )) && text.contains(step),
            "{text}"
        );
        let before = recorded_etcd_members(&c);
        let planned = c.expect(2, &["plan", "--detailed-exitcode", "-o", "plan.json"]);
        let text = stdout(&planned);
        assert!(text.contains(step) && text.contains(after), "{text}");
        println!(
            "{}",
            text.lines().find(|l| l.contains(step)).unwrap().trim()
        );
        c.expect(0, &["apply", "plan.json"]);
        let after_apply = recorded_etcd_members(&c);
        let grows = step.starts_with("grows");
        assert_eq!(
            after_apply.len(),
            if grows {
                before.len() + 1
            } else {
                before.len() - 1
            },
            "{before:?} → {after_apply:?}"
        );
        assert_eq!(
            after_apply.contains(&member.to_string()),
            grows,
            "{after_apply:?}"
        );
    }
    c.expect(0, &["plan", "--detailed-exitcode"]);
}

#[test]
fn a_member_count_step_is_refused_until_the_render_and_the_running_members_carry_the_scripts() {
    let c = Cluster::new("etcdtools", false, None);
    c.set("etcdCount", "3");
    // The cluster directory's own etcd template, as an earlier `kube-aws render` copied it:
    // without etcd-membership.
    c.expect(0, &["render"]);
    let own = c.path("userdata/cloud-config-etcd");
    let built_in = std::fs::read_to_string(&own).unwrap();
    std::fs::write(
        &own,
        built_in.replace("etcd-membership", "etcd-housekeeping"),
    )
    .unwrap();
    c.plan_and_apply();
    let at = format!(
        "cluster.yaml:{}: error: etcdCount: ",
        c.setting_line("etcdCount")
    );

    c.set("etcdCount", "5");
    c.proxy.reset();
    let refused = stderr(&c.expect(1, &["plan", "-o", "refused.json"]));
    assert!(
        refused.contains(&format!("{at}changing the etcd member count needs /opt/bin/etcd-join and /opt/bin/etcd-membership in every member's cloud-config")) && refused.contains("this render lacks cloud-config-etcd-0, cloud-config-etcd-1, cloud-config-etcd-2, cloud-config-etcd-3"),
        "{refused}"
    );
    assert_eq!(c.proxy.cluster_writes(), Vec::<&str>::new());

    // The scripts back, but the directory's stack template lets the etcd role read no stack
    // status: a new member could not tell founding from joining.
    std::fs::write(&own, &built_in).unwrap();
    let own_stack = c.path("stack-template.json");
    let stack_template = std::fs::read_to_string(&own_stack).unwrap();
    assert!(stack_template.contains("\"cloudformation:DescribeStacks\""));
    std::fs::write(
        &own_stack,
        stack_template.replace(
            "\"cloudformation:DescribeStacks\"",
            "\"cloudformation:DescribeStackResource\"",
        ),
    )
    .unwrap();
    let refused = stderr(&c.expect(1, &["plan", "-o", "refused.json"]));
    assert!(
        refused.contains(&format!("{at}changing the etcd member count needs"))
            && refused.contains("this render lacks the DescribeStacks permission"),
        "{refused}"
    );

    // The built-in templates again: the running members still lack the scripts, so a step
    // whose update rolled back would return to members that cannot remove the new one.
    std::fs::remove_file(&own).unwrap();
    std::fs::remove_file(&own_stack).unwrap();
    let refused = stderr(&c.expect(1, &["plan", "-o", "refused.json"]));
    assert!(
        refused.contains(&format!("{at}the running etcd members do not have /opt/bin/etcd-join and /opt/bin/etcd-membership yet")),
        "{refused}"
    );
    assert!(!c.path("refused.json").exists());

    // Applied once as it runs, the members carry them: the step is planned.
    c.set("etcdCount", "3");
    c.plan_and_apply();
    c.set("etcdCount", "5");
    let planned = stdout(&c.expect(2, &["plan", "--detailed-exitcode"]));
    assert!(
        planned.contains("etcd grows from 3 to 4 members"),
        "{planned}"
    );
}

#[test]
fn a_control_plane_upgraded_by_an_apply_that_failed_on_a_pool_is_not_taken_back() {
    let (v35, v36) = (pinned(35), pinned(36));
    let c = Cluster::new("upgradelag", false, None);
    c.set("stackPerPool", "true");
    c.set("kubernetesVersion", &v35);
    c.plan_and_apply();

    // The cluster stack reaches 1.36; the pool stack's change set is then refused, so apply
    // fails before it writes the state, which still records 1.35.
    c.set("kubernetesVersion", &v36);
    c.expect(2, &["plan", "--detailed-exitcode", "-o", "plan.json"]);
    c.proxy.intercept(std::sync::Arc::new(|req| {
        (req.operation == "ExecuteChangeSet" && req.body.contains("-pool-")).then(|| {
            (400, r#"<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>Stack is in UPDATE_ROLLBACK_FAILED state and can not be updated.</Message></Error><RequestId>x1</RequestId></ErrorResponse>"#.to_string())
        })
    }));
    let failed = c.run(&["apply", "plan.json"]);
    assert_ne!(failed.status.code(), Some(0), "{}", stderr(&failed));
    c.proxy.intercept(std::sync::Arc::new(|_| None));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.json")).unwrap()).unwrap();
    assert_eq!(state["kubernetes_version"], v35.as_str());

    // Back to the version the state records: the control plane runs 1.36, so it is refused,
    // at kubernetesVersion's line, before any change set.
    c.set("kubernetesVersion", &v35);
    c.proxy.reset();
    let refused = stderr(&c.expect(1, &["plan", "-o", "back.json"]));
    assert!(
        refused.contains(&format!(
            "cluster.yaml:{}: error: kubernetesVersion: the cluster stack runs {v36} (its KubernetesVersion output) while the state records {v35} (an apply changed the cluster stack and stopped before it wrote the state): {v35} is an older minor than the running {v36}",
            c.setting_line("kubernetesVersion")
        )),
        "{refused}"
    );
    assert!(
        !c.proxy
            .seen()
            .iter()
            .any(|s| s.operation == "CreateChangeSet"),
        "no change set for a refused plan"
    );

    // Forward again, the pool stack catches up.
    c.set("kubernetesVersion", &v36);
    c.plan_and_apply();
    c.expect(0, &["plan", "--detailed-exitcode"]);
}
