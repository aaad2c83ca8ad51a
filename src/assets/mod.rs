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

impl AssetKind {
    /// The folder its assets are listed under in plans and the state (`None`: the stack
    /// template, listed by its file name alone).
    fn folder(self) -> Option<&'static str> {
        match self {
            AssetKind::StackTemplate => None,
            AssetKind::CloudConfig => Some("userdata/"),
            AssetKind::Tls => Some("tls/"),
            AssetKind::Record => Some("route53/"),
            AssetKind::Manifest => Some("addons/"),
        }
    }
}

/// Path under which each asset is listed in plans and the state.
pub fn asset_path(kind: AssetKind, name: &str) -> String {
    match kind.folder() {
        None => "stack-template.json".to_string(),
        Some(folder) => format!("{folder}{name}"),
    }
}

/// The name an asset of `kind` is listed under `path` by: [`asset_path`] undone.
pub fn asset_name(kind: AssetKind, path: &str) -> &str {
    kind.folder()
        .and_then(|folder| path.strip_prefix(folder))
        .unwrap_or(path)
}

/// Which instance a cloud-config is for; its asset name says so, and plans, the state and the
/// stack's user data keep that name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloudConfigId {
    Controller,
    /// The etcd member of this index.
    Etcd(usize),
    /// The workers of this node pool.
    Worker(String),
}

impl CloudConfigId {
    const CONTROLLER: &'static str = "cloud-config-controller";
    const ETCD: &'static str = "cloud-config-etcd-";
    /// The default pool's name: the original kube-aws's, kept for clusters made with it.
    const DEFAULT_WORKER: &'static str = "cloud-config-worker";
    const WORKER: &'static str = "cloud-config-worker-";

    pub fn name(&self) -> String {
        match self {
            CloudConfigId::Controller => Self::CONTROLLER.to_string(),
            CloudConfigId::Etcd(index) => format!("{}{index}", Self::ETCD),
            CloudConfigId::Worker(pool) if pool == crate::config::DEFAULT_POOL => {
                Self::DEFAULT_WORKER.to_string()
            }
            CloudConfigId::Worker(pool) => format!("{}{pool}", Self::WORKER),
        }
    }

    /// The id a cloud-config asset name stands for, `None` for a name kube-aws never gives.
    pub fn parse(name: &str) -> Option<CloudConfigId> {
        if name == Self::CONTROLLER {
            Some(CloudConfigId::Controller)
        } else if name == Self::DEFAULT_WORKER {
            Some(CloudConfigId::Worker(
                crate::config::DEFAULT_POOL.to_string(),
            ))
        } else if let Some(index) = name.strip_prefix(Self::ETCD) {
            index.parse().ok().map(CloudConfigId::Etcd)
        } else {
            name.strip_prefix(Self::WORKER)
                .map(|pool| CloudConfigId::Worker(pool.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_config_names_are_the_original_kube_aws_names_and_parse_back() {
        let ids = [
            (CloudConfigId::Controller, "cloud-config-controller"),
            (CloudConfigId::Etcd(2), "cloud-config-etcd-2"),
            (
                CloudConfigId::Worker(crate::config::DEFAULT_POOL.into()),
                "cloud-config-worker",
            ),
            (
                CloudConfigId::Worker("gpu".into()),
                "cloud-config-worker-gpu",
            ),
        ];
        for (id, name) in ids {
            assert_eq!(id.name(), name);
            assert_eq!(CloudConfigId::parse(name), Some(id));
        }
        for other in ["cloud-config-etcd-x", "cloud-config", "stack-template.json"] {
            assert_eq!(CloudConfigId::parse(other), None, "{other}");
        }
        for kind in [AssetKind::CloudConfig, AssetKind::Tls, AssetKind::Manifest] {
            assert_eq!(asset_name(kind, &asset_path(kind, "x-1")), "x-1");
        }
        assert_eq!(asset_path(AssetKind::Tls, "ca"), "tls/ca");
    }
}
