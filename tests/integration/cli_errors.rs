//! How the CLI treats bad input and existing files: clear errors with file and line, exit 1,
//! nothing overwritten. None of these reach AWS.

use std::path::Path;
use std::process::Command;

use crate::harness::kube_aws_without_aws;

const MINIMAL: &str = "\
clusterName: demo
externalDNSName: demo.example.com
region: us-west-2
availabilityZone: us-west-2a
keyName: demo-key
kmsKeyArn: arn:aws:kms:us-west-2:123456789012:key/0000
templateBucket: demo-artifacts
";

fn export_with(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), config).unwrap();
    let out = kube_aws_without_aws(dir.path())
        .arg("export")
        .output()
        .unwrap();
    assert!(out.stdout.is_empty(), "nothing is exported on error");
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_key_is_an_error_with_file_line_and_column() {
    let (code, stderr) = export_with(&format!("{MINIMAL}workerCont: 3\n"));
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        "error: ./cluster.yaml:8:1: workerCont: unknown key \"workerCont\" (did you mean \"workerCount\"?)"
    );
}

#[test]
fn wrong_type_is_an_error_with_file_line_and_column() {
    let (code, stderr) = export_with(&format!("{MINIMAL}controllerCount: three\n"));
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(
            "error: ./cluster.yaml:8:18: controllerCount: expected a whole number from 0 to 4294967295, found the string \"three\""
        ),
        "{stderr}"
    );
}

#[test]
fn overlapping_subnet_is_an_error_naming_the_field_and_line() {
    let (code, stderr) = export_with(&format!(
        "{MINIMAL}subnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.0.0/25\n"
    ));
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "./cluster.yaml:12:5: subnets[1].instanceCIDR: 10.0.0.0/25 overlaps subnets[0] 10.0.0.0/24"
        ),
        "{stderr}"
    );
}

#[test]
fn init_refuses_to_overwrite_cluster_yaml() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), "mine\n").unwrap();
    let out = kube_aws_without_aws(dir.path())
        .args([
            "init",
            "--cluster-name",
            "demo",
            "--external-dns-name",
            "demo.example.com",
            "--region",
            "us-west-2",
            "--availability-zone",
            "us-west-2a",
            "--key-name",
            "k",
            "--kms-key-arn",
            "arn:aws:kms:us-west-2:1:key/x",
            "--template-bucket",
            "demo-artifacts",
            "--unsigned-plans",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cluster.yaml")).unwrap(),
        "mine\n"
    );
}

#[test]
fn init_writes_a_commented_config_that_parses() {
    let dir = tempfile::tempdir().unwrap();
    let out = kube_aws_without_aws(dir.path())
        .args([
            "init",
            "--cluster-name",
            "demo",
            "--external-dns-name",
            "demo.example.com",
            "--region",
            "eu-west-1",
            "--availability-zone",
            "eu-west-1a",
            "--key-name",
            "k",
            "--kms-key-arn",
            "arn:aws:kms:eu-west-1:1:key/x",
            "--hosted-zone-id",
            "Z123",
            "--state-bucket",
            "my-state",
            "--plan-signing-key-arn",
            "arn:aws:kms:eu-west-1:1:key/sign",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("cluster.yaml")).unwrap();
    let config = kube_aws::config::ClusterConfig::parse(Path::new("cluster.yaml"), &text).unwrap();
    assert_eq!(config.region, "eu-west-1");
    assert!(config.create_record_set);
    assert_eq!(config.hosted_zone_id.as_deref(), Some("Z123"));
    assert_eq!(config.state.bucket.as_deref(), Some("my-state"));
    assert_eq!(config.state.key.as_deref(), Some("demo/state.json"));
    assert!(
        text.lines().filter(|l| l.starts_with('#')).count() > 20,
        "init explains the fields"
    );
}

#[test]
fn render_copies_templates_refuses_to_overwrite_and_overrides_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let out = kube_aws_without_aws(dir.path())
        .arg("render")
        .output()
        .unwrap();
    assert!(out.status.success());
    for name in kube_aws::render::built_in().map(|t| t.path) {
        assert!(dir.path().join(name).is_file(), "{name} missing");
    }
    let stack = dir.path().join("stack-template.json");
    std::fs::write(&stack, "customised").unwrap();

    let again = kube_aws_without_aws(dir.path())
        .arg("render")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&stack).unwrap(), "customised");

    let templates = kube_aws::engine::load_templates(dir.path()).unwrap();
    assert_eq!(
        templates.origin("stack-template.json"),
        Some(&kube_aws::render::Origin::ClusterDir)
    );

    let forced = kube_aws_without_aws(dir.path())
        .args(["render", "--force"])
        .output()
        .unwrap();
    assert!(forced.status.success());
    assert_ne!(std::fs::read_to_string(&stack).unwrap(), "customised");
}

