//! The schedule against a stack whose change ends at a set time, on tokio's paused clock: when
//! `follow` returns after the end, how many requests it made, and that every event is shown
//! once, in order. (The benchmark `apply_exit` measures the same over HTTP on the real clock.)

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::aws::cloudformation::{
    ChangeSetDescription, ChangeSetRequest, ResourceStatus, StackDescription, StackEvent,
};

/// A stack updating from the moment it is made until `ends_after`; one resource event every
/// 4 s, and the stack's own event at the end (`UPDATE_COMPLETE`, or `UPDATE_ROLLBACK_COMPLETE`
/// after a failed resource when `fails`).
struct TimedStack {
    started: Instant,
    ends_after: Duration,
    fails: bool,
    status_requests: Cell<u32>,
    event_requests: Cell<u32>,
    asked_at: RefCell<Vec<Duration>>,
}

impl TimedStack {
    fn new(ends_after: Duration, fails: bool) -> TimedStack {
        TimedStack {
            started: Instant::now(),
            ends_after,
            fails,
            status_requests: Cell::new(0),
            event_requests: Cell::new(0),
            asked_at: RefCell::new(Vec::new()),
        }
    }

    fn ended(&self) -> bool {
        self.started.elapsed() >= self.ends_after
    }

    /// Every event so far, oldest first.
    fn events(&self) -> Vec<StackEvent> {
        let elapsed = self.started.elapsed().min(self.ends_after);
        let resource = |n: u64, status: &str| StackEvent {
            id: format!("e{n}"),
            timestamp: format!("t+{n}s"),
            logical_id: format!("Resource{n}"),
            resource_type: "AWS::EC2::Instance".into(),
            status: ResourceStatus::from(status),
            reason: None,
        };
        let mut events: Vec<StackEvent> = (0..=elapsed.as_secs() / 4)
            .map(|i| resource(i * 4, "UPDATE_COMPLETE"))
            .collect();
        if self.ended() {
            if self.fails {
                events.push(resource(1000, "UPDATE_FAILED"));
            }
            let last = if self.fails {
                "UPDATE_ROLLBACK_COMPLETE"
            } else {
                "UPDATE_COMPLETE"
            };
            events.push(StackEvent {
                id: "end".into(),
                logical_id: "stack".into(),
                ..resource(1001, last)
            });
        }
        events
    }
}

impl StackService for TimedStack {
    async fn describe_stack(&self, name: &str) -> Result<Option<StackDescription>, AwsError> {
        self.status_requests.set(self.status_requests.get() + 1);
        self.asked_at.borrow_mut().push(self.started.elapsed());
        let status = match (self.ended(), self.fails) {
            (false, _) => "UPDATE_IN_PROGRESS",
            (true, false) => "UPDATE_COMPLETE",
            (true, true) => "UPDATE_ROLLBACK_COMPLETE",
        };
        Ok(Some(StackDescription {
            id: format!("arn:stack/{name}/1"),
            name: name.into(),
            description: None,
            status: StackStatus::from(status),
            status_reason: None,
            outputs: BTreeMap::new(),
        }))
    }
    async fn events_since(
        &self,
        _: &str,
        until_id: Option<&str>,
    ) -> Result<Vec<StackEvent>, AwsError> {
        self.event_requests.set(self.event_requests.get() + 1);
        Ok(self
            .events()
            .into_iter()
            .rev()
            .take_while(|e| Some(e.id.as_str()) != until_id)
            .collect())
    }
    async fn create_change_set(&self, _: &ChangeSetRequest) -> Result<(String, String), AwsError> {
        unreachable!()
    }
    async fn describe_change_set(
        &self,
        _: &str,
        _: &str,
    ) -> Result<ChangeSetDescription, AwsError> {
        unreachable!()
    }
    async fn delete_change_set(&self, _: &str, _: &str) -> Result<(), AwsError> {
        unreachable!()
    }
    async fn execute_change_set(&self, _: &str, _: &str) -> Result<(), AwsError> {
        unreachable!()
    }
    async fn get_template(&self, _: &str, _: Option<&str>) -> Result<String, AwsError> {
        unreachable!()
    }
    async fn delete_stack(&self, _: &str) -> Result<(), AwsError> {
        unreachable!()
    }
    async fn physical_ids(&self, _: &str) -> Result<BTreeMap<String, String>, AwsError> {
        unreachable!()
    }
    async fn validate_template(&self, _: &str) -> Result<(), AwsError> {
        unreachable!()
    }
}

