//! `state show`'s text view: what the state records, one line per stack, record, certificate
//! and asset, with hashes shortened as in a plan. `--format json` prints the state itself.

use std::fmt::Write;

use super::short_hash as short;
use crate::state::{PlanSigning, State};

/// `state show`.
pub fn state_text(s: &State) -> String {
    // Every value comes from a state file, which a bucket's writer controls: one line each.
    let v = super::one_line;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "State of cluster {}: serial {}, lineage {}, kube-aws {}",
        v(&s.cluster_name),
        s.serial,
        v(&s.lineage),
        v(&s.tool_version)
    );
    if let (Some(account), Some(region)) = (&s.account_id, &s.region) {
        let _ = writeln!(out, "  account {}, region {}", v(account), v(region));
    }
    if let Some(head) = &s.audit_head {
        let _ = writeln!(
            out,
            "  written by the run of audit entry {} ({})",
            head.seq,
            v(&short(&head.entry_sha256))
        );
    }
    let signing = match &s.plan_signing {
        Some(PlanSigning::Key(key)) => format!("signed with {}", v(key)),
        Some(PlanSigning::Unsigned) => "unsigned (unsignedPlans: true)".into(),
        None => "not recorded".into(),
    };
    let _ = writeln!(out, "  plans: {signing}");
    let stacks = s.stack.iter().map(|st| ("cluster".to_string(), st));
    let pools = s
        .pool_stacks
        .iter()
        .map(|(pool, st)| (format!("pool {pool}"), st));
    let stacks: Vec<_> = stacks.chain(pools).collect();
    if !stacks.is_empty() {
        let _ = writeln!(out, "\nStacks:");
        for (role, st) in stacks {
            let _ = writeln!(
                out,
                "  {:<16} {} template {} {}",
                v(&role),
                v(&st.name),
                v(&short(&st.template_sha256)),
                v(st.id.as_deref().unwrap_or("(not created yet)"))
            );
        }
    }
    if let Some(image) = &s.image {
        let _ = writeln!(
            out,
            "\nImage: {} (Flatcar {})",
            v(&image.ami_id),
            image.release_channel.as_str()
        );
    }
    if !s.records.is_empty() {
        let _ = writeln!(out, "\nRecords:");
        for r in &s.records {
            let _ = writeln!(
                out,
                "  {} {} {} (TTL {}, zone {})",
                v(&r.name),
                v(&r.record_type),
                v(&r.values.join(",")),
                r.ttl,
                v(&r.hosted_zone_id)
            );
        }
    }
    if !s.tls.is_empty() {
        let width = s.tls.keys().map(String::len).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "\nCertificates ({}, private keys sealed with KMS):",
            s.tls.len()
        );
        for (name, asset) in &s.tls {
            let _ = writeln!(
                out,
                "  {:<width$} not after {}  certificate {}",
                v(name),
                v(&asset.not_after),
                v(&short(&asset.certificate_sha256))
            );
        }
    }
    if !s.assets.is_empty() {
        let width = s.assets.keys().map(String::len).max().unwrap_or(0);
        let _ = writeln!(out, "\nAssets ({}):", s.assets.len());
        for (path, record) in &s.assets {
            let _ = writeln!(out, "  {:<width$} {}", v(path), v(&short(&record.sha256)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::{AssetKind, AssetRecord, TlsAsset};
    use crate::config::ReleaseChannel;
    use crate::state::{AuditHead, ImageState, RecordState, StackState};

    #[test]
    fn state_text_snapshot() {
        let mut s = State::new("demo", "5b0f6c1e-8d0a-4c57-9a3e-2f6b1d7c9e41".into());
        s.serial = 4;
        s.account_id = Some("123456789012".into());
        s.region = Some("us-west-2".into());
        s.audit_head = Some(AuditHead {
            seq: 9,
            entry_sha256: "ef".repeat(32),
        });
        s.plan_signing = Some(PlanSigning::Key(
            "arn:aws:kms:us-west-2:123456789012:key/plan".into(),
        ));
        let stack = |name: &str, id: Option<&str>| StackState {
            name: name.into(),
            id: id.map(str::to_string),
            template_sha256: "ab".repeat(32),
            parameters: Default::default(),
            tags: Default::default(),
            render_key: None,
        };
        s.stack = Some(stack(
            "demo",
            Some("arn:aws:cloudformation:us-west-2:123456789012:stack/demo/1"),
        ));
        s.pool_stacks
            .insert("gpu".into(), stack("demo-pool-gpu", None));
        s.image = Some(ImageState {
            release_channel: ReleaseChannel::Stable,
            ami_id: "ami-0123456789abcdef0".into(),
        });
        s.records.push(RecordState {
            hosted_zone_id: "Z0123".into(),
            name: "k8s.example.com.\u{1b}[2J\nForged: line".into(),
            record_type: "A".into(),
            ttl: 300,
            values: vec!["10.0.0.50".into()],
        });
        s.tls.insert(
            "ca".into(),
            TlsAsset {
                name: "ca".into(),
                spec_sha256: "cd".repeat(32),
                certificate_pem: "-----BEGIN CERTIFICATE-----".into(),
                certificate_sha256: "1ad956f456ba".repeat(5) + "abcd",
                public_key_pem: None,
                key_ciphertext: "c2VhbGVk".into(),
                not_after: "2036-12-04T00:00:00Z".into(),
            },
        );
        s.assets.insert(
            "stack-template.json".into(),
            AssetRecord {
                kind: AssetKind::StackTemplate,
                sha256: "ab".repeat(32),
            },
        );
        let text = state_text(&s);
        assert!(!text.contains("c2VhbGVk"), "no key ciphertext: {text}");
        assert!(
            !text.contains("\nForged"),
            "a value stays on its line: {text}"
        );
        insta::assert_snapshot!(text);
    }
}
