//! `kube-aws history` and `kube-aws state` from the command line, on local and S3 state.

use std::path::Path;

use time::OffsetDateTime;

use kube_aws::audit::{self, AuditResult, ChangeSummary, NewEntry};
use kube_aws::aws::s3::S3Objects;
use kube_aws::engine::backend::Backend;
use kube_aws::state::objects::{ObjectStore, Precondition};

use crate::harness::{block_on, init_cluster_with, kube_aws, moto};
use kube_aws::state::lock::Locker;

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = kube_aws(moto(), dir)
        .args(args)
        .output()
        .expect("kube-aws runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn entry(i: u64) -> NewEntry {
    NewEntry {
        actor: "arn:aws:iam::123456789012:user/ci".into(),
        command: "apply plan.json".into(),
        result: Some(AuditResult::Succeeded),
        state_serial_before: Some(i),
        state_serial_after: Some(i + 1),
        summary: Some(ChangeSummary {
            add: 1,
            change: 2,
            remove: 0,
            replace: 1,
        }),
        ..NewEntry::default()
    }
}

#[test]
fn history_limit_20_over_10000_s3_entries_makes_at_most_25_requests() {
    let moto = moto();
    let bucket = moto.create_bucket("history", true);
    let (dir, _) = init_cluster_with(
        moto,
        "history",
        &["--state-bucket", &bucket, "--state-key", "h/state.json"],
    );

    // Seed 10,000 chained entries straight into the bucket, 16 writers at a time.
    let t0 = OffsetDateTime::now_utc();
    let entries = audit::chain((0..10_000u64).map(|i| (t0, entry(i))));
    let client = block_on(moto.s3());
    let backend = Backend::s3(S3Objects::new(client, &bucket), "h/state.json");
    let chunks: Vec<Vec<audit::AuditEntry>> = entries.chunks(625).map(|c| c.to_vec()).collect();
    let writers: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let backend = backend.clone();
            std::thread::spawn(move || {
                block_on(async {
                    for e in chunk {
                        let key = backend.audit.entry_key(e.seq);
                        backend
                            .store
                            .objects()
                            .put(&key, &audit::encode(&e), Precondition::IfAbsent)
                            .await
                            .unwrap();
                    }
                })
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    block_on(backend.store.objects().put(
        "h/state.json.audit/HEAD",
        b"10000",
        Precondition::Overwrite,
    ))
    .unwrap();

    let before = moto.s3_requests_for(&bucket).len();
    let (code, stdout, stderr) = run(dir.path(), &["history", "--limit", "20"]);
    let made = moto.s3_requests_for(&bucket).len() - before;
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 21, "header and 20 entries:\n{stdout}");
    assert!(lines[0].starts_with("SEQ"), "{stdout}");
    assert!(lines[1].starts_with("10000 "), "newest first:\n{stdout}");
    assert!(lines[20].starts_with("9981 "), "{stdout}");
    assert!(lines[1].contains("+1 ~2 -0 ±1"), "{stdout}");
    // It reads the 20 entries it shows (and HEAD), never the other 9,980.
    assert!(
        (21..=25).contains(&made),
        "history --limit 20 made {made} S3 requests"
    );
    eprintln!("history --limit 20 over 10,000 entries: {made} S3 requests");
}

#[test]
fn history_json_show_and_verify_from_the_cli() {
    let moto = moto();
    let (dir, _) = init_cluster_with(moto, "histcli", &[]);
    // Signed like every entry of a cluster with a signing key.
    let kms = block_on(async {
        kube_aws::aws::kms::KmsVault::new(aws_sdk_kms::Client::new(&moto.sdk_config().await))
    });
    let backend = Backend::local(dir.path()).signing_with(kms, moto.plan_signing_key());
    // Entries that wrote no state: there is none, and an entry saying it wrote one would
    // make the missing state a problem (the next test shows that).
    for i in 0..3 {
        let unwritten = NewEntry {
            state_serial_after: None,
            ..entry(i)
        };
        block_on(backend.append_audit(OffsetDateTime::now_utc(), unwritten)).unwrap();
    }
    let (code, stdout, _) = run(dir.path(), &["history", "--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert_eq!(json[0]["seq"], 3);

    let (code, stdout, _) = run(dir.path(), &["history", "show", "2", "--json"]);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["seq"], 2);
    assert_eq!(shown["prev_sha256"], json[2]["entry_sha256"]);

    let (code, stdout, _) = run(dir.path(), &["history", "--verify"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("Audit log OK: 3 entries"), "{stdout}");
    // It says what it verified: the chain, each signature with the key, the state.
    assert!(
        stdout.contains("  - 3 entries: each hashes to its entry_sha256"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "  - signatures: 3 of 3 entries verified with {}",
            moto.plan_signing_key()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("  - there is no state, and no entry says one was written"),
        "{stdout}"
    );
    // An entry that says it wrote a state, with none there: the state was deleted.
    block_on(backend.append_audit(OffsetDateTime::now_utc(), entry(3))).unwrap();
    let (code, stdout, _) = run(dir.path(), &["history", "--verify"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout
            .contains("there is no state, but audit entry 4 wrote serial 4: the state was deleted"),
        "{stdout}"
    );
    let (code, _, stderr) = run(dir.path(), &["plan", "-o", "plan.json"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("the state was deleted"), "{stderr}");
    assert!(!dir.path().join("plan.json").exists());
    std::fs::remove_file(dir.path().join("state/audit/00000004.json")).unwrap();
    std::fs::write(dir.path().join("state/audit/HEAD"), "3").unwrap();

    // One byte changed in entry 2 on disk, in a field only its hash covers (its sequence
    // number, place and links stay as they were).
    let path = dir.path().join("state/audit/00000002.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen("user/ci", "user/cj", 1);
    assert_eq!(edited.len(), text.len());
    assert_ne!(edited, text);
    std::fs::write(&path, edited).unwrap();
    let (code, stdout, stderr) = run(dir.path(), &["history", "--verify"]);
    assert_eq!(code, 1);
    let problems: Vec<&str> = stdout
        .lines()
        .take_while(|l| l.starts_with("entry "))
        .collect();
    assert!(
        problems.len() == 1
            && problems[0].starts_with("entry 2 (")
            && problems[0].ends_with(
                "00000002.json) was edited: its content does not hash to its entry_sha256"
            ),
        "{stdout}"
    );
    assert!(stderr.contains("first: entry 2 "), "{stderr}");
}

#[test]
fn state_show_redacts_pull_is_exact_and_unlock_is_audited() {
    let moto = moto();
    let bucket = moto.create_bucket("statecli", true);
    let (dir, cluster) = init_cluster_with(
        moto,
        "statecli",
        &["--state-bucket", &bucket, "--state-key", "s/state.json"],
    );
    let backend = Backend::s3(S3Objects::new(block_on(moto.s3()), &bucket), "s/state.json");
    let now = OffsetDateTime::now_utc();

    let mut state =
        kube_aws::state::State::new(&cluster, "cccccccc-0000-4000-8000-000000000000".into());
    state.serial = 1;
    state.tls.insert(
        "admin".into(),
        kube_aws::assets::TlsAsset {
            name: "admin".into(),
            spec_sha256: "s".into(),
            certificate_pem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
            public_key_pem: None,
            certificate_sha256: "c".into(),
            key_ciphertext: "U0VDUkVUQ0lQSEVSVEVYVA==".into(),
            not_after: "2030-01-01T00:00:00Z".into(),
        },
    );
    let lock = block_on(
        backend
            .store
            .locker
            .lock("seed", "seed", now, time::Duration::hours(1)),
    )
    .unwrap();
    block_on(backend.store.persist(&state, None, &lock)).unwrap();
    block_on(backend.store.locker.unlock(&lock)).unwrap();

    let (code, stdout, _) = run(dir.path(), &["state", "show", "--format", "json"]);
    assert_eq!(code, 0);
    assert!(!stdout.contains("U0VDUkVUQ0lQSEVSVEVYVA=="), "{stdout}");
    assert!(stdout.contains("<redacted sha256:"), "{stdout}");
    let (code, text, _) = run(dir.path(), &["state", "show"]);
    assert_eq!(code, 0);
    assert!(!text.contains("U0VDUkVUQ0lQSEVSVEVYVA=="), "{text}");
    assert!(
        text.starts_with(&format!(
            "State of cluster {}: serial {}",
            state.cluster_name, state.serial
        )),
        "{text}"
    );
    let (_, raw, _) = run(dir.path(), &["state", "show", "--raw"]);
    assert!(raw.contains("U0VDUkVUQ0lQSEVSVEVYVA=="));

    let (code, pulled, _) = run(dir.path(), &["state", "pull"]);
    assert_eq!(code, 0);
    assert_eq!(pulled.as_bytes(), kube_aws::state::encode(&state));

    let (code, versions, _) = run(dir.path(), &["state", "versions"]);
    assert_eq!(code, 0);
    assert_eq!(versions.lines().count(), 2, "{versions}");
    assert!(
        versions.lines().nth(1).unwrap().contains(" 1 "),
        "{versions}"
    );

    // A lock left by a dead run: the wrong id is refused, the right one removed and audited.
    let dead = block_on(backend.store.locker.lock(
        "ci-run-41",
        "apply",
        now,
        time::Duration::hours(1),
    ))
    .unwrap();
    let (code, _, stderr) = run(dir.path(), &["state", "unlock", "wrong-id"]);
    assert_eq!(code, 1);
    assert!(stderr.contains(&dead.info.id), "{stderr}");
    // Its lease (an hour) still runs: without --force it is refused, saying whose it is.
    let (code, _, stderr) = run(dir.path(), &["state", "unlock", &dead.info.id]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("held by ci-run-41 for `apply`") && stderr.contains("--force"),
        "{stderr}"
    );
    let (code, _, stderr) = run(dir.path(), &["state", "unlock", &dead.info.id, "--force"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("recorded as audit entry 1"), "{stderr}");
    let entry = block_on(backend.audit.read(1)).unwrap().unwrap();
    assert_eq!(entry.command, "state unlock");
    assert!(entry.message.unwrap().contains("ci-run-41"));
    assert!(
        entry.actor.starts_with("arn:aws:"),
        "the actor is the STS caller: {}",
        entry.actor
    );
}

#[test]
fn an_unknown_state_format_version_is_refused() {
    let moto = moto();
    let (dir, _) = init_cluster_with(moto, "future", &[]);
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(
        dir.path().join("state/state.json"),
        r#"{"format_version": 2, "serial": 9}"#,
    )
    .unwrap();
    let (code, _, stderr) = run(dir.path(), &["state", "show"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("state format_version 2 is not known"),
        "{stderr}"
    );
}

/// What an attacker with write access to the state bucket does to hide the newest
/// deployments: delete their entries and HEAD, or edit the newest entry and recompute its
/// hash. The state names the entry of the run that wrote it, and entries are signed, so
/// `history --verify` exits 1 and says what is missing or edited.
#[test]
fn deleting_or_rewriting_the_newest_entries_fails_verify_with_what_is_missing() {
    use crate::cluster::{Cluster, stderr, stdout};
    let c = Cluster::new("anchor", false, None);
    c.plan_and_apply();
    c.set("workerCount", "2");
    c.plan_and_apply();
    c.proxy.reset();
    let ok = stdout(&c.expect(0, &["history", "--verify"]));
    println!("intact: {}", ok.trim());
    let verifies = c
        .proxy
        .seen()
        .iter()
        .filter(|r| r.operation.ends_with("Verify"))
        .count();
    assert_eq!(
        verifies, 5,
        "one KMS Verify per entry, and the state's writer checked again as the state's anchor"
    );
    let audit = c.path("state/audit");
    let entry_path = |seq: u64| audit.join(format!("{seq:08}.json"));
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(&audit)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    let restore = || {
        for (p, bytes) in &saved {
            std::fs::write(p, bytes).unwrap();
        }
    };

    // The second apply's two entries and HEAD deleted: the chain alone still verifies.
    std::fs::remove_file(entry_path(4)).unwrap();
    std::fs::remove_file(entry_path(3)).unwrap();
    std::fs::remove_file(audit.join("HEAD")).unwrap();
    let out = c.expect(1, &["history", "--verify"]);
    let report = format!("{}{}", stdout(&out), stderr(&out));
    println!("deleted 3, 4 and HEAD:\n{report}");
    assert!(
        report
            .contains("entry 3 is missing: the state (serial 2) was written by the run it records"),
        "{report}"
    );
    assert!(
        report.contains(
            "the newest audit entry that wrote a state (2) wrote serial 1, and the entry it names (3) is not an entry after that"
        ),
        "{report}"
    );
    restore();
    c.expect(0, &["history", "--verify"]);

    // Only the closing entry deleted (HEAD edited back): that looks exactly like an apply
    // killed between its state write and its last entry, and is named as either.
    std::fs::remove_file(entry_path(4)).unwrap();
    std::fs::write(audit.join("HEAD"), "3").unwrap();
    let out = c.expect(1, &["history", "--verify"]);
    let report = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        report.contains(
            "the current state (serial 2) was written by the apply of entry 3, which has no closing entry: the run died before writing it, or the entry was deleted"
        ),
        "{report}"
    );
    restore();

    // The newest entry edited and its hash recomputed: the chain holds, the signature does not.
    let mut newest: kube_aws::audit::AuditEntry =
        serde_json::from_slice(&std::fs::read(entry_path(4)).unwrap()).unwrap();
    newest.actor = "arn:aws:iam::123456789012:user/someone-else".into();
    newest.entry_sha256 = newest.compute_sha256();
    std::fs::write(entry_path(4), kube_aws::audit::encode(&newest)).unwrap();
    let out = c.expect(1, &["history", "--verify"]);
    let report = format!("{}{}", stdout(&out), stderr(&out));
    println!("entry 4 edited and re-hashed:\n{report}");
    assert!(
        report.contains("entry 4 was edited: its signature does not verify with"),
        "{report}"
    );
    // Its signature stripped instead: every entry of a signing cluster must carry one.
    newest.signature = None;
    std::fs::write(entry_path(4), kube_aws::audit::encode(&newest)).unwrap();
    let out = c.expect(1, &["history", "--verify"]);
    let report = format!("{}{}", stdout(&out), stderr(&out));
    assert!(report.contains("entry 4 is not signed"), "{report}");
    restore();
    c.expect(0, &["history", "--verify"]);

    // The state edited in place, serial and anchor kept: a record that is not the cluster's
    // added, which the next destroy would delete.
    let state_path = c.path("state/state.json");
    let original = std::fs::read(&state_path).unwrap();
    let mut state: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let mut planted = state["records"][0].clone();
    planted["name"] = "www.example.com.".into();
    state["records"].as_array_mut().unwrap().push(planted);
    std::fs::write(&state_path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let out = c.expect(1, &["history", "--verify"]);
    let report = format!("{}{}", stdout(&out), stderr(&out));
    println!("state edited in place:\n{report}");
    assert!(
        report.contains("the current state: it hashes to")
            && report.contains("but audit entry 4 wrote serial 2 hashing to")
            && report.contains("it was edited"),
        "{report}"
    );
    // Plan refuses to go on from it (before this was checked, it planned the planted
    // record's deletion as the cluster's own).
    let out = c.expect(1, &["plan", "-o", "edited.json"]);
    assert!(stderr(&out).contains("is not the one the audit log says was written last"));
    assert!(!c.path("edited.json").exists());
    std::fs::write(&state_path, original).unwrap();
    c.expect(0, &["history", "--verify"]);
}

/// Each entry says where the run came from (the cluster directory's commit, whether it was
/// dirty, the CI run and the pull request), and `history show` prints the plan it applied,
/// kept in the state backend as it was reviewed.
#[test]
fn entries_record_commit_ci_run_and_pull_request_and_show_prints_the_kept_plan() {
    use crate::cluster::{Cluster, stdout};
    let c = Cluster::new("provenance", false, None);
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(c.dir.path())
            .args(["-c", "user.name=ci", "-c", "user.email=ci@example.com"])
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["add", "cluster.yaml"]);
    git(&["commit", "-q", "-m", "cluster"]);
    let commit = git(&["rev-parse", "HEAD"]);
    let ci = [
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_REPOSITORY", "acme/clusters"),
        ("GITHUB_RUN_ID", "4242"),
    ];
    // The plan is made in the pull request's check, the apply after the merge.
    let mut plan = kube_aws(moto(), c.dir.path());
    plan.env("AWS_ENDPOINT_URL", &c.proxy.endpoint)
        .envs(ci)
        .env("GITHUB_REF", "refs/pull/17/merge")
        .args(["plan", "-o", "plan.json"]);
    assert!(plan.output().unwrap().status.success());
    let mut apply = kube_aws(moto(), c.dir.path());
    apply
        .env("AWS_ENDPOINT_URL", &c.proxy.endpoint)
        .envs(ci)
        .env("GITHUB_REF", "refs/heads/main")
        .args(["apply", "plan.json"]);
    assert!(apply.output().unwrap().status.success());

    let shown = stdout(&c.expect(0, &["history", "show", "2"]));
    println!("{shown}");
    assert!(
        shown.contains(&format!("git commit    {commit}\n")),
        "clean tree: {shown}"
    );
    assert!(
        shown.contains("CI run        https://github.com/acme/clusters/actions/runs/4242"),
        "{shown}"
    );
    assert!(
        shown.contains("pull request  https://github.com/acme/clusters/pull/17"),
        "{shown}"
    );
    assert!(
        shown.contains("The plan it applied, as reviewed:"),
        "{shown}"
    );
    assert!(shown.contains("Plan: "), "the kept plan's summary: {shown}");
    assert!(
        !shown.contains("BEGIN") && !shown.contains("PRIVATE"),
        "{shown}"
    );
    let entry: serde_json::Value =
        serde_json::from_str(&stdout(&c.expect(0, &["history", "show", "2", "--json"]))).unwrap();
    assert_eq!(entry["provenance"]["git_dirty"], false);
    assert!(
        c.path(&format!(
            "state/plans/{}.json",
            entry["plan_sha256"].as_str().unwrap()
        ))
        .exists()
    );

    // An uncommitted change to cluster.yaml is recorded as such.
    c.set("workerCount", "2");
    c.plan_and_apply();
    let shown = stdout(&c.expect(0, &["history", "show", "4"]));
    assert!(
        shown.contains(&format!(
            "git commit    {commit} (with uncommitted changes)"
        )),
        "{shown}"
    );
    c.expect(0, &["history", "--verify"]);
}

/// A lock written by someone with access to the state (holder and operation are free text)
/// cannot drive the terminal of whoever runs `status` or meets the lock: control characters
/// are shown escaped.
#[test]
fn terminal_control_characters_from_a_lock_are_shown_escaped() {
    let moto = moto();
    let (dir, _) = init_cluster_with(moto, "escapes", &[]);
    let backend = Backend::local(dir.path());
    let hostile = "ci\x1b]0;pwned\x07\x1b[2J\rrun";
    block_on(backend.store.locker.lock(
        hostile,
        "apply\x1b[31m",
        OffsetDateTime::now_utc(),
        time::Duration::hours(1),
    ))
    .unwrap();
    let (code, stdout, stderr) = run(dir.path(), &["status"]);
    let (unlock_code, _, unlock_stderr) = run(dir.path(), &["state", "unlock", "wrong-id"]);
    assert_eq!(unlock_code, 1);
    for (what, text) in [
        ("status", format!("{stdout}{stderr}")),
        ("unlock", unlock_stderr),
    ] {
        assert!(
            !text.contains('\x1b') && !text.contains('\x07') && !text.contains('\r'),
            "{what} printed a control character raw: {text:?}"
        );
        assert!(
            text.contains("ci\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\rrun"),
            "{what}: {text}"
        );
    }
    let _ = code;
}

/// Issue 25, item 2: an older version of the state restored in the bucket is refused by plan
/// and apply (before this, the next plan said `No changes.` while the stack ran the newer
/// template, and apply wrote the old certificates as the next serial) and named by `history
/// --verify`; going back on purpose is `state push --rollback`, written as the next serial
/// with an audit entry, after which the plan shows what the stack differs from it.
#[test]
fn a_restored_older_state_is_refused_until_a_rollback_is_pushed_and_audited() {
    use crate::cluster::{Cluster, stderr, stdout};
    let c = Cluster::new("rollback", true, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.plan_and_apply();
    c.set("workerCount", "2");
    c.plan_and_apply();
    let versions = stdout(&c.expect(0, &["state", "versions"]));
    let first = versions
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("1"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no version of serial 1:\n{versions}"))
        .to_string();
    let old = c.expect(0, &["state", "pull", "--version", &first]).stdout;
    let old_state: serde_json::Value = serde_json::from_slice(&old).unwrap();
    assert_eq!(old_state["serial"], 1);

    // Someone with write access to the bucket restores serial 1 as the current object.
    let bucket = c.bucket.clone().unwrap();
    let objects = S3Objects::new(block_on(moto().s3()), &bucket);
    let key = format!("{}/state.json", c.name);
    block_on(objects.put(&key, &old, Precondition::Overwrite)).unwrap();

    let out = c.expect(1, &["plan", "-o", "after-restore.json"]);
    let refusal = stderr(&out);
    println!("plan after the restore: {refusal}");
    assert!(
        refusal.contains(
            "is not the one the audit log says was written last: it is serial 1, but audit entry"
        ) && refusal.contains("wrote serial 2: an older version was restored"),
        "{refusal}"
    );
    assert!(!c.path("after-restore.json").exists());
    let out = c.expect(1, &["history", "--verify"]);
    assert!(
        stdout(&out).contains("an older version was restored"),
        "{}",
        stdout(&out)
    );

    // Pushing it back without saying it is a rollback is refused; with --rollback it is
    // written as serial 3 and recorded.
    std::fs::write(c.path("old.json"), &old).unwrap();
    let out = c.expect(1, &["state", "push", "old.json"]);
    assert!(
        stderr(&out).contains("push it with --rollback"),
        "{}",
        stderr(&out)
    );
    c.expect(0, &["state", "push", "old.json", "--rollback"]);
    let last: serde_json::Value =
        serde_json::from_slice(&c.expect(0, &["history", "--json", "--limit", "1"]).stdout)
            .unwrap();
    assert_eq!(last[0]["command"], "state push");
    assert_eq!(last[0]["state_serial_after"], 3);
    assert!(
        last[0]["message"]
            .as_str()
            .unwrap()
            .contains("rolled back to old.json: the state of serial 1, written as serial 3"),
        "{last}"
    );
    let verified = stdout(&c.expect(0, &["history", "--verify"]));
    assert!(
        verified.contains("the state (serial 3, sha256"),
        "{verified}"
    );
    // The state now says one worker while the stack runs two: the plan shows that change.
    c.expect(2, &["plan", "--detailed-exitcode", "-o", "plan.json"]);
    c.expect(0, &["apply", "plan.json"]);
    c.expect(0, &["plan", "--detailed-exitcode"]);
    c.expect(0, &["history", "--verify"]);
}

/// The anchor trusts an entry only as the log wrote it: a writer entry edited to vouch for an
/// edited state (its hash and signature left as they were), or an old signed writer entry
/// copied forward to vouch for an older state restored, is refused by plan.
#[test]
fn an_edited_or_replayed_writer_entry_vouches_for_no_state() {
    use crate::cluster::{Cluster, stderr};
    let c = Cluster::new("replay", false, None);
    c.plan_and_apply();
    let state_path = c.path("state/state.json");
    let serial_1 = std::fs::read(&state_path).unwrap();
    c.set("workerCount", "2");
    c.plan_and_apply();
    let serial_2 = std::fs::read(&state_path).unwrap();
    let audit = c.path("state/audit");
    let entry_path = |seq: u64| audit.join(format!("{seq:08}.json"));
    let writer = std::fs::read(entry_path(4)).unwrap();

    // The state edited in place, and the entry that wrote it told so, hash and signature kept.
    let mut state: serde_json::Value = serde_json::from_slice(&serial_2).unwrap();
    state["records"] = serde_json::json!([]);
    let edited = serde_json::to_vec_pretty(&state).unwrap();
    let mut entry: kube_aws::audit::AuditEntry = serde_json::from_slice(&writer).unwrap();
    entry.state_sha256_after = Some(kube_aws::hash::sha256_hex(&edited));
    std::fs::write(entry_path(4), kube_aws::audit::encode(&entry)).unwrap();
    std::fs::write(&state_path, &edited).unwrap();
    let refusal = stderr(&c.expect(1, &["plan"]));
    assert!(
        refusal.contains("audit entry 4 was edited: its content does not hash to its entry_sha256"),
        "{refusal}"
    );
    std::fs::write(entry_path(4), &writer).unwrap();

    // Serial 1 restored, and the signed entry that wrote it copied to the next number.
    std::fs::write(&state_path, &serial_1).unwrap();
    std::fs::copy(entry_path(2), entry_path(5)).unwrap();
    std::fs::write(audit.join("HEAD"), "5").unwrap();
    let refusal = stderr(&c.expect(1, &["plan"]));
    assert!(
        refusal.contains("audit entry 5 holds entry 2 (an old entry copied forward?)"),
        "{refusal}"
    );
    std::fs::remove_file(entry_path(5)).unwrap();
    std::fs::write(audit.join("HEAD"), "4").unwrap();
    std::fs::write(&state_path, &serial_2).unwrap();
    c.expect(0, &["plan", "--detailed-exitcode"]);
}
