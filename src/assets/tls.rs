//! The cluster PKI: what each certificate must say (its spec) and issuing it with rcgen.
//! Pure: no I/O and no clock; the caller passes `now` and encrypts the keys.

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::config::ClusterConfig;
use crate::hash::{canonical_json, sha256_hex};

/// Name of the cluster CA asset; every other certificate is issued by it.
pub const CA: &str = "ca";

/// Name of the service-account signing key pair: not a TLS certificate, but kept, sealed and
/// reused like one. Its spec depends on nothing a certificate renewal changes.
pub const SERVICE_ACCOUNT: &str = "service-account";

/// Name of the kubelet bootstrap token (`<id>.<secret>`): a sealed secret with no certificate.
/// Nodes present it once to obtain their own client certificate.
pub const BOOTSTRAP_TOKEN: &str = "bootstrap-token";

/// Name of kube-apiserver's EncryptionConfiguration, a sealed secret (it holds the key that
/// encrypts Secrets in etcd), decrypted on the controllers only.
pub const SECRETS_ENCRYPTION: &str = "secrets-encryption";

/// Every sealed asset, CA first, in the order [`leaf_specs`] lists the rest, then the
/// service-account key pair and the bootstrap token.
pub const NAMES: [&str; 12] = [
    CA,
    "apiserver",
    "apiserver-kubelet-client",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-addons",
    "admin",
    "etcd-server",
    "etcd-client",
    SERVICE_ACCOUNT,
    BOOTSTRAP_TOKEN,
    SECRETS_ENCRYPTION,
];

pub fn all_names() -> impl Iterator<Item = &'static str> {
    NAMES.iter().copied()
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Usage {
    CertSign,
    ServerAuth,
    ClientAuth,
}

/// Everything that decides a certificate's content except its random key. Equal specs mean the
/// existing certificate and ciphertext can be reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsSpec {
    pub name: String,
    pub common_name: String,
    pub organization: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<Ipv4Addr>,
    pub usages: Vec<Usage>,
    pub validity_days: u32,
    /// SHA-256 of the issuing CA certificate; `None` for the self-signed CA.
    pub issuer_sha256: Option<String>,
    pub key_algorithm: &'static str,
}

impl TlsSpec {
    pub fn sha256(&self) -> String {
        sha256_hex(canonical_json(self).expect("a spec always serialises"))
    }
}

const KEY_ALGORITHM: &str = "ecdsa-p256-sha256";
/// kube-apiserver signs service-account tokens with this key; RSA as kubeadm's `sa.key`, which
/// every token verifier accepts.
const SERVICE_ACCOUNT_KEY_ALGORITHM: &str = "rsa-2048-sha256";

/// The CA's spec.
pub fn ca_spec(c: &ClusterConfig) -> TlsSpec {
    TlsSpec {
        name: CA.to_string(),
        common_name: "kube-ca".to_string(),
        organization: Some(format!("kube-aws:{}", c.cluster_name)),
        dns_names: vec![],
        ip_addresses: vec![],
        usages: vec![Usage::CertSign],
        validity_days: c.tls_ca_duration_days,
        issuer_sha256: None,
        key_algorithm: KEY_ALGORITHM,
    }
}

