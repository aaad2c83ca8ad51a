//! The lock an apply holds, as a lease it renews while it waits on AWS, and the last look
//! before each change that it still holds it.

use std::cell::{Cell, RefCell};
use std::time::{Duration as StdDuration, Instant};

use super::now;
use crate::engine::backend::Backend;
use crate::state::StateError;
use crate::state::lock::Locker;
use crate::state::store::{DEFAULT_LEASE, HeldLock};

/// How long the lock's lease runs: an hour, or `KUBE_AWS_LOCK_LEASE_SECONDS` (at least 3).
pub(super) fn lease_length() -> time::Duration {
    std::env::var("KUBE_AWS_LOCK_LEASE_SECONDS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|s| (3..=86_400).contains(s))
        .map_or(DEFAULT_LEASE, time::Duration::seconds)
}

/// The lock this apply holds, renewed while it waits on CloudFormation and Route53 and before
/// each step after them, so that neither a long rolling update nor a slow state or audit write
/// ever shows an expired, removable lock.
pub(super) struct Lease<'a> {
    backend: &'a Backend,
    held: RefCell<HeldLock>,
    length: time::Duration,
    renewed: Cell<Instant>,
    /// Set when a renewal found the lock removed or replaced.
    lost: RefCell<Option<String>>,
}

impl<'a> Lease<'a> {
    pub(super) fn new(backend: &'a Backend, lock: HeldLock, length: time::Duration) -> Lease<'a> {
        Lease {
            backend,
            held: RefCell::new(lock),
            length,
            renewed: Cell::new(Instant::now()),
            lost: RefCell::new(None),
        }
    }

    /// Why the lock was lost, once a renewal found it removed or replaced.
    pub(super) fn lost(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    pub(super) fn current(&self) -> HeldLock {
        self.held.borrow().clone()
    }

    /// How long a wait between two polls may last so the next poll still renews in time: the
    /// backoff of a long wait would otherwise outgrow a short lease.
    /// A lost lock needs no renewal, and a failing renewal is retried at most once a second.
    pub(super) fn bound(&self, delay: StdDuration) -> StdDuration {
        if self.lost.borrow().is_some() {
            return delay;
        }
        let third = StdDuration::from_secs_f64(self.length.as_seconds_f64() / 3.0);
        let due = third.saturating_sub(self.renewed.get().elapsed());
        delay.min(due.max(StdDuration::from_secs(1)))
    }

    /// Renews the lease once a third of it has run. A renewal that fails for another reason
    /// than a lost lock is tried again at the next poll, while two thirds of the lease remain.
    pub(super) async fn keep_alive(&self) {
        let third = StdDuration::from_secs_f64(self.length.as_seconds_f64() / 3.0);
        if self.lost.borrow().is_some() || self.renewed.get().elapsed() < third {
            return;
        }
        let lock = self.current();
        match self
            .backend
            .store
            .locker
            .renew(&lock, now(), self.length)
            .await
        {
            Ok(renewed) => {
                *self.held.borrow_mut() = renewed;
                self.renewed.set(Instant::now());
            }
            Err(StateError::LockLost { id }) => {
                *self.lost.borrow_mut() = Some(format!(
                    "the state lock {id} was removed or taken over while the stack was changing"
                ));
            }
            Err(_) => {}
        }
    }

    /// Why this apply may not change AWS any more: its lock was removed (`state unlock`) or
    /// replaced by another run's. `None` while it still holds it.
    pub(super) async fn lost_before_change(&self) -> Option<String> {
        let lock = self.current();
        match self.backend.store.locker.still_holds(&lock).await {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "the state lock {} was removed or taken over while this apply ran; nothing was executed. Make a new plan once no other run is active.",
                lock.info.id
            )),
            Err(e) => Some(format!(
                "the state lock could not be re-checked ({e}); nothing was executed"
            )),
        }
    }
}
