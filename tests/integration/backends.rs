//! One suite, two backends: every behaviour of the state store, lock and audit log is checked
//! on local files and on S3 (over HTTP to moto).

use time::{Duration, OffsetDateTime};

use kube_aws::audit::{AuditResult, NewEntry};
use kube_aws::aws::s3::S3Objects;
use kube_aws::engine::backend::Backend;
use kube_aws::state::objects::{ObjectStore, Precondition};
use kube_aws::state::store::Loaded;
use kube_aws::state::{State, StateError};

use crate::harness::{block_on, moto};
use kube_aws::state::lock::Locker;

/// A fresh backend and whatever must outlive it (the temp dir of the local one).
pub struct Fixture {
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

pub fn local() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    Fixture {
        backend: Backend::local(dir.path()),
        _dir: Some(dir),
    }
}

pub fn s3() -> Fixture {
    let moto = moto();
    let bucket = moto.create_bucket("suite", true);
    let client = block_on(moto.s3());
    Fixture {
        backend: Backend::s3(S3Objects::new(client, &bucket), "clusters/demo/state.json"),
        _dir: None,
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn lease() -> Duration {
    Duration::hours(1)
}

/// Writes serial `prior.serial + 1` under a fresh lock.
async fn bump(backend: &Backend, prior: Option<&Loaded>) -> Result<Loaded, StateError> {
    let lock = backend
        .store
        .locker
        .lock("test", "bump", now(), lease())
        .await?;
    let mut next = prior
        .map(|p| p.state.clone())
        .unwrap_or_else(|| State::new("demo", "aaaaaaaa-0000-4000-8000-000000000000".into()));
    next.serial += 1;
    let result = backend.store.persist(&next, prior, &lock).await;
    backend.store.locker.unlock(&lock).await?;
    result
}

fn entry(command: &str) -> NewEntry {
    NewEntry {
        actor: "tester@host".into(),
        command: command.into(),
        result: Some(AuditResult::Succeeded),
        ..NewEntry::default()
    }
}

async fn lock_contention(backend: Backend) {
    let first = backend
        .store
        .locker
        .lock("alice", "apply", now(), lease())
        .await
        .unwrap();
    let err = backend
        .store
        .locker
        .lock("bob", "apply", now(), lease())
        .await
        .unwrap_err();
    match &err {
        StateError::Locked { info, expired } => {
            assert_eq!(info.holder, "alice");
            assert_eq!(info.id, first.info.id);
            assert!(!expired);
        }
        other => panic!("expected Locked, got {other}"),
    }
    assert!(
        err.to_string().contains("locked by alice for `apply`"),
        "{err}"
    );
    // A live lease: the way out names --force, since the run may still be working.
    assert!(
        err.to_string()
            .contains(&format!("kube-aws state unlock {} --force", first.info.id)),
        "{err}"
    );
    backend.store.locker.unlock(&first).await.unwrap();
    let second = backend
        .store
        .locker
        .lock("bob", "apply", now(), lease())
        .await
        .unwrap();
    // The first holder can no longer release what is now bob's lock.
    assert!(matches!(
        backend.store.locker.unlock(&first).await,
        Err(StateError::LockLost { .. })
    ));
    backend.store.locker.unlock(&second).await.unwrap();
}

async fn expired_lock_is_reported_and_only_its_id_unlocks_it(backend: Backend) {
    let old = backend
        .store
        .locker
        .lock("crashed-run", "apply", now() - Duration::hours(3), lease())
        .await
        .unwrap();
    let err = backend
        .store
        .locker
        .lock("me", "apply", now(), lease())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StateError::Locked { expired: true, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("crashed-run"), "{message}");
    assert!(
        message.contains(&format!("kube-aws state unlock {}", old.info.id)),
        "{message}"
    );

    let wrong = backend
        .store
        .locker
        .force_unlock("not-the-id", now(), false)
        .await
        .unwrap_err();
    assert!(
        matches!(wrong, StateError::LockIdMismatch { .. }),
        "{wrong}"
    );
    // Its lease ran out: no --force needed.
    let removed = backend
        .store
        .locker
        .force_unlock(&old.info.id, now(), false)
        .await
        .unwrap();
    assert_eq!(removed.holder, "crashed-run");
    assert!(backend.store.locker.current().await.unwrap().is_none());
    assert!(matches!(
        backend
            .store
            .locker
            .force_unlock(&old.info.id, now(), true)
            .await,
        Err(StateError::NotLocked)
    ));

    // A live lease is a run that may still be working: removing it takes --force.
    let live = backend
        .store
        .locker
        .lock("ci-run-7", "apply", now(), lease())
        .await
        .unwrap();
    let refused = backend
        .store
        .locker
        .force_unlock(&live.info.id, now(), false)
        .await
        .unwrap_err();
    let message = refused.to_string();
    assert!(matches!(refused, StateError::LockLive { .. }), "{message}");
    assert!(
        message.contains("held by ci-run-7 for `apply`")
            && message.contains(&format!("kube-aws state unlock {} --force", live.info.id)),
        "{message}"
    );
    assert!(backend.store.locker.current().await.unwrap().is_some());
    backend
        .store
        .locker
        .force_unlock(&live.info.id, now(), true)
        .await
        .unwrap();
    assert!(backend.store.locker.current().await.unwrap().is_none());
}

async fn serials_advance_by_one_and_stale_serials_are_refused(backend: Backend) {
    assert!(backend.store.load().await.unwrap().is_none());
    let one = bump(&backend, None).await.unwrap();
    assert_eq!(one.state.serial, 1);
    let loaded = backend.store.load().await.unwrap().unwrap();
    assert_eq!(loaded, one);

    let lock = backend
        .store
        .locker
        .lock("t", "stale", now(), lease())
        .await
        .unwrap();
    let mut skipped = one.state.clone();
    skipped.serial = 3;
    let err = backend
        .store
        .persist(&skipped, Some(&one), &lock)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Stale { .. }), "{err}");
    backend.store.locker.unlock(&lock).await.unwrap();
    assert_eq!(backend.store.load().await.unwrap().unwrap().state.serial, 1);
}