/// Specs of every certificate the CA issues, in a fixed order.
pub fn leaf_specs(c: &ClusterConfig, ca_sha256: &str) -> Vec<TlsSpec> {
    let leaf = |name: &str, cn: &str, org: Option<&str>, usages: Vec<Usage>| TlsSpec {
        name: name.to_string(),
        common_name: cn.to_string(),
        organization: org.map(str::to_string),
        dns_names: vec![],
        ip_addresses: vec![],
        usages,
        validity_days: c.tls_cert_duration_days,
        issuer_sha256: Some(ca_sha256.to_string()),
        key_algorithm: KEY_ALGORITHM,
    };
    let mut apiserver = leaf("apiserver", "kube-apiserver", None, vec![Usage::ServerAuth]);
    apiserver.dns_names = vec![
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
        c.external_dns_name.clone(),
        // What nodes and kube-proxy reach the API by (the stack's own record).
        c.api_internal_dns_name(),
    ];
    apiserver.dns_names.push("localhost".into());
    // 127.0.0.1: every kubeconfig on a controller talks to its own apiserver there.
    apiserver.ip_addresses = vec![c.kubernetes_service_ip(), Ipv4Addr::LOCALHOST];

    let mut etcd_server = leaf(
        "etcd-server",
        "kube-etcd",
        None,
        vec![Usage::ServerAuth, Usage::ClientAuth],
    );
    // Members know each other and are reached by their names, which follow them to a new
    // instance; etcd checks a peer's client certificate against these names too.
    etcd_server.dns_names = c.etcd_members().into_iter().map(|m| m.host).collect();
    etcd_server.dns_names.push("localhost".into());
    etcd_server.ip_addresses = vec![Ipv4Addr::LOCALHOST];

    vec![
        apiserver,
        leaf(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
            vec![Usage::ClientAuth],
        ),
        leaf(
            "kube-controller-manager",
            "system:kube-controller-manager",
            None,
            vec![Usage::ClientAuth],
        ),
        leaf(
            "kube-scheduler",
            "system:kube-scheduler",
            None,
            vec![Usage::ClientAuth],
        ),
        // What the controllers apply the add-ons with. system:masters gives no more than the
        // controllers already hold: the CA key that signs node certificates.
        leaf(
            "kube-addons",
            "kube-aws:addon-manager",
            Some("system:masters"),
            vec![Usage::ClientAuth],
        ),
        leaf(
            "admin",
            "kube-admin",
            Some("system:masters"),
            vec![Usage::ClientAuth],
        ),
        etcd_server,
        leaf(
            "etcd-client",
            "kube-etcd-client",
            None,
            vec![Usage::ClientAuth],
        ),
    ]
}

/// The service-account signing key pair's spec. It is self-signed (the certificate only carries
/// the public key) and has no issuer, so a new CA or a certificate renewal never changes it.
pub fn service_account_spec(c: &ClusterConfig) -> TlsSpec {
    TlsSpec {
        name: SERVICE_ACCOUNT.to_string(),
        common_name: "service-accounts".to_string(),
        organization: Some(format!("kube-aws:{}", c.cluster_name)),
        dns_names: vec![],
        ip_addresses: vec![],
        usages: vec![],
        // Nothing checks this certificate's validity; a fixed value keeps the key independent
        // of every certificate setting.
        validity_days: 3650,
        issuer_sha256: None,
        key_algorithm: SERVICE_ACCOUNT_KEY_ALGORITHM,
    }
}

/// Whether the asset is renewed when it nears its `not_after`. Keys that something was signed or
/// encrypted with are not: the service-account key (a new one voids every token), the bootstrap
/// token (nodes still joining hold it) and the Secrets encryption key (etcd holds its data).
pub fn renews_on_expiry(name: &str) -> bool {
    ![SERVICE_ACCOUNT, BOOTSTRAP_TOKEN, SECRETS_ENCRYPTION].contains(&name)
}

const BOOTSTRAP_TOKEN_FORMAT: &str = "kubernetes-bootstrap-token-v1";
const SECRETS_ENCRYPTION_FORMAT: &str = "encryption-configuration-secretbox-v1";

/// The spec of a sealed secret: nothing of the cluster's settings changes it, so it is made
/// once and kept.
fn sealed_secret_spec(c: &ClusterConfig, name: &str, format: &'static str) -> TlsSpec {
    TlsSpec {
        name: name.to_string(),
        common_name: String::new(),
        organization: Some(format!("kube-aws:{}", c.cluster_name)),
        dns_names: vec![],
        ip_addresses: vec![],
        usages: vec![],
        validity_days: 0,
        issuer_sha256: None,
        key_algorithm: format,
    }
}

/// The bootstrap token's spec.
pub fn bootstrap_token_spec(c: &ClusterConfig) -> TlsSpec {
    sealed_secret_spec(c, BOOTSTRAP_TOKEN, BOOTSTRAP_TOKEN_FORMAT)
}

/// The Secrets encryption configuration's spec.
pub fn secrets_encryption_spec(c: &ClusterConfig) -> TlsSpec {
    sealed_secret_spec(c, SECRETS_ENCRYPTION, SECRETS_ENCRYPTION_FORMAT)
}

/// Whether `spec` is a sealed secret (no certificate) rather than a key pair.
pub fn is_sealed_secret(spec: &TlsSpec) -> bool {
    [BOOTSTRAP_TOKEN_FORMAT, SECRETS_ENCRYPTION_FORMAT].contains(&spec.key_algorithm)
}

