//! `plan`'s views: the Terraform-style text, the pull-request markdown, and (through serde) the
//! JSON; `apply` and `destroy` show the same text before asking.

use std::fmt::Write;

use super::{Palette, fenced, markdown_cell, printable_keeping_colour};
use crate::planfile::{
    Action, Plan, PlanKind, RecordAction, ReplacementSource, ResourceAction, ResourceChange,
};

/// What a `--preview` plan is, in its text and Markdown.
const PREVIEW_NOTE: &str = "Preview for review, made without keys: certificates due are listed but not issued, and nothing is signed. Apply takes only the plan the protected job makes from the merged commit.";

fn short(hash: &Option<String>) -> String {
    hash.as_deref()
        .map(super::short_hash)
        .unwrap_or_else(|| "-".into())
}

fn rolling_text(r: &crate::planfile::RollingForecast) -> String {
    let drained = match r.drain_timeout_seconds {
        Some(seconds) => format!(
            "; each drained before it terminates (its pods evicted as their disruption budgets allow, for up to {seconds} s)"
        ),
        None => "; terminated without a drain (the group has no termination hook)".into(),
    };
    format!(
        "{} instance(s) will roll, {} at a time ({} batch(es), pause {}, at least {} in service){drained}",
        r.instances_text(),
        r.max_batch_size,
        r.batches,
        r.pause_time,
        r.min_in_service
    )
}

/// ` (forecast)` after a replacement kube-aws forecast rather than CloudFormation said.
fn forecast_mark(c: &ResourceChange) -> &'static str {
    if c.replacement_source == Some(ReplacementSource::Forecast) {
        " (forecast)"
    } else {
        ""
    }
}

fn summary_line(plan: &Plan) -> String {
    let s = plan.summary;
    if !plan.has_changes() {
        return "No changes. The cluster matches the configuration.".into();
    }
    format!(
        "Plan: {} to add, {} to change, {} to remove, {} to replace.",
        s.add, s.change, s.remove, s.replace
    )
}

/// The Terraform-style text view.
/// One stack's section of the text plan.
fn stack_text(out: &mut String, p: &Palette, stack: &crate::planfile::StackChange, at_apply: bool) {
    let _ = writeln!(out, "\nStack {}:", stack.name);
    match (&stack.action, &stack.change_set_name) {
        (Action::NoOp, _) => {
            let _ = writeln!(out, "  no changes");
        }
        (action, Some(cs)) => {
            let _ = writeln!(
                out,
                "  {} via change set {cs}",
                match action {
                    Action::Create => "create",
                    _ => "update",
                }
            );
        }
        (Action::Delete, None) => {
            let _ = writeln!(
                out,
                "{}",
                p.remove
                    .apply_to("  - delete the stack and every resource in it")
            );
        }
        (action, None) if at_apply => {
            let _ = writeln!(
                out,
                "  {action:?} via a change set apply makes after the cluster stack (its parameters are the cluster stack's outputs: known after apply)"
            );
        }
        (action, None) => {
            let _ = writeln!(out, "  {action:?} (no change set: offline)");
        }
    }
    for c in &stack.resource_changes {
        let symbol = c.symbol();
        let style = match c.action {
            ResourceAction::Add => &p.add,
            ResourceAction::Remove => &p.remove,
            _ if c.replaces() => &p.replace,
            _ => &p.change,
        };
        let mut line = format!("  {symbol} {} ({})", c.logical_id, c.resource_type);
        if !c.changed_properties.is_empty() {
            line.push_str(&format!(" [{}]", c.changed_properties.join(", ")));
        }
        if c.rolling.is_some() {
            line.push_str(": instances replaced by a rolling update");
        } else if let Some(r) = &c.replacement
            && c.action == ResourceAction::Modify
        {
            line.push_str(&format!(" replacement: {r}{}", forecast_mark(c)));
        }
        let _ = writeln!(out, "{}", style.apply_to(line));
        if let Some(r) = &c.rolling {
            let _ = writeln!(
                out,
                "{}",
                p.replace.apply_to(format!("      {}", rolling_text(r)))
            );
        }
        for detail in &c.details {
            let _ = writeln!(out, "{}", p.dim.apply_to(format!("      {detail}")));
        }
    }
}

/// What applying the plan does to the state's serial: a plan without changes writes nothing.
fn serial_move(plan: &Plan) -> String {
    match plan.has_changes() {
        true => format!(
            "state serial {} → {}",
            plan.prior.serial, plan.new_state.serial
        ),
        false => format!("state serial {}, unchanged", plan.prior.serial),
    }
}

