//! Plan signing is state (issue 25, item 3): a pull request that switches signing off or over
//! to a key of its own shows that change in every output and exit code, and apply takes it
//! only from a plan signed with the key the state records.

use base64::Engine;
use kube_aws::planfile::{self, Plan, PlanSignature};

use crate::cluster::{Cluster, stderr, stdout};
use crate::harness::{block_on, moto};

fn sign_with(plan: &Plan, key: &str) -> Plan {
    let signature = block_on(async {
        kube_aws::aws::kms::KmsVault::new(aws_sdk_kms::Client::new(&moto().sdk_config().await))
            .sign_digest(key, &plan.digest().unwrap())
            .await
            .unwrap()
    });
    let mut signed = plan.clone();
    signed.signature = Some(PlanSignature {
        key_arn: key.to_string(),
        algorithm: "ECDSA_SHA_256".into(),
        value: base64::engine::general_purpose::STANDARD.encode(signature),
    });
    signed
}

/// The reviewed plan with the cluster's CA swapped for the next one it issues (what an
/// attacker would slip in after review), re-hashed.
fn forged(c: &Cluster, plan: &Plan) -> Plan {
    let mut forged = plan.clone();
    forged.notes.push("nothing to see here".into());
    forged.signature = None;
    let forged = forged.seal();
    std::fs::write(c.path("forged.json"), planfile::encode(&forged)).unwrap();
    forged
}

#[test]
fn switching_signing_off_or_to_another_key_is_a_change_only_the_recorded_key_can_sign() {
    let c = Cluster::new("signswitch", false, None);
    let recorded = moto().plan_signing_key().to_string();
    c.plan_and_apply();
    let state: serde_json::Value =
        serde_json::from_slice(&c.expect(0, &["state", "pull"]).stdout).unwrap();
    assert_eq!(state["plan_signing"]["key"], recorded.as_str());
    crate::schemas::assert_valid("state.schema.json", &state);

    // A pull request names its own key: the plan says so (it said `No changes.` before)
    // and is signed with the recorded key, not the new one.
    let theirs = moto().create_signing_key();
    c.set("planSigningKeyArn", &theirs);
    let out = c.expect(2, &["plan", "--detailed-exitcode", "-o", "switch.json"]);
    let text = stdout(&out);
    println!("{text}");
    assert!(
        text.contains(&format!(
            "Plan signing changes: signed with {recorded} → signed with {theirs}. Apply takes this plan only signed with {recorded}"
        )),
        "{text}"
    );
    assert!(!text.contains("No changes."), "{text}");
    let markdown = stdout(&c.expect(0, &["plan", "--format", "markdown"]));
    assert!(
        markdown.contains("> [!CAUTION]\n> Plan signing changes: signed with"),
        "{markdown}"
    );
    let plan = c.decoded_plan("switch.json");
    crate::schemas::assert_valid("plan.schema.json", &serde_json::to_value(&plan).unwrap());
    let signing = plan.signing.as_ref().expect("the plan records the change");
    assert_eq!(
        signing.from.as_ref().and_then(|s| s.key()),
        Some(recorded.as_str())
    );
    assert_eq!(signing.to.key(), Some(theirs.as_str()));
    assert_eq!(plan.signature.as_ref().unwrap().key_arn, recorded);

    // After the merge, a plan edited and signed with the new key, or not at all, is refused.
    let edited = forged(&c, &plan);
    std::fs::write(
        c.path("theirs.json"),
        planfile::encode(&sign_with(&edited, &theirs)),
    )
    .unwrap();
    for file in ["theirs.json", "forged.json"] {
        let out = c.expect(1, &["apply", file]);
        assert!(
            stderr(&out).contains(&format!(
                "so apply takes this plan only signed with the key the state records, {recorded}"
            )),
            "{file}: {}",
            stderr(&out)
        );
    }
    // The reviewed plan applies; from then on the new key signs and the state records it.
    c.expect(0, &["apply", "switch.json"]);
    let state: serde_json::Value =
        serde_json::from_slice(&c.expect(0, &["state", "pull"]).stdout).unwrap();
    assert_eq!(state["plan_signing"]["key"], theirs.as_str());
    let out = c.expect(0, &["plan", "--detailed-exitcode", "-o", "after.json"]);
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
    assert_eq!(
        c.decoded_plan("after.json").signature.unwrap().key_arn,
        theirs
    );
    // The log verifies across the rotation: the newest entries with the new key, the older
    // ones with the key the reviewed plan rotated from; an entry signed with the new key
    // before the rotation would not.
    let verified = stdout(&c.expect(0, &["history", "--verify"]));
    assert!(
        verified.contains(&format!(
            "signatures: 4 of 4 entries verified with {theirs}, and before the reviewed rotation to it, {recorded}"
        )),
        "{verified}"
    );

    // Switched off: the plan says so, the recorded key (now `theirs`) must sign it, and an
    // unsigned copy is refused.
    c.set("planSigningKeyArn", "null");
    c.set("unsignedPlans", "true");
    let out = c.expect(2, &["plan", "--detailed-exitcode", "-o", "off.json"]);
    assert!(
        stdout(&out).contains(&format!(
            "Plan signing changes: signed with {theirs} → unsigned"
        )),
        "{}",
        stdout(&out)
    );
    let off = c.decoded_plan("off.json");
    assert_eq!(off.signature.as_ref().unwrap().key_arn, theirs);
    forged(&c, &off);
    let out = c.expect(1, &["apply", "forged.json"]);
    assert!(stderr(&out).contains("only signed with the key the state records"));
    c.expect(0, &["apply", "off.json"]);
    let state: serde_json::Value =
        serde_json::from_slice(&c.expect(0, &["state", "pull"]).stdout).unwrap();
    assert_eq!(state["plan_signing"], "unsigned");
    c.expect(0, &["plan", "--detailed-exitcode"]);
    let verified = stdout(&c.expect(0, &["history", "--verify"]));
    assert!(
        verified.contains("signatures: not checked (cluster.yaml names no planSigningKeyArn)"),
        "{verified}"
    );

    // Switched on again: the unsigned entries since the reviewed switch-off are taken (its
    // plan was signed with the key it switched from), and the plan says what changes.
    c.set("planSigningKeyArn", &recorded);
    c.set("unsignedPlans", "false");
    let out = c.expect(2, &["plan", "--detailed-exitcode", "-o", "on.json"]);
    assert!(
        stdout(&out).contains(&format!(
            "Plan signing changes: unsigned → signed with {recorded}"
        )),
        "{}",
        stdout(&out)
    );
    c.expect(0, &["apply", "on.json"]);
    c.expect(0, &["plan", "--detailed-exitcode"]);
}