/// The plaintext of a new sealed secret of `spec`'s kind.
pub fn generate_sealed_secret(spec: &TlsSpec) -> Result<Zeroizing<String>, getrandom::Error> {
    if spec.key_algorithm == SECRETS_ENCRYPTION_FORMAT {
        generate_encryption_configuration()
    } else {
        generate_bootstrap_token()
    }
}

/// kube-apiserver's EncryptionConfiguration with a new random 32-byte secretbox key for Secrets.
/// `identity` comes second so Secrets written before encryption was enabled stay readable; each
/// is encrypted the next time it is written.
pub fn generate_encryption_configuration() -> Result<Zeroizing<String>, getrandom::Error> {
    Ok(encryption_configuration(&[(1, new_secretbox_key()?)]))
}

/// A random 32-byte secretbox key, base64-encoded.
fn new_secretbox_key() -> Result<Zeroizing<String>, getrandom::Error> {
    use base64::Engine;
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut key[..])?;
    Ok(Zeroizing::new(
        base64::engine::general_purpose::STANDARD.encode(&key[..]),
    ))
}

/// The configuration with these secretbox keys (`keyN`, secret), the first one encrypting.
fn encryption_configuration(keys: &[(u32, Zeroizing<String>)]) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::from(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      - secrets\n    providers:\n      - secretbox:\n          keys:\n",
    ));
    for (number, secret) in keys {
        text.push_str(&format!(
            "            - name: key{number}\n              secret: {}\n",
            secret.as_str()
        ));
    }
    text.push_str("      - identity: {}\n");
    text
}

/// One step of rotating the key that encrypts Secrets; each is its own plan and apply, so
/// every API server can read a key before any writes with it, and drops one only after the
/// Secrets were rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStep {
    /// A new key is added for reading only (`[current, new]`).
    AddNewKey,
    /// The new key encrypts, the old one still reads, and the controllers rewrite every Secret
    /// with the new key as they start (`[new, old]`).
    EncryptWithNewKey,
    /// The old key is removed (`[new]`).
    RemoveOldKey,
}

impl RotationStep {
    /// What the step does, for plan.
    pub fn describe(self) -> &'static str {
        match self {
            RotationStep::AddNewKey => {
                "Secrets key rotation, step 1 of 3: a new key is added, for reading only; apply, then plan --rotate-secrets-key again"
            }
            RotationStep::EncryptWithNewKey => {
                "Secrets key rotation, step 2 of 3: the new key encrypts and the controllers rewrite every Secret with it; the old key still reads; apply, then plan --rotate-secrets-key again"
            }
            RotationStep::RemoveOldKey => {
                "Secrets key rotation, step 3 of 3: the old key is removed (every Secret was rewritten in step 2)"
            }
        }
    }
}

/// The next rotation step from the configuration `current`, and the configuration after it.
/// The plaintext comes from KMS and goes back to it; it is never written anywhere else.
pub fn rotate_encryption_configuration(
    current: &str,
) -> Result<(RotationStep, Zeroizing<String>), String> {
    let doc: serde_json::Value = serde_norway::from_str(current)
        .map_err(|e| format!("the Secrets encryption configuration does not parse: {e}"))?;
    let keys = doc["resources"][0]["providers"][0]["secretbox"]["keys"]
        .as_array()
        .ok_or("the Secrets encryption configuration has no secretbox keys")?;
    let mut parsed = Vec::new();
    for key in keys {
        let number = key["name"]
            .as_str()
            .and_then(|n| n.strip_prefix("key"))
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or("a secretbox key is not named keyN")?;
        let secret = key["secret"]
            .as_str()
            .ok_or("a secretbox key has no secret")?;
        parsed.push((number, Zeroizing::new(secret.to_string())));
    }
    let random = |e: getrandom::Error| format!("the operating system's random source failed: {e}");
    match parsed.as_slice() {
        [(n, current)] => Ok((
            RotationStep::AddNewKey,
            encryption_configuration(&[
                (*n, current.clone()),
                (
                    n.checked_add(1).ok_or_else(|| {
                        format!("the Secrets key is named key{n}, the last number there is")
                    })?,
                    new_secretbox_key().map_err(random)?,
                ),
            ]),
        )),
        [(old, old_secret), (new, new_secret)] if new > old => Ok((
            RotationStep::EncryptWithNewKey,
            encryption_configuration(&[(*new, new_secret.clone()), (*old, old_secret.clone())]),
        )),
        [(new, new_secret), (old, _)] if new > old => Ok((
            RotationStep::RemoveOldKey,
            encryption_configuration(&[(*new, new_secret.clone())]),
        )),
        _ => Err(format!(
            "the Secrets encryption configuration has {} keys in an order no rotation step leaves",
            parsed.len()
        )),
    }
}

