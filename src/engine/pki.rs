//! Brings the cluster's TLS assets up to date: reuses every certificate whose spec is unchanged
//! and not near expiry, issues the rest, and encrypts each new key with KMS before it leaves
//! this function. A no-op run makes no KMS call.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use super::EngineError;
use crate::assets::tls::{self, CaSigner, Issued, TlsSpec};
use crate::assets::{TlsAsset, TlsAssets, encryption_context};
use crate::aws::kms::KeyVault;
use crate::config::ClusterConfig;

/// Why a certificate is (re)issued; plan shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueReason {
    New,
    /// What differs, as the old certificate shows it (empty when it shows nothing).
    SpecChanged(Vec<String>),
    Expiring {
        not_after: String,
    },
    /// `plan --rotate-secrets-key` moved the Secrets encryption key one step on.
    Rotated(tls::RotationStep),
}

/// The TLS assets after resolution, and which were issued now (and why).
#[derive(Debug, Clone)]
pub struct ResolvedTls {
    pub assets: TlsAssets,
    pub issued: Vec<(String, IssueReason)>,
}

fn reusable(
    previous: Option<&TlsAsset>,
    spec: &TlsSpec,
    now: OffsetDateTime,
    renew_before: Duration,
) -> Result<(), IssueReason> {
    let Some(asset) = previous else {
        return Err(IssueReason::New);
    };
    if asset.spec_sha256 != spec.sha256() {
        return Err(IssueReason::SpecChanged(tls::spec_changes(
            &asset.certificate_pem,
            spec,
        )));
    }
    if !tls::renews_on_expiry(&spec.name) {
        return Ok(());
    }
    match OffsetDateTime::parse(&asset.not_after, &Rfc3339) {
        Ok(not_after) if not_after - renew_before > now => Ok(()),
        _ => Err(IssueReason::Expiring {
            not_after: asset.not_after.clone(),
        }),
    }
}

async fn seal<V: KeyVault>(
    vault: &V,
    config: &ClusterConfig,
    spec: &TlsSpec,
    issued: &Issued,
) -> Result<TlsAsset, EngineError> {
    let context = encryption_context(&config.cluster_name, &spec.name);
    let ciphertext = vault
        .encrypt(&config.kms_key_arn, issued.key_pem.as_bytes(), &context)
        .await?;
    Ok(TlsAsset {
        name: spec.name.clone(),
        spec_sha256: spec.sha256(),
        certificate_pem: issued.certificate_pem.clone(),
        public_key_pem: (spec.name == tls::SERVICE_ACCOUNT).then(|| issued.public_key_pem.clone()),
        certificate_sha256: issued.certificate_sha256.clone(),
        key_ciphertext: BASE64.encode(ciphertext),
        not_after: issued
            .not_after
            .format(&Rfc3339)
            .expect("an OffsetDateTime formats as RFC 3339"),
    })
}

/// Generates a sealed secret (bootstrap token, Secrets encryption configuration) and seals it;
/// it has no certificate and no expiry.
async fn seal_secret<V: KeyVault>(
    vault: &V,
    config: &ClusterConfig,
    spec: &TlsSpec,
) -> Result<TlsAsset, EngineError> {
    let plaintext =
        tls::generate_sealed_secret(spec).map_err(|e| EngineError::NoRandomness(e.to_string()))?;
    let context = encryption_context(&config.cluster_name, &spec.name);
    let ciphertext = vault
        .encrypt(&config.kms_key_arn, plaintext.as_bytes(), &context)
        .await?;
    Ok(TlsAsset {
        name: spec.name.clone(),
        spec_sha256: spec.sha256(),
        certificate_pem: String::new(),
        public_key_pem: None,
        certificate_sha256: String::new(),
        key_ciphertext: BASE64.encode(ciphertext),
        not_after: String::new(),
    })
}