/// Follows a stack ending after `ends_after`: what `follow` returned, the event ids it showed,
/// and how long after the end it returned.
async fn run(
    schedule: &PollSchedule,
    ends_after: Duration,
    fails: bool,
) -> (Followed, Vec<String>, Duration, TimedStack) {
    let stack = TimedStack::new(ends_after, fails);
    let mut shown = Vec::new();
    let followed = follow(
        &stack,
        "s",
        None,
        schedule,
        |e| shown.push(e.id.clone()),
        async |delay| {
            tokio::time::sleep(delay).await;
            true
        },
    )
    .await
    .expect("served");
    let late = stack.started.elapsed() - ends_after;
    (followed, shown, late, stack)
}

/// The schedule apply had before: events and status together, from 0.5 s backing off to 10 s.
const BACKOFF_ONLY: PollSchedule = PollSchedule {
    status: PollSchedule::APPLY.events,
    events: PollSchedule::APPLY.events,
};

#[tokio::test(start_paused = true)]
async fn apply_notices_the_end_within_a_second_wherever_it_falls() {
    let mut worst = Duration::ZERO;
    let mut worst_before = Duration::ZERO;
    for quarter in 1..=480u64 {
        let ends_after = Duration::from_millis(quarter * 250);
        let (followed, shown, late, _) = run(&PollSchedule::APPLY, ends_after, false).await;
        assert!(matches!(
            followed,
            Followed::Ended {
                ending: StackEnding::Succeeded,
                ..
            }
        ));
        assert_eq!(shown.last().map(String::as_str), Some("end"), "{shown:?}");
        worst = worst.max(late);
        worst_before = worst_before.max(run(&BACKOFF_ONLY, ends_after, false).await.2);
    }
    assert!(worst <= Duration::from_secs(1), "{worst:?}");
    // What the schedule is for: the old one could be almost 10 s late.
    assert!(worst_before > Duration::from_secs(9), "{worst_before:?}");
}

#[tokio::test(start_paused = true)]
async fn events_back_off_while_the_status_is_asked_every_second() {
    let (_, shown, _, stack) = run(&PollSchedule::APPLY, Duration::from_secs(600), false).await;
    let (statuses, event_pages) = (stack.status_requests.get(), stack.event_requests.get());
    // 601 status requests; events at 0.5 s growing to 10 s: 67 pages for ten minutes.
    assert_eq!(statuses, 601);
    assert!(event_pages < 70, "{event_pages}");
    // Each event shown once, in order, the stack's own last.
    let mut expected: Vec<String> = (0..=150).map(|i| format!("e{}", i * 4)).collect();
    expected.push("end".into());
    assert_eq!(shown, expected);
    let asked = stack.asked_at.borrow();
    assert!(
        asked
            .windows(2)
            .all(|w| w[1] - w[0] == Duration::from_secs(1)),
        "{asked:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_ends_with_its_failed_events() {
    let (followed, _, late, _) = run(&PollSchedule::APPLY, Duration::from_secs(42), true).await;
    let Followed::Ended {
        ending, failures, ..
    } = followed
    else {
        panic!("stopped");
    };
    assert_eq!(ending, StackEnding::RolledBack);
    assert_eq!(
        failures.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e1000"]
    );
    assert!(late <= Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn wait_saying_no_stops_following() {
    let stack = TimedStack::new(Duration::from_secs(60), false);
    let mut waits = 0;
    let followed = follow(
        &stack,
        "s",
        None,
        &PollSchedule::APPLY,
        |_| {},
        async |_| {
            waits += 1;
            waits < 3
        },
    )
    .await
    .expect("served");
    assert!(matches!(followed, Followed::Stopped));
    assert_eq!(waits, 3);
}