async fn lineage_mismatch_is_refused(backend: Backend) {
    let one = bump(&backend, None).await.unwrap();
    let lock = backend
        .store
        .locker
        .lock("t", "lineage", now(), lease())
        .await
        .unwrap();
    let mut other = one.state.clone();
    other.serial = 2;
    other.lineage = "bbbbbbbb-0000-4000-8000-000000000000".into();
    let err = backend
        .store
        .persist(&other, Some(&one), &lock)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("lineage"), "{err}");
    backend.store.locker.unlock(&lock).await.unwrap();
}

async fn a_lost_update_is_impossible(backend: Backend) {
    let one = bump(&backend, None).await.unwrap();
    // Two writers read serial 1; the first writes serial 2; the second must fail.
    let two = bump(&backend, Some(&one)).await.unwrap();
    assert_eq!(two.state.serial, 2);
    let err = bump(&backend, Some(&one)).await.unwrap_err();
    assert!(
        err.to_string().contains("changed since it was read"),
        "{err}"
    );
    assert_eq!(backend.store.load().await.unwrap().unwrap(), two);
    // And a first write cannot clobber a state that appeared meanwhile.
    let err = bump(&backend, None).await.unwrap_err();
    assert!(matches!(err, StateError::Stale { .. }), "{err}");
}

async fn persist_needs_the_lock_still_held(backend: Backend) {
    let one = bump(&backend, None).await.unwrap();
    let lock = backend
        .store
        .locker
        .lock("slow", "apply", now(), lease())
        .await
        .unwrap();
    backend
        .store
        .locker
        .force_unlock(&lock.info.id, now(), true)
        .await
        .unwrap();
    let mut next = one.state.clone();
    next.serial = 2;
    let err = backend
        .store
        .persist(&next, Some(&one), &lock)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::LockLost { .. }), "{err}");
    assert_eq!(backend.store.load().await.unwrap().unwrap().state.serial, 1);
}