/// A new bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}` as kube-apiserver's bootstrap token
/// authenticator requires, from the operating system's random source.
pub fn generate_bootstrap_token() -> Result<Zeroizing<String>, getrandom::Error> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = Zeroizing::new(String::with_capacity(23));
    let mut buf = Zeroizing::new([0u8; 64]);
    while out.len() < 23 {
        getrandom::fill(&mut buf[..])?;
        // Rejection sampling: 252 = 7 * 36, so every kept byte maps to a character uniformly.
        for &b in buf.iter().filter(|&&b| b < 252) {
            if out.len() == 6 {
                out.push('.');
            }
            if out.len() == 23 {
                break;
            }
            out.push(ALPHABET[usize::from(b % 36)] as char);
        }
    }
    Ok(out)
}

/// A freshly issued certificate with its plaintext key, which lives only in memory.
pub struct Issued {
    pub certificate_pem: String,
    /// The public key as a PKIX "PUBLIC KEY" PEM.
    pub public_key_pem: String,
    pub certificate_sha256: String,
    pub key_pem: Zeroizing<String>,
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("certificate_sha256", &self.certificate_sha256)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot issue certificate {name}: {source}")]
    Issue { name: String, source: rcgen::Error },
    #[error("the CA private key could not be loaded: {0}")]
    CaKey(rcgen::Error),
}

/// The CA, ready to sign: its spec-derived parameters and its decrypted key.
pub struct CaSigner {
    issuer: Issuer<'static, KeyPair>,
}

impl CaSigner {
    /// Rebuilds the signer from the CA spec and the CA's PEM key. The issuer name comes from
    /// the spec, which is exactly what the CA certificate was issued with.
    pub fn new(ca: &TlsSpec, key_pem: &str) -> Result<CaSigner, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(TlsError::CaKey)?;
        let params = params_for(ca, OffsetDateTime::UNIX_EPOCH);
        Ok(CaSigner {
            issuer: Issuer::new(params, key),
        })
    }
}

fn params_for(spec: &TlsSpec, now: OffsetDateTime) -> CertificateParams {
    // X.509 times have whole seconds; so does the state's not_after.
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, spec.common_name.as_str());
    if let Some(org) = &spec.organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org.as_str());
    }
    for dns in &spec.dns_names {
        if let Ok(name) = dns.as_str().try_into() {
            params.subject_alt_names.push(SanType::DnsName(name));
        }
    }
    for ip in &spec.ip_addresses {
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(*ip)));
    }
    // Backdate a little so nodes with a slightly slow clock accept a brand-new certificate.
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(spec.validity_days));
    for usage in &spec.usages {
        match usage {
            Usage::CertSign => {
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
            }
            Usage::ServerAuth => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth),
            Usage::ClientAuth => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth),
        }
    }
    if !params.extended_key_usages.is_empty() {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
    }
    params
}

/// Issues a certificate for `spec` with a new key: self-signed when `ca` is `None`.
pub fn issue(
    spec: &TlsSpec,
    ca: Option<&CaSigner>,
    now: OffsetDateTime,
) -> Result<Issued, TlsError> {
    let fail = |source| TlsError::Issue {
        name: spec.name.clone(),
        source,
    };
    let algorithm = if spec.key_algorithm == SERVICE_ACCOUNT_KEY_ALGORITHM {
        &rcgen::PKCS_RSA_SHA256
    } else {
        &rcgen::PKCS_ECDSA_P256_SHA256
    };
    let key = KeyPair::generate_for(algorithm).map_err(fail)?;
    let params = params_for(spec, now);
    let not_after = params.not_after;
    let certificate = match ca {
        Some(ca) => params.signed_by(&key, &ca.issuer),
        None => params.self_signed(&key),
    }
    .map_err(fail)?;
    Ok(Issued {
        certificate_pem: certificate.pem(),
        public_key_pem: key.public_key_pem(),
        certificate_sha256: sha256_hex(certificate.der()),
        key_pem: Zeroizing::new(key.serialize_pem()),
        not_after,
    })
}

mod changes;
pub use changes::spec_changes;

#[cfg(test)]
mod tests;