/// A state that records no signing key, vouched for by an unsigned entry appended after
/// signed ones (what someone with the bucket but not the key can write), is refused: only a
/// reviewed plan signed with the key switches signing off.
#[test]
fn an_unsigned_writer_after_signed_entries_vouches_for_nothing() {
    let c = Cluster::new("forgeoff", false, None);
    c.plan_and_apply();
    let state_path = c.path("state/state.json");
    let original = std::fs::read(&state_path).unwrap();
    let mut state: serde_json::Value = serde_json::from_slice(&original).unwrap();
    state["plan_signing"] = "unsigned".into();
    state["serial"] = 2.into();
    let forged_state = serde_json::to_vec_pretty(&state).unwrap();
    let entry_path = |seq: u64| c.path(&format!("state/audit/{seq:08}.json"));
    let last: kube_aws::audit::AuditEntry =
        serde_json::from_slice(&std::fs::read(entry_path(2)).unwrap()).unwrap();
    let mut forged = kube_aws::audit::AuditEntry {
        seq: 3,
        prev_sha256: last.entry_sha256.clone(),
        state_serial_before: Some(1),
        state_serial_after: Some(2),
        state_sha256_after: Some(kube_aws::hash::sha256_hex(&forged_state)),
        signature: None,
        ..last.clone()
    };
    forged.entry_sha256 = forged.compute_sha256();
    std::fs::write(entry_path(3), kube_aws::audit::encode(&forged)).unwrap();
    std::fs::write(c.path("state/audit/HEAD"), "3").unwrap();
    std::fs::write(&state_path, &forged_state).unwrap();
    let refusal = stderr(&c.expect(1, &["plan"]));
    assert!(
        refusal.contains("audit entry 3 wrote it unsigned, but entry 2 before it is signed with"),
        "{refusal}"
    );
    std::fs::remove_file(entry_path(3)).unwrap();
    std::fs::write(c.path("state/audit/HEAD"), "2").unwrap();
    std::fs::write(&state_path, &original).unwrap();
    c.expect(0, &["plan", "--detailed-exitcode"]);
}

/// Issue 31: a signature says who made a plan, not that it is what the merged directory asks
/// for. A signed plan made before cluster.yaml moved on (another change merged after it) is
/// refused by apply, which renders the directory itself, before anything changes; in the
/// directory it was made from, it applies.
#[test]
fn a_signed_plan_applies_only_where_the_directory_renders_it() {
    let c = Cluster::new("bindcommit", false, None);
    c.plan_and_apply();
    c.set("workerCount", "2");
    c.expect(0, &["plan", "-o", "two.json"]);
    assert!(c.decoded_plan("two.json").signature.is_some());
    c.set("workerCount", "3");
    c.proxy.reset();
    let out = c.expect(1, &["apply", "two.json"]);
    let refusal = stderr(&out);
    println!("{refusal}");
    assert!(
        refusal.contains("cluster.yaml and the cluster directory render")
            && refusal.contains("make a new plan here")
            && refusal.contains("nothing was executed"),
        "{refusal}"
    );
    let writes = c.proxy.cluster_writes();
    assert!(writes.is_empty(), "{writes:?}");
    c.set("workerCount", "2");
    c.expect(0, &["apply", "two.json"]);
    c.expect(0, &["plan", "--detailed-exitcode"]);
}
