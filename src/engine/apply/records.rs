//! Apply's step 7: the plan's Route53 changes, each pointing where the stack's endpoint
//! output says, waited on until Route53 has them everywhere.

use std::collections::BTreeMap;
use std::time::{Duration as StdDuration, Instant};

use super::lease::Lease;
use super::run::Run;
use super::{ApplyEvent, checks};
use crate::aws::AwsContext;
use crate::aws::route53::{DnsService, RecordChange as DnsChange};
use crate::config::ClusterConfig;
use crate::engine::EngineError;
use crate::engine::plan::records::{ENDPOINT_OUTPUT, bare_zone};
use crate::planfile::{KNOWN_AFTER_APPLY, Plan, RecordAction};

/// What step 7 did to Route53: the changes applied (by zone), and the last failure.
pub(super) struct RecordsApplied {
    pub(super) applied: Vec<(String, DnsChange)>,
    pub(super) error: Option<String>,
}

impl Run<'_> {
    /// Step 7: the plan's record changes, each pointing where the stack's endpoint output says.
    pub(super) async fn apply_records(
        &mut self,
        outputs: &BTreeMap<String, String>,
    ) -> RecordsApplied {
        let plan = self.plan;
        let mut record_error = None;
        let mut applied_records = Vec::new();
        let changes: Vec<_> = plan.records.iter().filter(|r| r.action.changes()).collect();
        if changes.is_empty() {
            return RecordsApplied {
                applied: applied_records,
                error: None,
            };
        }
        (self.observer)(ApplyEvent::Step("applying Route53 records"));
        let dns = self.context.route53();
        let mut by_zone: BTreeMap<&str, Vec<DnsChange>> = BTreeMap::new();
        for r in &changes {
            // The API record always points where the stack says its endpoint is, whatever value
            // the plan carries; a deletion removes exactly what the state recorded.
            let values = if r.action == RecordAction::Delete {
                r.new_values.clone()
            } else {
                match outputs.get(ENDPOINT_OUTPUT) {
                    Some(v)
                        if r.new_values
                            .iter()
                            .all(|n| n == v || n == KNOWN_AFTER_APPLY) =>
                    {
                        vec![v.clone()]
                    }
                    Some(v) => {
                        record_error = Some(format!(
                            "the plan points {} at {} but the stack's endpoint is {v}; the record was left as it is",
                            r.name,
                            r.new_values.join(", ")
                        ));
                        continue;
                    }
                    None => {
                        record_error = Some(format!(
                            "the stack has no {ENDPOINT_OUTPUT} output to point the record at"
                        ));
                        continue;
                    }
                }
            };
            by_zone
                .entry(&r.hosted_zone_id)
                .or_default()
                .push(DnsChange {
                    action: r.action,
                    name: r.name.clone(),
                    record_type: r.record_type.clone(),
                    ttl: r.ttl,
                    values,
                });
        }
        for (zone, batch) in &by_zone {
            match apply_batch(&dns, zone, batch, self.lease).await {
                Ok(()) => {
                    applied_records.extend(batch.iter().map(|c| (zone.to_string(), c.clone())))
                }
                Err(e) => record_error = Some(e.to_string()),
            }
        }
        RecordsApplied {
            applied: applied_records,
            error: record_error,
        }
    }
}

/// The zone an UPSERT's hosted zone must be, looked up by the name cluster.yaml gives when
/// it does not name the zone's id.
pub(super) async fn zone_to_look_up(
    config: &ClusterConfig,
    plan: &Plan,
    context: &AwsContext,
) -> Result<Option<String>, EngineError> {
    if !plan
        .records
        .iter()
        .any(|r| r.action == RecordAction::Upsert)
        || checks::expected_zone(config).is_some()
    {
        return Ok(None);
    }
    let Some(name) = &config.hosted_zone else {
        return Ok(None);
    };
    Ok(context
        .route53()
        .zone_by_name(name)
        .await?
        .map(|z| bare_zone(&z.id).to_string()))
}

/// One zone's batch, waited on until Route53 reports it in sync (at most ten minutes).
async fn apply_batch<D: DnsService>(
    dns: &D,
    zone: &str,
    batch: &[DnsChange],
    lease: &Lease<'_>,
) -> Result<(), EngineError> {
    let change_id = dns.change(zone, batch).await?;
    let mut delay = StdDuration::from_millis(500);
    let deadline = Instant::now() + StdDuration::from_secs(10 * 60);
    while !dns.in_sync(&change_id).await? {
        if Instant::now() > deadline {
            return Err(EngineError::RecordsNotInSync {
                change_id: change_id.clone(),
            });
        }
        lease.keep_alive().await;
        tokio::time::sleep(lease.bound(delay)).await;
        delay = (delay * 3 / 2).min(StdDuration::from_secs(10));
    }
    Ok(())
}
