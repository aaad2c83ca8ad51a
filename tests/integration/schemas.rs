//! The JSON Schemas in `state/` against the fixtures and against what the program writes.

use std::path::{Path, PathBuf};

use serde_json::Value;
use time::OffsetDateTime;

use kube_aws::audit::{AuditEntry, AuditResult, NewEntry};
use kube_aws::engine::backend::Backend;
use kube_aws::state::State;

use crate::harness::block_on;
use kube_aws::state::lock::Locker;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A validator for one of `state/*.schema.json`, with the others registered by `$id` so
/// cross-schema references (the plan's `new_state`) resolve offline.
fn validator(schema: &str) -> jsonschema::Validator {
    let mut registry = jsonschema::Registry::new();
    for name in ["state", "plan", "audit-entry", "lock"] {
        let doc = json(&repo(&format!("state/{name}.schema.json")));
        let id = doc["$id"].as_str().unwrap().to_string();
        registry = registry.add(id, doc).unwrap();
    }
    let registry = registry.prepare().unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .with_registry(&registry)
        .build(&json(&repo(&format!("state/{schema}"))))
        .unwrap()
}

pub fn assert_valid(schema: &str, doc: &Value) {
    let v = validator(schema);
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{schema}: {errors:#?}");
}

#[test]
fn fixtures_validate_and_decode() {
    let state = json(&repo("state/fixtures/state-v1.json"));
    assert_valid("state.schema.json", &state);
    let bytes = std::fs::read(repo("state/fixtures/state-v1.json")).unwrap();
    let decoded = kube_aws::state::decode("fixture", &bytes).unwrap();
    assert_eq!(
        kube_aws::state::encode(&decoded),
        bytes,
        "the fixture is canonical"
    );

    let entry_value = json(&repo("state/fixtures/audit-entry-v1.json"));
    assert_valid("audit-entry.schema.json", &entry_value);
    let entry: AuditEntry = serde_json::from_value(entry_value).unwrap();
    assert_eq!(
        entry.compute_sha256(),
        entry.entry_sha256,
        "the fixture's hash is right"
    );

    assert_valid(
        "lock.schema.json",
        &json(&repo("state/fixtures/lock-v1.json")),
    );

    // A plan as `plan -o` wrote it for a change to an applied cluster (moto): a template,
    // certificates issued and kept, records upserted and deleted, resource changes, signed.
    assert_valid(
        "plan.schema.json",
        &json(&repo("state/fixtures/plan-v1.json")),
    );
    let bytes = std::fs::read(repo("state/fixtures/plan-v1.json")).unwrap();
    let plan = kube_aws::planfile::decode("plan-v1.json", &bytes).unwrap();
    assert_eq!(
        kube_aws::planfile::encode(&plan),
        bytes,
        "the fixture is canonical"
    );
    assert!(plan.template.is_some() && plan.signature.is_some());
    assert!(!plan.records.is_empty() && !plan.stack.resource_changes.is_empty());
}

#[test]
fn the_schemas_reject_what_they_should() {
    let mut state = json(&repo("state/fixtures/state-v1.json"));
    state.as_object_mut().unwrap().remove("lineage");
    assert!(!validator("state.schema.json").is_valid(&state));

    let mut state = json(&repo("state/fixtures/state-v1.json"));
    state["tls"]["ca"]["certificate_pem"] = Value::String(format!(
        "-----BEGIN CERTIFICATE-----\n-----BEGIN {}-----",
        "PRIVATE KEY"
    ));
    assert!(
        !validator("state.schema.json").is_valid(&state),
        "a private key is refused"
    );

    let mut entry = json(&repo("state/fixtures/audit-entry-v1.json"));
    entry["result"] = Value::String("maybe".into());
    assert!(!validator("audit-entry.schema.json").is_valid(&entry));
}

#[test]
fn what_the_program_writes_validates() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::local(dir.path());
    let now = OffsetDateTime::now_utc();
    block_on(async {
        let lock = backend
            .store
            .locker
            .lock("me@host", "apply", now, time::Duration::hours(1))
            .await
            .unwrap();
        let lock_doc = json(&dir.path().join("state/state.lock"));
        assert_valid("lock.schema.json", &lock_doc);

        let mut state = State::new("demo", uuid_like());
        state.serial = 1;
        backend.store.persist(&state, None, &lock).await.unwrap();
        backend.store.locker.unlock(&lock).await.unwrap();
        backend
            .audit
            .append(
                now,
                NewEntry {
                    actor: "me@host".into(),
                    command: "apply".into(),
                    result: Some(AuditResult::Started),
                    ..NewEntry::default()
                },
            )
            .await
            .unwrap();
    });
    assert_valid(
        "state.schema.json",
        &json(&dir.path().join("state/state.json")),
    );
    assert_valid(
        "audit-entry.schema.json",
        &json(&dir.path().join("state/audit/00000001.json")),
    );
}

fn uuid_like() -> String {
    "0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a".into()
}