async fn a_renewed_lease_moves_on_and_a_removed_lock_cannot_be_renewed(backend: Backend) {
    let lock = backend
        .store
        .locker
        .lock("slow", "apply", now(), lease())
        .await
        .unwrap();
    let later = now() + Duration::minutes(20);
    let renewed = backend
        .store
        .locker
        .renew(&lock, later, lease())
        .await
        .unwrap();
    assert_eq!(renewed.info.id, lock.info.id);
    assert!(renewed.info.lease_expires > lock.info.lease_expires);
    let stored = backend.store.locker.current().await.unwrap().unwrap();
    assert_eq!(stored.lease_expires, renewed.info.lease_expires);
    // The old handle is stale; the renewed one still holds the lock.
    assert!(!backend.store.locker.still_holds(&lock).await.unwrap());
    assert!(backend.store.locker.still_holds(&renewed).await.unwrap());
    backend
        .store
        .locker
        .force_unlock(&lock.info.id, now(), true)
        .await
        .unwrap();
    let err = backend
        .store
        .locker
        .renew(&renewed, later, lease())
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::LockLost { .. }), "{err}");
    // Renewing never re-creates a removed lock.
    assert!(backend.store.locker.current().await.unwrap().is_none());
}

async fn versions_are_listed_newest_first_with_serials(backend: Backend) {
    let mut prior = None;
    for _ in 0..3 {
        prior = Some(bump(&backend, prior.as_ref()).await.unwrap());
        // S3 orders versions by LastModified (whole seconds in listings).
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let versions = backend.store.versions().await.unwrap();
    let serials: Vec<_> = versions.iter().map(|v| v.serial).collect();
    assert_eq!(serials, vec![Some(3), Some(2), Some(1)]);
    assert!(versions[0].version.is_latest);
    assert!(!versions[1].version.is_latest);
}

async fn concurrent_appends_each_get_their_own_sequence_number(backend: Backend) {
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let audit = backend.audit.clone();
            std::thread::spawn(move || {
                block_on(audit.append(now(), entry(&format!("writer {i}")))).unwrap()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap().seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    let report = backend.audit.verify().await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 10);
    let newest = backend.audit.newest(3).await.unwrap();
    assert_eq!(
        newest.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![10, 9, 8]
    );
}

async fn raw(backend: &Backend, seq: u64) -> (String, Vec<u8>, String) {
    let objects = backend.store.objects();
    let key = backend.audit.entry_key(seq);
    let object = objects.get(&key).await.unwrap().unwrap();
    (key, object.bytes, object.etag)
}

async fn verify_names_edited_missing_and_reordered_entries(backend: Backend) {
    for i in 0..5 {
        backend
            .audit
            .append(now(), entry(&format!("apply {i}")))
            .await
            .unwrap();
    }
    let objects = backend.store.objects();
    assert!(backend.audit.verify().await.unwrap().ok());

    // One byte edited in entry 3.
    let (key3, original3, _) = raw(&backend, 3).await;
    let mut edited = original3.clone();
    let at = edited.windows(7).position(|w| w == b"apply 2").unwrap() + 6;
    edited[at] = b'9';
    objects
        .put(&key3, &edited, Precondition::Overwrite)
        .await
        .unwrap();
    let report = backend.audit.verify().await.unwrap();
    assert!(
        report.problems[0].starts_with("entry 3 "),
        "{:?}",
        report.problems
    );
    assert!(
        report.problems[0].contains("was edited"),
        "{:?}",
        report.problems
    );
    objects
        .put(&key3, &original3, Precondition::Overwrite)
        .await
        .unwrap();
    assert!(backend.audit.verify().await.unwrap().ok());

    // Entries 3 and 4 swapped.
    let (key4, original4, _) = raw(&backend, 4).await;
    objects
        .put(&key3, &original4, Precondition::Overwrite)
        .await
        .unwrap();
    objects
        .put(&key4, &original3, Precondition::Overwrite)
        .await
        .unwrap();
    let report = backend.audit.verify().await.unwrap();
    assert!(
        report.problems[0].starts_with("entry 3 "),
        "{:?}",
        report.problems
    );
    assert!(
        report.problems[0].contains("reordered"),
        "{:?}",
        report.problems
    );
    objects
        .put(&key3, &original3, Precondition::Overwrite)
        .await
        .unwrap();
    objects
        .put(&key4, &original4, Precondition::Overwrite)
        .await
        .unwrap();

    // Entry 2 deleted, then the last entry deleted.
    let (key2, _, etag2) = raw(&backend, 2).await;
    objects.delete(&key2, &etag2).await.unwrap();
    let report = backend.audit.verify().await.unwrap();
    assert_eq!(
        report.problems[0], "entry 2 is missing",
        "{:?}",
        report.problems
    );
    let (key5, _, etag5) = raw(&backend, 5).await;
    objects.delete(&key5, &etag5).await.unwrap();
    let report = backend.audit.verify().await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.starts_with("entry 5 is missing")),
        "{:?}",
        report.problems
    );

    // HEAD is a hint: edited to 2^64-1 it costs one line and no more work, and neither
    // reading nor appending trusts it past the entries that exist.
    objects
        .put(
            &backend.audit.head_key(),
            u64::MAX.to_string().as_bytes(),
            Precondition::Overwrite,
        )
        .await
        .unwrap();
    assert_eq!(backend.audit.latest_seq().await.unwrap(), 4);
    let report = backend.audit.verify().await.unwrap();
    assert!(
        report.problems.contains(&format!(
            "entries 5 to {} are missing, or HEAD was edited: the log's HEAD is {} but its last entry is 4",
            u64::MAX,
            u64::MAX
        )),
        "{:?}",
        report.problems
    );
    assert!(report.problems.len() < 10, "{:?}", report.problems);
    let newest: Vec<u64> = backend
        .audit
        .newest(3)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(newest, [4, 3]);
    let appended = backend
        .audit
        .append(now(), entry("after HEAD was edited"))
        .await
        .unwrap();
    assert_eq!(appended.seq, 5);
}