pub fn plan_text(plan: &Plan, color: bool) -> String {
    let p = Palette::new(color);
    let mut out = String::new();
    let kind = match plan.kind {
        PlanKind::Apply => "plan",
        PlanKind::Destroy => "destroy plan",
    };
    let _ = writeln!(
        out,
        "{} for cluster {} ({})",
        p.bold.apply_to(format!("kube-aws {kind}")),
        plan.cluster_name,
        serial_move(plan)
    );
    if plan.offline {
        let _ = writeln!(
            out,
            "{}",
            p.change
                .apply_to("Offline preview: not applicable. Skipped:")
        );
        for s in &plan.skipped {
            let _ = writeln!(out, "  - {s}");
        }
    }
    if plan.preview {
        let _ = writeln!(out, "{}", p.change.apply_to(PREVIEW_NOTE));
    }
    for note in &plan.notes {
        let _ = writeln!(out, "{}", p.change.apply_to(format!("Note: {note}")));
    }
    if let Some(signing) = &plan.signing {
        let _ = writeln!(out, "{}", p.replace.apply_to(signing.describe()));
    }
    let changed = plan.changed_assets();
    if !changed.is_empty() {
        let _ = writeln!(out, "\nAssets:");
        for a in &changed {
            let style = match a.action {
                Action::Create => &p.add,
                Action::Update => &p.change,
                _ => &p.remove,
            };
            let mut line = format!("  {} {}", a.action.symbol(), a.path);
            // A certificate renewed for the same spec keeps its (spec) hash: say so, rather
            // than show a change from a hash to itself.
            match (a.action, a.old_sha256 == a.new_sha256) {
                (Action::Update, true) => line.push_str(&format!(
                    "  {}, spec unchanged: re-issued",
                    short(&a.new_sha256)
                )),
                (Action::Update, false) => line.push_str(&format!(
                    "  {} → {}",
                    short(&a.old_sha256),
                    short(&a.new_sha256)
                )),
                _ => {}
            }
            if let Some(reason) = &a.reason {
                line.push_str(&format!("  ({reason})"));
            }
            let _ = writeln!(out, "{}", style.apply_to(line));
            if let Some(diff) = &a.diff {
                for l in diff.lines() {
                    let styled = match l.chars().next() {
                        Some('+') if !l.starts_with("+++") => p.add.apply_to(l).to_string(),
                        Some('-') if !l.starts_with("---") => p.remove.apply_to(l).to_string(),
                        _ => p.dim.apply_to(l).to_string(),
                    };
                    let _ = writeln!(out, "      {styled}");
                }
            }
        }
    }
    stack_text(&mut out, &p, &plan.stack, false);
    let unchanged_pools = plan
        .pool_stacks
        .iter()
        .filter(|pool| pool.stack.action == Action::NoOp)
        .count();
    for pool in plan
        .pool_stacks
        .iter()
        .filter(|pool| pool.stack.action != Action::NoOp)
    {
        stack_text(
            &mut out,
            &p,
            &pool.stack,
            !plan.offline && pool.change_set_at_apply(),
        );
    }
    if unchanged_pools > 0 {
        let _ = writeln!(out, "\nNode pool stacks: {unchanged_pools} without changes");
    }
    let records: Vec<_> = plan.records.iter().collect();
    if !records.is_empty() {
        let _ = writeln!(out, "\nRoute53:");
        for r in records {
            let old = r
                .old_values
                .as_ref()
                .map(|v| v.join(","))
                .unwrap_or_else(|| "(none)".into());
            let line = format!(
                "  {} {} {} {} ttl {}: {} → {}",
                r.action.symbol(),
                r.action,
                r.name,
                r.record_type,
                r.ttl,
                old,
                r.new_values.join(",")
            );
            let style = match r.action {
                RecordAction::Delete => &p.remove,
                RecordAction::Upsert => &p.change,
                RecordAction::NoOp => &p.dim,
            };
            let _ = writeln!(out, "{}", style.apply_to(line));
        }
    }
    if !plan.certificates.is_empty() {
        let _ = writeln!(out, "\nCertificates:");
        for c in &plan.certificates {
            let _ = writeln!(
                out,
                "  {:<26} not after {:<22} {}{}",
                c.name,
                c.not_after,
                c.action,
                c.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(out, "\n{}", p.bold.apply_to(summary_line(plan)));
    // Reasons, ids, diffs and record values come from outside (a state, CloudFormation, the
    // cluster directory's templates): only this view's own colours reach the terminal.
    printable_keeping_colour(&out)
}

/// `text` in a Markdown table cell as code, read literally.
fn code_cell(text: &str) -> String {
    format!("<code>{}</code>", markdown_cell(text))
}

/// The pull-request comment view: replacements first, a summary table, details folded.
/// One stack's section of the Markdown plan.
fn stack_markdown(out: &mut String, stack: &crate::planfile::StackChange) {
    if !stack.resource_changes.is_empty() {
        let _ = writeln!(
            out,
            "#### Stack `{}` ({})\n\n| | Resource | Type | Action | Replacement | Changed |\n|---|---|---|---|---|---|",
            stack.name,
            stack
                .change_set_name
                .as_deref()
                .map(|n| format!("change set `{n}`"))
                .unwrap_or_else(|| format!("{:?}", stack.action))
        );
        for c in &stack.resource_changes {
            let symbol = c.symbol();
            let replacement = match (&c.rolling, &c.replacement) {
                (Some(r), _) => format!(
                    "rolling: {} instance(s), {} at a time",
                    r.instances_text(),
                    r.max_batch_size
                ),
                (None, Some(r)) => format!("{r}{}", forecast_mark(c)),
                _ => String::new(),
            };
            // Ids, types and property names come from templates a pull request may edit.
            let _ = writeln!(
                out,
                "| {symbol} | {} | {} | {} | {replacement} | {} |",
                code_cell(&c.logical_id),
                markdown_cell(&c.resource_type),
                c.action,
                markdown_cell(&c.changed_properties.join(", "))
            );
        }
        out.push('\n');
    } else if stack.action != Action::NoOp {
        let _ = writeln!(out, "#### Stack `{}`: {:?}\n", stack.name, stack.action);
    }
}

pub fn plan_markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### kube-aws {} for `{}`\n",
        if plan.kind == PlanKind::Destroy {
            "destroy plan"
        } else {
            "plan"
        },
        plan.cluster_name
    );
    let replacements: Vec<_> = std::iter::once(&plan.stack)
        .chain(plan.pool_stacks.iter().map(|p| &p.stack))
        .flat_map(|stack| &stack.resource_changes)
        .filter(|c| c.replaces())
        .collect();
    for c in &replacements {
        let what = c
            .rolling
            .as_ref()
            .map(rolling_text)
            .unwrap_or_else(|| "will be replaced".into());
        let _ = writeln!(
            out,
            "> [!WARNING]\n> **`{}`** ({}): {what}\n",
            c.logical_id, c.resource_type
        );
    }
    if plan.offline {
        let _ = writeln!(
            out,
            "> [!NOTE]\n> Offline preview, not applicable. Skipped: {}\n",
            plan.skipped.join("; ")
        );
    }
    if plan.preview {
        let _ = writeln!(out, "> [!NOTE]\n> {PREVIEW_NOTE}\n");
    }
    for note in &plan.notes {
        let _ = writeln!(out, "> [!IMPORTANT]\n> {note}\n");
    }
    if let Some(signing) = &plan.signing {
        let _ = writeln!(out, "> [!CAUTION]\n> {}\n", signing.describe());
    }
    let s = plan.summary;
    let _ = writeln!(
        out,
        "| add | change | remove | replace |\n|---:|---:|---:|---:|\n| {} | {} | {} | {} |\n",
        s.add, s.change, s.remove, s.replace
    );
    let _ = writeln!(out, "**{}**\n", summary_line(plan));
    let mut serial = serial_move(plan);
    serial[..1].make_ascii_uppercase();
    let _ = writeln!(out, "{serial}; plan `{}`.\n", &plan.plan_sha256[..12]);
    stack_markdown(&mut out, &plan.stack);
    for pool in plan
        .pool_stacks
        .iter()
        .filter(|pool| pool.stack.action != Action::NoOp)
    {
        stack_markdown(&mut out, &pool.stack);
    }
    let records: Vec<_> = plan.records.iter().filter(|r| r.action.changes()).collect();
    if !records.is_empty() {
        let _ = writeln!(
            out,
            "#### Route53\n\n| Action | Name | Type | TTL | Old | New |\n|---|---|---|---:|---|---|"
        );
        for r in records {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                r.action,
                code_cell(&r.name),
                markdown_cell(&r.record_type),
                r.ttl,
                r.old_values
                    .as_ref()
                    .map(|v| markdown_cell(&v.join(", ")))
                    .unwrap_or_else(|| "—".into()),
                markdown_cell(&r.new_values.join(", "))
            );
        }
        out.push('\n');
    }
    let changed = plan.changed_assets();
    if !changed.is_empty() {
        let _ = writeln!(
            out,
            "#### Assets\n\n| | Path | Old sha256 | New sha256 | Note |\n|---|---|---|---|---|"
        );
        for a in &changed {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | `{}` | {} |",
                a.action.symbol(),
                code_cell(&a.path),
                short(&a.old_sha256),
                short(&a.new_sha256),
                markdown_cell(a.reason.as_deref().unwrap_or_default())
            );
        }
        out.push('\n');
        for a in changed.iter().filter(|a| a.diff.is_some()) {
            let _ = writeln!(
                out,
                "<details><summary>diff {}</summary>\n\n{}\n\n</details>\n",
                code_cell(&a.path),
                fenced("diff", a.diff.as_deref().unwrap_or_default())
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planfile::fixtures::rolling_plan;

    #[test]
    fn plan_text_snapshot() {
        insta::assert_snapshot!(plan_text(&rolling_plan(), false));
    }

    #[test]
    fn plan_markdown_snapshot() {
        insta::assert_snapshot!(plan_markdown(&rolling_plan()));
    }

    #[test]
    fn plan_json_snapshot() {
        let json = String::from_utf8(crate::planfile::encode(&rolling_plan())).unwrap();
        insta::assert_snapshot!(json);
    }

    #[test]
    fn a_renewal_for_the_same_spec_says_re_issued_not_a_hash_to_itself() {
        let mut plan = rolling_plan();
        plan.assets.push(crate::planfile::AssetChange {
            path: "tls/admin".into(),
            kind: crate::assets::AssetKind::Tls,
            action: Action::Update,
            old_sha256: Some("1ad956f456ba0000".into()),
            new_sha256: Some("1ad956f456ba0000".into()),
            diff: None,
            reason: Some("expires 2027-01-01, within the renewal window".into()),
        });
        let text = plan_text(&plan, false);
        assert!(
            text.contains("~ tls/admin  1ad956f456ba, spec unchanged: re-issued  (expires"),
            "{text}"
        );
        assert!(!text.contains("1ad956f456ba → 1ad956f456ba"), "{text}");
    }

    /// What a state, CloudFormation or a pull request's template put in a plan reaches neither the
    /// terminal as control sequences nor the pull request comment as Markdown of its own.
    #[test]
    fn text_from_outside_cannot_drive_the_terminal_or_write_markdown() {
        let mut plan = rolling_plan();
        plan.assets.push(crate::planfile::AssetChange {
            path: "userdata/cloud-config-worker".into(),
            kind: crate::assets::AssetKind::CloudConfig,
            action: Action::Update,
            old_sha256: Some("a".repeat(64)),
            new_sha256: Some("b".repeat(64)),
            diff: Some("-a\n+```\n+<!-- hidden -->\n+\u{1b}]0;title\u{7}\n".into()),
            reason: Some("its spec changed: names +DNS:\u{1b}[2Jx|<b>y</b>".into()),
        });
        for coloured in [false, true] {
            let text = plan_text(&plan, coloured);
            assert!(
                !text.contains("\u{1b}]") && !text.contains("\u{1b}[2J"),
                "{text:?}"
            );
            assert!(text.contains("\\u{1b}[2J"), "{text:?}");
            assert_eq!(coloured, text.contains("\u{1b}["), "only its own colours");
        }
        let markdown = plan_markdown(&plan);
        assert!(
            markdown.contains("````diff\n"),
            "a fence longer than the diff's: {markdown}"
        );
        assert!(!markdown.contains("\u{1b}"), "{markdown}");
        assert!(
            markdown.contains("names +DNS:\\\\u{1b}\\[2Jx\\|&lt;b&gt;y&lt;/b&gt;"),
            "{markdown}"
        );
    }

    #[test]
    fn colour_is_only_used_when_asked() {
        let plain = plan_text(&rolling_plan(), false);
        let coloured = plan_text(&rolling_plan(), true);
        assert!(!plain.contains('\u{1b}'));
        assert!(
            coloured.contains("\u{1b}[31m\u{1b}[1m"),
            "replacements are bold red"
        );
    }
}
