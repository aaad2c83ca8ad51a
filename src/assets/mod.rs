//! The things a plan renders and the state remembers: every asset has a path and a SHA-256
//! content hash; TLS assets also keep their public certificate and KMS-encrypted key.

pub mod tls;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What kind of thing an asset is; decides how plan shows its diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssetKind {
    StackTemplate,
    CloudConfig,
    Tls,
    Record,
    /// An add-on manifest the controllers fetch from the artifact bucket.
    Manifest,
}

/// One rendered asset: its identity and content hash. For TLS assets the hash is the spec hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetRecord {
    pub kind: AssetKind,
    pub sha256: String,
}

/// A certificate and its key as the state keeps them: never a plaintext private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsAsset {
    pub name: String,
    /// Hash of the [`tls::TlsSpec`] this certificate was issued for.
    pub spec_sha256: String,
    pub certificate_pem: String,
    /// SHA-256 of the certificate's DER: leaves name their issuer by it.
    pub certificate_sha256: String,
    /// The public key as a PKIX PEM, for assets whose consumer wants the bare public key (the
    /// service-account key pair). Absent in states written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    /// Base64 of the KMS ciphertext blob of the PKCS#8 private key.
    pub key_ciphertext: String,
    /// RFC 3339, UTC.
    pub not_after: String,
}

/// TLS assets by name.
pub type TlsAssets = BTreeMap<String, TlsAsset>;

/// The KMS encryption context that binds a key ciphertext to its cluster and asset; instances
/// must present the same context to decrypt.
pub fn encryption_context(cluster_name: &str, asset: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kube-aws:cluster".to_string(), cluster_name.to_string()),
        ("kube-aws:asset".to_string(), asset.to_string()),
    ])
}

/// Path under which each asset is listed in plans and the state.
pub fn asset_path(kind: AssetKind, name: &str) -> String {
    match kind {
        AssetKind::StackTemplate => "stack-template.json".to_string(),
        AssetKind::CloudConfig => format!("userdata/{name}"),
        AssetKind::Tls => format!("tls/{name}"),
        AssetKind::Record => format!("route53/{name}"),
        AssetKind::Manifest => format!("addons/{name}"),
    }
}
