//! Which KMS key must sign a cluster's plans, and the check of a plan's signature that plan,
//! apply and the reuse of an interrupted apply's certificates share.

use super::EngineError;
use crate::config::ClusterConfig;
use crate::planfile::Plan;

/// The key that must sign a plan for this cluster: cluster.yaml's, except when the state
/// records another one: then that recorded key, so that a change to cluster.yaml alone can
/// never switch signing off or over to a key of its own.
pub(super) fn signing_key_for(
    config: &ClusterConfig,
    recorded: Option<&crate::state::PlanSigning>,
) -> Option<String> {
    match recorded {
        Some(crate::state::PlanSigning::Key(recorded))
            if config.plan_signing_key_arn.as_ref() != Some(recorded) =>
        {
            Some(recorded.clone())
        }
        _ => config.plan_signing_key_arn.clone(),
    }
}

/// Refuses a plan that the key [`signing_key_for`] names did not sign as it stands. The key
/// comes from cluster.yaml and the state, never from the plan, so a plan re-signed with
/// another key is refused too.
pub(super) async fn verify_signature(
    config: &ClusterConfig,
    plan: &Plan,
    kms: &crate::aws::kms::KmsVault,
    prior: Option<&crate::state::State>,
) -> Result<(), EngineError> {
    use base64::Engine;
    let Some(key) = signing_key_for(config, prior.and_then(|s| s.plan_signing.as_ref())) else {
        return if config.unsigned_plans {
            Ok(())
        } else {
            Err(EngineError::SigningKeyRequired)
        };
    };
    // While the plan moves signing away from the recorded key, only that key vouches for it.
    let changing = config.plan_signing_key_arn.as_ref() != Some(&key);
    let other_key = |signed_with: Option<&str>| match changing {
        true => EngineError::SigningChangeNotSignedByRecordedKey {
            change: match crate::state::PlanSigning::configured(config) {
                Some(to) => format!("{} → {to}", crate::state::PlanSigning::Key(key.clone())),
                None => format!(
                    "{} → neither a key nor unsignedPlans",
                    crate::state::PlanSigning::Key(key.clone())
                ),
            },
            key: key.clone(),
        },
        false => match signed_with {
            None => EngineError::Unsigned { key: key.clone() },
            Some(other) => EngineError::SignedWithOtherKey {
                signed_with: other.to_string(),
                key: key.clone(),
            },
        },
    };
    let Some(signature) = &plan.signature else {
        return Err(other_key(None));
    };
    if signature.key_arn != key {
        return Err(other_key(Some(&signature.key_arn)));
    }
    let value = base64::engine::general_purpose::STANDARD
        .decode(&signature.value)
        .map_err(|e| EngineError::SignatureNotBase64(e.to_string()))?;
    let digest = plan.digest().ok_or(EngineError::DigestNotSha256)?;
    if !kms.verify_digest(&key, &digest, &value).await? {
        return Err(EngineError::BadSignature { key });
    }
    Ok(())
}