#[test]
fn validate_offline_reports_an_unknown_key_a_type_error_and_an_overlap_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cluster.yaml"),
        format!("{MINIMAL}workerCont: 3\nrecordSetTTL: soon\nserviceCIDR: 10.0.0.0/24\n"),
    )
    .unwrap();
    let out = kube_aws_without_aws(dir.path())
        .args(["validate", "--offline"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    for expected in [
        "cluster.yaml:8:1: error: workerCont: unknown key",
        "cluster.yaml:9:15: error: recordSetTTL: expected a whole number",
        "cluster.yaml:10:1: error: serviceCIDR: 10.0.0.0/24 overlaps vpcCIDR 10.0.0.0/16",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
}

#[test]
fn an_out_of_range_renew_before_is_a_usage_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), MINIMAL).unwrap();
    let out = kube_aws_without_aws(dir.path())
        .args(["plan", "--offline", "--renew-before", "999999999999999"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--renew-before"), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("this is a bug"),
        "{stderr}"
    );
}

/// `--detailed-exitcode` keeps 2 for "changes": a mistyped flag exits 1, so a CI job never
/// posts an empty plan as changes; help and version still exit 0.
#[test]
fn a_usage_error_exits_1_never_the_2_of_changes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), MINIMAL).unwrap();
    let out = kube_aws_without_aws(dir.path())
        .args(["plan", "--detailed-exitcode", "--renew-befor", "10"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--renew-befor"), "{stderr}");
    for ok in [&["--help"][..], &["--version"], &["plan", "--help"]] {
        let out = kube_aws_without_aws(dir.path()).args(ok).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{ok:?}");
        assert!(!out.stdout.is_empty(), "{ok:?}");
    }
}

/// Runs kube-aws and kills it after 20 s: a read that hangs (a FIFO) or never ends (a device)
/// fails the test instead of the suite.
fn run_bounded(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = kube_aws_without_aws(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("kube-aws {args:?} did not finish in 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every file kube-aws reads is a regular file, read through a cap: a plan that is /dev/zero,
/// a cluster.yaml that is a device, a FIFO or a link to a file outside the cluster directory
/// are refused at once, and nothing of the foreign file is echoed.
#[test]
fn devices_fifos_and_links_out_of_the_cluster_directory_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("cluster.yaml"), MINIMAL).unwrap();
    let (code, text) = run_bounded(d, &["apply", "/dev/zero"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("/dev/zero: not a regular file (a character device)"),
        "{text}"
    );

    for (what, make) in [
        ("a device", "ln -sf /dev/zero cluster.yaml"),
        ("a FIFO", "rm -f cluster.yaml && mkfifo cluster.yaml"),
        (
            "a link out",
            "rm -f cluster.yaml && ln -s /etc/passwd cluster.yaml",
        ),
    ] {
        assert!(
            Command::new("sh")
                .args(["-c", make])
                .current_dir(d)
                .status()
                .unwrap()
                .success()
        );
        for command in [&["validate", "--offline"][..], &["plan", "--offline"]] {
            let (code, text) = run_bounded(d, command);
            assert_eq!(code, Some(1), "{what}, {command:?}: {text}");
            assert!(text.contains("cluster.yaml"), "{what}: {text}");
            assert!(
                text.contains("not a regular file")
                    || text.contains("outside the cluster directory"),
                "{what}, {command:?}: {text}"
            );
            assert!(
                !text.contains("root:"),
                "{what}: the foreign file was echoed: {text}"
            );
        }
    }
}

/// Flags that would do something other than what they say are usage errors (exit 1): `init`
/// names both buckets it could use, `kubeconfig -o -` writes no file named `-` (and never the
/// key to stdout), `destroy -o` asks for `--plan-only`.
#[test]
fn flags_that_would_mislead_are_usage_errors_naming_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let init = kube_aws_without_aws(dir.path())
        .args([
            "init",
            "--cluster-name",
            "x",
            "--external-dns-name",
            "x.example.com",
            "--region",
            "us-west-2",
            "--availability-zone",
            "us-west-2a",
            "--kms-key-arn",
            "arn:aws:kms:us-west-2:1:key/x",
            "--unsigned-plans",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&init.stderr);
    assert_eq!(init.status.code(), Some(1), "{said}");
    assert!(
        said.contains("--state-bucket") && said.contains("--template-bucket"),
        "{said}"
    );
    assert!(!dir.path().join("cluster.yaml").exists());

    std::fs::write(dir.path().join("cluster.yaml"), MINIMAL).unwrap();
    for (args, words) in [
        (&["kubeconfig", "-o", "-"][..], "never writes to stdout"),
        (&["destroy", "-o", "destroy.json"], "--plan-only"),
    ] {
        let out = kube_aws_without_aws(dir.path())
            .args(args)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains(words), "{args:?}: {said}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(!dir.path().join("-").exists());
}