macro_rules! backend_suite {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[test]
            fn lock_contention() {
                let f = super::$backend();
                block_on(super::lock_contention(f.backend.clone()));
            }
            #[test]
            fn expired_lock_is_reported_and_only_its_id_unlocks_it() {
                let f = super::$backend();
                block_on(super::expired_lock_is_reported_and_only_its_id_unlocks_it(
                    f.backend.clone(),
                ));
            }
            #[test]
            fn serials_advance_by_one_and_stale_serials_are_refused() {
                let f = super::$backend();
                block_on(super::serials_advance_by_one_and_stale_serials_are_refused(
                    f.backend.clone(),
                ));
            }
            #[test]
            fn lineage_mismatch_is_refused() {
                let f = super::$backend();
                block_on(super::lineage_mismatch_is_refused(f.backend.clone()));
            }
            #[test]
            fn a_lost_update_is_impossible() {
                let f = super::$backend();
                block_on(super::a_lost_update_is_impossible(f.backend.clone()));
            }
            #[test]
            fn persist_needs_the_lock_still_held() {
                let f = super::$backend();
                block_on(super::persist_needs_the_lock_still_held(f.backend.clone()));
            }
            #[test]
            fn a_renewed_lease_moves_on_and_a_removed_lock_cannot_be_renewed() {
                let f = super::$backend();
                block_on(
                    super::a_renewed_lease_moves_on_and_a_removed_lock_cannot_be_renewed(
                        f.backend.clone(),
                    ),
                );
            }
            #[test]
            fn versions_are_listed_newest_first_with_serials() {
                let f = super::$backend();
                block_on(super::versions_are_listed_newest_first_with_serials(
                    f.backend.clone(),
                ));
            }
            #[test]
            fn concurrent_appends_each_get_their_own_sequence_number() {
                let f = super::$backend();
                block_on(
                    super::concurrent_appends_each_get_their_own_sequence_number(f.backend.clone()),
                );
            }
            #[test]
            fn twenty_racing_writers_never_lose_an_update() {
                let f = super::$backend();
                super::twenty_racing_writers_never_lose_an_update(f.backend.clone());
            }
            #[test]
            fn twenty_sequential_rounds_under_contention_count_every_increment() {
                let f = super::$backend();
                super::twenty_sequential_rounds_under_contention_count_every_increment(
                    f.backend.clone(),
                );
            }
            #[test]
            fn verify_names_edited_missing_and_reordered_entries() {
                let f = super::$backend();
                block_on(super::verify_names_edited_missing_and_reordered_entries(
                    f.backend.clone(),
                ));
            }
        }
    };
}

