//! Each certificate as the plan lists it: kept, issued or renewed, and why in words.

use super::*;

pub(super) fn describe_reason(name: &str, reason: &IssueReason) -> String {
    if name == BOOTSTRAP_TOKEN {
        return match reason {
            IssueReason::New => "new kubelet bootstrap token".into(),
            _ => "the bootstrap token is replaced: nodes that have not joined yet need the new one"
                .into(),
        };
    }
    if let IssueReason::Rotated(step) = reason {
        return step.describe().into();
    }
    if name == SECRETS_ENCRYPTION {
        return match reason {
            IssueReason::New => {
                "new key that encrypts Secrets in etcd (secretbox), kept from now on".into()
            }
            _ => "the Secrets encryption key is replaced: Secrets written with the old key can no longer be read".into(),
        };
    }
    if name == SERVICE_ACCOUNT {
        return match reason {
            IssueReason::New => {
                "new service-account signing key pair, kept across certificate renewals".into()
            }
            _ => "the service-account key pair is replaced: every service-account token signed so far stops working".into(),
        };
    }
    match reason {
        IssueReason::New => "new certificate".into(),
        IssueReason::SpecChanged(changes) if !changes.is_empty() => {
            format!("its spec changed: {}", changes.join("; "))
        }
        IssueReason::SpecChanged(_) => {
            "its spec changed (issuer or key algorithm: what the old certificate does not show)"
                .into()
        }
        IssueReason::Expiring { not_after } => {
            format!("expires {not_after}, within the renewal window")
        }
        IssueReason::Rotated(step) => step.describe().into(),
    }
}

/// What the plan does to each certificate and key, and why. `shipped_by` names the
/// interrupted apply whose kept assets are not in the state yet.
pub fn certificates(
    tls: &TlsAssets,
    issued: &[(String, IssueReason)],
    prior: Option<&State>,
    shipped_by: Option<&str>,
) -> Vec<Certificate> {
    let reasons: BTreeMap<&str, &IssueReason> =
        issued.iter().map(|(n, r)| (n.as_str(), r)).collect();
    tls.values()
        .map(|a| Certificate {
            name: a.name.clone(),
            not_after: if a.name == BOOTSTRAP_TOKEN {
                "never (rotated only when its spec changes)".into()
            } else if a.name == SECRETS_ENCRYPTION {
                "never (rotated by plan --rotate-secrets-key)".into()
            } else if a.not_after.is_empty() {
                KNOWN_AFTER_APPLY.into()
            } else {
                a.not_after.clone()
            },
            action: match reasons.get(a.name.as_str()) {
                Some(IssueReason::Rotated(_)) => CertificateAction::Rotate,
                Some(_) => CertificateAction::Issue,
                None => CertificateAction::Keep,
            },
            reason: match reasons.get(a.name.as_str()) {
                Some(r) => Some(describe_reason(&a.name, r)),
                // Not in the state, yet kept: the interrupted apply's.
                None if prior.and_then(|s| s.tls.get(&a.name)) != Some(a) => {
                    shipped_by.map(str::to_string)
                }
                None => None,
            },
        })
        .collect()
}
