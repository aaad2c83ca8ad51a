//! The state apply writes (step 8): the reviewed plan's `new_state` with what only the run
//! knows.

use crate::aws::cloudformation::StackDescription;
use crate::aws::route53::RecordChange as DnsChange;
use crate::planfile::{Plan, PlanKind, RecordAction};
use crate::state::{AuditHead, RecordState, State};

/// Step 8's state: the plan's `new_state` with what only this run knows (the stack's id, the
/// records Route53 took, where the cluster lives, this run's audit entry). On a record failure
/// it keeps the old records, so the next plan shows the change again.
pub(super) fn next_state(
    plan: &Plan,
    prior: Option<&State>,
    stack: Option<&StackDescription>,
    applied: &[(String, DnsChange)],
    (account, region): (&str, &str),
    head: AuditHead,
) -> State {
    let mut next = plan.new_state.clone();
    if plan.kind == PlanKind::Apply
        && let (Some(s), Some(desc)) = (next.stack.as_mut(), stack)
    {
        s.id = Some(desc.id.clone());
    }
    let mut records: Vec<RecordState> = prior.map(|s| s.records.clone()).unwrap_or_default();
    for (zone, change) in applied {
        records.retain(|r| !(r.name == change.name && r.record_type == change.record_type));
        if change.action == RecordAction::Upsert {
            records.push(RecordState {
                hosted_zone_id: zone.clone(),
                name: change.name.clone(),
                record_type: change.record_type.clone(),
                ttl: change.ttl,
                values: change.values.clone(),
            });
        }
    }
    records.sort_by(|a, b| (&a.name, &a.record_type).cmp(&(&b.name, &b.record_type)));
    next.records = records;
    next.account_id = Some(account.to_string());
    next.region = Some(region.to_string());
    next.audit_head = Some(head);
    next
}

/// Whether the plan ships assets the state does not hold yet: a certificate or key issued or
/// rotated by this plan.
pub(super) fn issues_assets(plan: &Plan) -> bool {
    plan.certificates.iter().any(|c| c.action.is_new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planfile::fixtures::rolling_plan;

    #[test]
    fn the_written_state_takes_what_route53_took_and_where_this_run_found_the_cluster() {
        let record = |name: &str, value: &str| RecordState {
            hosted_zone_id: "/hostedzone/Z".into(),
            name: name.into(),
            record_type: "A".into(),
            ttl: 300,
            values: vec![value.into()],
        };
        let mut prior = crate::state::State::new("demo", "l".into());
        prior.records = vec![record("api.", "10.0.0.1"), record("old.", "10.0.0.2")];
        let change = |action, name: &str, value: &str| DnsChange {
            action,
            name: name.into(),
            record_type: "A".into(),
            ttl: 60,
            values: vec![value.into()],
        };
        let applied = [
            (
                "Z".to_string(),
                change(RecordAction::Upsert, "api.", "10.0.0.9"),
            ),
            (
                "Z".to_string(),
                change(RecordAction::Delete, "old.", "10.0.0.2"),
            ),
        ];
        let head = AuditHead {
            seq: 7,
            entry_sha256: "e".into(),
        };
        let next = next_state(
            &rolling_plan(),
            Some(&prior),
            None,
            &applied,
            ("210987654321", "eu-west-1"),
            head.clone(),
        );
        assert_eq!(next.records.len(), 1);
        assert_eq!(
            (
                next.records[0].name.as_str(),
                next.records[0].values.as_slice(),
                next.records[0].ttl
            ),
            ("api.", ["10.0.0.9".to_string()].as_slice(), 60)
        );
        assert_eq!(next.account_id.as_deref(), Some("210987654321"));
        assert_eq!(next.region.as_deref(), Some("eu-west-1"));
        assert_eq!(next.audit_head, Some(head.clone()));
        // Nothing applied (Route53 failed): the state keeps the records it had.
        let kept = next_state(&rolling_plan(), Some(&prior), None, &[], ("1", "r"), head);
        assert_eq!(kept.records, prior.records);
    }
}
