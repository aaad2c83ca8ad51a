//! Following a stack to the end of its change: when to ask CloudFormation for the stack's
//! status and when for its events, so apply notices the end within about a second of it
//! without listing events every second through an hour-long rolling update.

use std::time::Duration;

use tokio::time::Instant;

use super::{StackDescription, StackEnding, StackEvent, StackService, StackStatus};
use crate::aws::AwsError;

/// A delay between two requests: `first`, then each one `growth` times the last, up to `max`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub first: Duration,
    pub growth: f64,
    pub max: Duration,
}

impl Backoff {
    /// The same delay every time.
    pub const fn every(delay: Duration) -> Backoff {
        Backoff {
            first: delay,
            growth: 1.0,
            max: delay,
        }
    }

    fn after(&self, delay: Duration) -> Duration {
        delay.mul_f64(self.growth).min(self.max)
    }
}

/// How often a followed stack's status (one DescribeStacks) and its events (DescribeStackEvents,
/// a page per 100 events) are asked for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PollSchedule {
    pub status: Backoff,
    pub events: Backoff,
}

impl PollSchedule {
    /// Apply's: the status every second, so the end is noticed within a second and a request
    /// (AWS CLI waiters ask every 30 s); the events, which only feed the progress lines, from
    /// half a second backing off to 10 s, and once more when the stack has ended, so every
    /// event up to the end is shown and a failure's reasons are complete.
    pub const APPLY: PollSchedule = PollSchedule {
        status: Backoff::every(Duration::from_secs(1)),
        events: Backoff {
            first: Duration::from_millis(500),
            growth: 1.5,
            max: Duration::from_secs(10),
        },
    };
}

/// Where following a stack stopped.
#[derive(Debug)]
pub enum Followed {
    /// The stack reached a status it stays in (a deleted stack is `DeleteComplete`).
    Ended {
        ending: StackEnding,
        status: StackStatus,
        /// `None` once the stack is deleted.
        description: Option<StackDescription>,
        /// The failed events seen while following, oldest first.
        failures: Vec<StackEvent>,
    },
    /// `wait` said to stop (an interrupt) before the stack ended.
    Stopped,
}

/// Follows `stack` until its status is final: each event after `last_event` goes to
/// `on_event`, oldest first; between requests `wait(delay)` sleeps and returns false to stop.
pub async fn follow<C: StackService>(
    cfn: &C,
    stack: &str,
    mut last_event: Option<String>,
    schedule: &PollSchedule,
    mut on_event: impl FnMut(&StackEvent),
    mut wait: impl AsyncFnMut(Duration) -> bool,
) -> Result<Followed, AwsError> {
    let mut failures = Vec::new();
    let (mut status_delay, mut events_delay) = (schedule.status.first, schedule.events.first);
    let (mut status_due, mut events_due) = (Instant::now(), Instant::now());
    loop {
        let now = Instant::now();
        let mut ended = None;
        if now >= status_due {
            let described = cfn.describe_stack(stack).await?;
            // Only a deleted stack is gone.
            let status = described
                .as_ref()
                .map_or(StackStatus::DeleteComplete, |d| d.status.clone());
            if let Some(ending) = status.ending() {
                ended = Some((ending, status, described));
            }
            status_due = now + status_delay;
            status_delay = schedule.status.after(status_delay);
        }
        // Asked after the status, so an ended stack's last events are all in this page.
        if ended.is_some() || now >= events_due {
            let mut events = cfn.events_since(stack, last_event.as_deref()).await?;
            events.reverse();
            for event in &events {
                on_event(event);
                if event.status.is_failure() {
                    failures.push(event.clone());
                }
            }
            if let Some(newest) = events.last() {
                last_event = Some(newest.id.clone());
            }
            events_due = now + events_delay;
            events_delay = schedule.events.after(events_delay);
        }
        if let Some((ending, status, description)) = ended {
            return Ok(Followed::Ended {
                ending,
                status,
                description,
                failures,
            });
        }
        let next = status_due.min(events_due);
        if !wait(next.saturating_duration_since(Instant::now())).await {
            return Ok(Followed::Stopped);
        }
    }
}

#[cfg(test)]
mod tests;