/// Stands in for a certificate an offline plan would issue: it renders, and is plainly not real.
fn placeholder(spec: &TlsSpec) -> TlsAsset {
    if tls::is_sealed_secret(spec) {
        return TlsAsset {
            name: spec.name.clone(),
            spec_sha256: spec.sha256(),
            certificate_pem: String::new(),
            public_key_pem: None,
            certificate_sha256: String::new(),
            key_ciphertext: BASE64.encode("(sealed when planned online)"),
            not_after: String::new(),
        };
    }
    TlsAsset {
        name: spec.name.clone(),
        spec_sha256: spec.sha256(),
        certificate_pem: format!(
            "-----BEGIN CERTIFICATE-----\n(issued when planned online: {})\n-----END CERTIFICATE-----\n",
            spec.name
        ),
        public_key_pem: (spec.name == tls::SERVICE_ACCOUNT).then(|| {
            format!(
                "-----BEGIN PUBLIC KEY-----\n(generated when planned online: {})\n-----END PUBLIC KEY-----\n",
                spec.name
            )
        }),
        certificate_sha256: String::new(),
        // Base64 of "(sealed when planned online)": renders like a real ciphertext would.
        key_ciphertext: BASE64.encode("(sealed when planned online)"),
        not_after: String::new(),
    }
}

/// Resolves every TLS asset against `previous`. Without a vault (offline) nothing is issued:
/// what would be issued is reported and stands in as a placeholder.
pub async fn resolve<V: KeyVault>(
    config: &ClusterConfig,
    previous: &TlsAssets,
    vault: Option<&V>,
    now: OffsetDateTime,
    renew_before: Duration,
) -> Result<ResolvedTls, EngineError> {
    let mut assets = TlsAssets::new();
    let mut issued_now = Vec::new();

    let ca_spec = tls::ca_spec(config);
    // The CA's plaintext key is only needed when a leaf must be signed; it is decrypted lazily
    // (or kept from issuing) and dropped, zeroised, at the end of this function.
    let mut ca_key: Option<Zeroizing<String>> = None;
    let ca = match reusable(previous.get(tls::CA), &ca_spec, now, renew_before) {
        Ok(()) => previous[tls::CA].clone(),
        Err(IssueReason::SpecChanged(_)) => {
            return Err(EngineError::CaReissueRefused {
                why: "the cluster CA's settings in cluster.yaml (tlsCADurationDays) changed since it was issued".into(),
                hint: "Set tlsCADurationDays back to the value the cluster was created with.".into(),
            });
        }
        Err(IssueReason::Expiring { not_after }) => {
            return Err(EngineError::CaReissueRefused {
                why: format!(
                    "the cluster CA expires at {not_after}, within --renew-before {} days",
                    renew_before.whole_days()
                ),
                hint: "To renew the other certificates only, pass a --renew-before that ends before the CA's expiry.".into(),
            });
        }
        Err(reason) if vault.is_none() => {
            issued_now.push((tls::CA.to_string(), reason));
            placeholder(&ca_spec)
        }
        Err(reason) => {
            let vault = vault.expect("checked above");
            let issued = tls::issue(&ca_spec, None, now)?;
            let asset = seal(vault, config, &ca_spec, &issued).await?;
            ca_key = Some(issued.key_pem.clone());
            issued_now.push((tls::CA.to_string(), reason));
            asset
        }
    };
    let mut signer: Option<CaSigner> = None;
    for spec in tls::leaf_specs(config, &ca.certificate_sha256) {
        match reusable(previous.get(&spec.name), &spec, now, renew_before) {
            Ok(()) => {
                assets.insert(spec.name.clone(), previous[&spec.name].clone());
            }
            Err(reason) => {
                let Some(vault) = vault else {
                    assets.insert(spec.name.clone(), placeholder(&spec));
                    issued_now.push((spec.name.clone(), reason));
                    continue;
                };
                if signer.is_none() {
                    let key = match ca_key.take() {
                        Some(key) => key,
                        None => decrypt_ca_key(vault, config, &ca).await?,
                    };
                    signer = Some(CaSigner::new(&ca_spec, &key)?);
                }
                let issued = tls::issue(&spec, signer.as_ref(), now)?;
                assets.insert(
                    spec.name.clone(),
                    seal(vault, config, &spec, &issued).await?,
                );
                issued_now.push((spec.name.clone(), reason));
            }
        }
    }
    // The service-account key pair is self-signed: it never needs the CA key.
    let sa_spec = tls::service_account_spec(config);
    let sa = match reusable(
        previous.get(tls::SERVICE_ACCOUNT),
        &sa_spec,
        now,
        renew_before,
    ) {
        Ok(()) => previous[tls::SERVICE_ACCOUNT].clone(),
        Err(reason) => {
            issued_now.push((tls::SERVICE_ACCOUNT.to_string(), reason));
            match vault {
                None => placeholder(&sa_spec),
                Some(vault) => {
                    let issued = tls::issue(&sa_spec, None, now)?;
                    seal(vault, config, &sa_spec, &issued).await?
                }
            }
        }
    };
    assets.insert(tls::SERVICE_ACCOUNT.to_string(), sa);
    for spec in [
        tls::bootstrap_token_spec(config),
        tls::secrets_encryption_spec(config),
    ] {
        let sealed = match reusable(previous.get(&spec.name), &spec, now, renew_before) {
            Ok(()) => previous[&spec.name].clone(),
            Err(reason) => {
                issued_now.push((spec.name.clone(), reason));
                match vault {
                    None => placeholder(&spec),
                    Some(vault) => seal_secret(vault, config, &spec).await?,
                }
            }
        };
        assets.insert(spec.name.clone(), sealed);
    }
    assets.insert(tls::CA.to_string(), ca);
    Ok(ResolvedTls {
        assets,
        issued: issued_now,
    })
}