backend_suite!(local);
backend_suite!(s3);

#[test]
fn an_unversioned_bucket_is_refused_with_how_to_enable_versioning() {
    let moto = moto();
    let bucket = moto.create_bucket("plain", false);
    let backend = Backend::s3(S3Objects::new(block_on(moto.s3()), &bucket), "state.json");
    let err = block_on(backend.store.locker.lock("me", "apply", now(), lease())).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "S3 bucket {bucket} does not have versioning enabled"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled")),
        "{message}"
    );
    // Nothing is left behind: the probe lock is removed again.
    assert!(block_on(backend.store.locker.current()).unwrap().is_none());
}

/// Counts who is inside the locked section: the lock's whole promise is that this never
/// exceeds one, whatever the conditional state write would have caught afterwards.
#[derive(Default)]
struct Holders {
    inside: std::sync::atomic::AtomicUsize,
    overlaps: std::sync::atomic::AtomicUsize,
}

impl Holders {
    /// Enters the locked section, holds it long enough for an overlap to show, and leaves.
    fn hold_for_a_moment(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.inside.fetch_add(1, SeqCst) != 0 {
            self.overlaps.fetch_add(1, SeqCst);
        }
        std::thread::sleep(std::time::Duration::from_millis(15));
        self.inside.fetch_sub(1, SeqCst);
    }