/// Moves the Secrets encryption configuration one rotation step on: decrypts it (the plan
/// role may, with this asset's context only), adds, promotes or removes a key, and seals the
/// result before it leaves this function.
pub async fn rotate_secrets_key<V: KeyVault>(
    config: &ClusterConfig,
    tls_assets: &mut ResolvedTls,
    vault: &V,
) -> Result<tls::RotationStep, EngineError> {
    let name = tls::SECRETS_ENCRYPTION;
    if tls_assets.issued.iter().any(|(issued, _)| issued == name) {
        return Err(EngineError::NothingToRotate);
    }
    let current = tls_assets
        .assets
        .get(name)
        .ok_or(EngineError::NoSecretsKey)?;
    let ciphertext = sealed_key(current, "state's Secrets encryption")?;
    let context = encryption_context(&config.cluster_name, name);
    let plaintext = vault
        .decrypt(&config.kms_key_arn, &ciphertext, &context)
        .await?;
    let text = Zeroizing::new(String::from_utf8(plaintext.to_vec()).map_err(|_| {
        EngineError::DecryptedNotText {
            what: "Secrets encryption configuration",
            expected: "text",
        }
    })?);
    let (step, next) =
        tls::rotate_encryption_configuration(&text).map_err(EngineError::Rotation)?;
    let sealed = vault
        .encrypt(&config.kms_key_arn, next.as_bytes(), &context)
        .await?;
    let rotated = TlsAsset {
        key_ciphertext: BASE64.encode(sealed),
        ..current.clone()
    };
    tls_assets.assets.insert(name.to_string(), rotated);
    tls_assets
        .issued
        .push((name.to_string(), IssueReason::Rotated(step)));
    Ok(step)
}

/// The KMS ciphertext blob of an asset's private key, as the state keeps it in base64.
pub(crate) fn sealed_key(asset: &TlsAsset, what: &'static str) -> Result<Vec<u8>, EngineError> {
    BASE64
        .decode(&asset.key_ciphertext)
        .map_err(|e| EngineError::CiphertextNotBase64 {
            what,
            reason: e.to_string(),
        })
}

async fn decrypt_ca_key<V: KeyVault>(
    vault: &V,
    config: &ClusterConfig,
    ca: &TlsAsset,
) -> Result<Zeroizing<String>, EngineError> {
    let ciphertext = sealed_key(ca, "state's CA key")?;
    let plaintext = vault
        .decrypt(
            &config.kms_key_arn,
            &ciphertext,
            &encryption_context(&config.cluster_name, tls::CA),
        )
        .await?;
    let text =
        String::from_utf8(plaintext.to_vec()).map_err(|_| EngineError::DecryptedNotText {
            what: "CA key",
            expected: "PEM text",
        })?;
    Ok(Zeroizing::new(text))
}