    fn overlaps(&self) -> usize {
        self.overlaps.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Twenty writers read the state first, then race for the lock at one barrier: exactly one
/// write lands (the others find the lock taken or, once it is free again, their read stale),
/// and nobody is ever inside the locked section together with another.
fn twenty_racing_writers_never_lose_an_update(backend: Backend) {
    block_on(bump(&backend, None)).unwrap();
    let seeded = block_on(backend.store.load()).unwrap().unwrap();
    let holders = std::sync::Arc::new(Holders::default());
    let start = std::sync::Arc::new(std::sync::Barrier::new(20));
    let outcomes: Vec<Result<u64, String>> = (0..20)
        .map(|i| {
            let backend = backend.clone();
            let start = start.clone();
            let holders = holders.clone();
            std::thread::spawn(move || {
                block_on(async {
                    let prior = backend
                        .store
                        .load()
                        .await
                        .map_err(|e| e.to_string())?
                        .expect("seeded");
                    start.wait();
                    let lock = backend
                        .store
                        .locker
                        .lock(&format!("writer-{i}"), "apply", now(), lease())
                        .await
                        .map_err(|e| e.to_string())?;
                    holders.hold_for_a_moment();
                    let result = async {
                        let mut next = prior.state.clone();
                        next.serial += 1;
                        let written = backend.store.persist(&next, Some(&prior), &lock).await?;
                        backend
                            .audit
                            .append(
                                now(),
                                NewEntry {
                                    state_serial_before: Some(prior.state.serial),
                                    state_serial_after: Some(written.state.serial),
                                    ..entry(&format!("apply by writer-{i}"))
                                },
                            )
                            .await?;
                        Ok::<u64, StateError>(written.state.serial)
                    }
                    .await;
                    backend
                        .store
                        .locker
                        .unlock(&lock)
                        .await
                        .map_err(|e| e.to_string())?;
                    result.map_err(|e| e.to_string())
                })
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();

    let successes = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
    let mut locked = 0;
    let mut stale = 0;
    for failure in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        if failure.contains("locked by writer-") || failure.contains("at the same moment") {
            locked += 1;
        } else if failure.starts_with("stale:") || failure.contains("is no longer held") {
            // A read gone stale, or (with a broken lock) a lock taken over by another writer:
            // either way nothing was written, and the counts below say whether that was right.
            stale += 1;
        } else {
            panic!("unclear loser error: {failure}");
        }
    }
    eprintln!(
        "race: {successes} of 20 writers won, {locked} found the lock taken, {stale} found their read stale, {} overlaps",
        holders.overlaps()
    );
    assert_eq!(holders.overlaps(), 0, "two writers held the lock at once");
    // All read serial 1, so exactly one write can succeed; nobody overwrote anybody.
    assert_eq!(successes, 1, "{outcomes:?}");
    assert_eq!(locked + stale, 19, "{outcomes:?}");
    let last = block_on(backend.store.load()).unwrap().unwrap();
    assert_eq!(last.state.serial, seeded.state.serial + 1, "{outcomes:?}");
    let report = block_on(backend.audit.verify()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 1);
    assert!(block_on(backend.store.locker.current()).unwrap().is_none());
}

/// Twenty writers each retry until they have taken the lock once, then read, increment and
/// write: every one of them gets through, one at a time, and every increment is counted.
fn twenty_sequential_rounds_under_contention_count_every_increment(backend: Backend) {
    const WRITERS: u64 = 20;
    block_on(bump(&backend, None)).unwrap();
    let holders = std::sync::Arc::new(Holders::default());
    let outcomes: Vec<Result<u64, String>> = (0..WRITERS)
        .map(|i| {
            let backend = backend.clone();
            let holders = holders.clone();
            std::thread::spawn(move || {
                block_on(async {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                    while std::time::Instant::now() < deadline {
                        match backend
                            .store
                            .locker
                            .lock(&format!("writer-{i}"), "apply", now(), lease())
                            .await
                        {
                            Ok(lock) => {
                                holders.hold_for_a_moment();
                                let result = async {
                                    let prior = backend.store.load().await?.expect("seeded");
                                    let mut next = prior.state.clone();
                                    next.serial += 1;
                                    backend.store.persist(&next, Some(&prior), &lock).await
                                }
                                .await;
                                backend
                                    .store
                                    .locker
                                    .unlock(&lock)
                                    .await
                                    .map_err(|e| e.to_string())?;
                                return result.map(|l| l.state.serial).map_err(|e| e.to_string());
                            }
                            Err(StateError::Locked { .. } | StateError::LockContended) => {
                                std::thread::sleep(std::time::Duration::from_millis(10));
                            }
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    Err("gave up waiting for the lock".to_string())
                })
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    eprintln!(
        "rounds: {} of {WRITERS} writers got through, {} overlaps",
        outcomes.iter().filter(|o| o.is_ok()).count(),
        holders.overlaps()
    );
    assert_eq!(holders.overlaps(), 0, "two writers held the lock at once");
    let mut serials: Vec<u64> = outcomes
        .iter()
        .map(|o| o.clone().unwrap_or_else(|e| panic!("a writer failed: {e}")))
        .collect();
    serials.sort_unstable();
    assert_eq!(
        serials,
        (2..=1 + WRITERS).collect::<Vec<_>>(),
        "each writer wrote its own serial"
    );
    let last = block_on(backend.store.load()).unwrap().unwrap();
    assert_eq!(last.state.serial, 1 + WRITERS);
    assert!(block_on(backend.store.locker.current()).unwrap().is_none());
}
