//! The Kubernetes releases kube-aws deploys (`data/kubernetes-releases.json`): the supported
//! minors with their end of life, pinned patches and images. `config` checks a version
//! against it and `render` reads the images; it depends on neither.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Kubernetes version used when `kubernetesVersion` is not set: the newest minor with at least
/// six months of upstream support left (see `data/kubernetes-releases.json`).
pub const DEFAULT_KUBERNETES_VERSION: &str = "v1.37.1";

/// The Kubernetes releases the templates are written for, their end of life and pinned images.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Releases {
    pub default: String,
    pub minors: Vec<MinorRelease>,
    pub etcd: EtcdRelease,
    pub awscli: String,
    pub addons: AddonImages,
}

/// Images of the add-ons the control plane applies, and the CNI plugins release every node
/// installs.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddonImages {
    pub coredns: String,
    pub flannel: String,
    pub flannel_cni_plugin: String,
    pub cni_plugins: String,
    pub ebs_csi_driver: String,
    pub csi_provisioner: String,
    pub csi_attacher: String,
    pub csi_resizer: String,
    pub liveness_probe: String,
    pub node_driver_registrar: String,
    pub node_termination_handler: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MinorRelease {
    pub minor: u32,
    /// Upstream end of maintenance, `YYYY-MM-DD`.
    pub end_of_life: String,
    pub patch: String,
    /// The AWS cloud controller manager of this minor's release line.
    pub cloud_controller_manager: String,
    /// The cluster-autoscaler of this minor's release line.
    pub cluster_autoscaler: String,
    /// Image digests of `patch`, by image name, where a published one was found.
    pub digests: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct EtcdRelease {
    pub version: String,
    pub image: String,
}

/// `data/kubernetes-releases.json`, parsed once.
pub fn releases() -> &'static Releases {
    static RELEASES: std::sync::LazyLock<Releases> = std::sync::LazyLock::new(|| {
        serde_json::from_str(include_str!("../data/kubernetes-releases.json"))
            .expect("data/kubernetes-releases.json is checked by a unit test")
    });
    &RELEASES
}

/// Checks `version` is `vMAJOR.MINOR.PATCH` with a minor the templates support.
pub fn check_kubernetes_version(version: &str) -> Result<(), String> {
    let minor = parse_minor(version).ok_or_else(|| {
        format!("\"{version}\" is not a Kubernetes version like {DEFAULT_KUBERNETES_VERSION}")
    })?;
    let canonical = version
        .strip_prefix('v')
        .is_some_and(|rest| rest.split('.').all(|n| n == "0" || !n.starts_with('0')));
    if !canonical {
        return Err(format!(
            "\"{version}\" is not written as Kubernetes writes its versions (no leading zeros), like {DEFAULT_KUBERNETES_VERSION}"
        ));
    }
    if let Some(release) = minor_release(minor)
        && parse_version(version).map(|(_, patch)| patch)
            > parse_version(&release.patch).map(|(_, patch)| patch)
    {
        return Err(format!(
            "Kubernetes {version} is newer than the newest 1.{minor} patch kube-aws knows ({}): its checksums and images are not in data/kubernetes-releases.json",
            release.patch
        ));
    }
    if minor_release(minor).is_none() {
        let supported: Vec<String> = releases()
            .minors
            .iter()
            .map(|m| format!("v1.{} (until {})", m.minor, m.end_of_life))
            .collect();
        return Err(format!(
            "Kubernetes {version} is not a supported release (supported: {}); the default is {DEFAULT_KUBERNETES_VERSION}",
            supported.join(", ")
        ));
    }
    Ok(())
}

/// The end of life (`YYYY-MM-DD`) of `version`'s minor, if it is one the templates support.
pub fn end_of_life(version: &str) -> Option<&'static str> {
    parse_minor(version)
        .and_then(minor_release)
        .map(|m| m.end_of_life.as_str())
}

fn minor_release(minor: u32) -> Option<&'static MinorRelease> {
    releases().minors.iter().find(|m| m.minor == minor)
}

/// The minor and patch of `v1.MINOR.PATCH`.
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let rest = version.strip_prefix('v')?;
    let mut parts = rest.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    let patch: u32 = parts.next()?.parse().ok()?;
    (major == 1 && parts.next().is_none()).then_some((minor, patch))
}

pub(crate) fn parse_minor(version: &str) -> Option<u32> {
    parse_version(version).map(|(minor, _)| minor)
}

/// What changing a running cluster's Kubernetes version from one release to another is, for
/// the version skew policy (kubernetes.io/releases/version-skew-policy: the API servers first,
/// one minor at a time; kubelets never newer than the API servers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionMove {
    Unchanged,
    /// Within a minor, either way.
    Patch,
    /// One minor up: the control plane first, then the nodes.
    NextMinor {
        from: u32,
        to: u32,
    },
}

/// Whether a cluster running `deployed` may move to `desired` in one plan: refused when it
/// skips a minor or goes back one, saying what to do instead.
pub fn version_move(deployed: &str, desired: &str) -> Result<VersionMove, String> {
    let (Some((from, _)), Some((to, _))) = (parse_version(deployed), parse_version(desired)) else {
        return Ok(VersionMove::Unchanged);
    };
    if deployed == desired {
        return Ok(VersionMove::Unchanged);
    }
    match to.checked_sub(from) {
        Some(0) => Ok(VersionMove::Patch),
        Some(1) => Ok(VersionMove::NextMinor { from, to }),
        Some(skipped) => {
            let steps: Vec<String> = (from + 1..=to)
                .map(|minor| {
                    minor_release(minor).map_or(format!("v1.{minor}"), |m| m.patch.clone())
                })
                .collect();
            Err(format!(
                "{desired} is {skipped} minors after the running {deployed}; Kubernetes upgrades one minor at a time (the API servers may skip none, and kubelets may not be newer than them): plan and apply {} in turn",
                steps.join(", then ")
            ))
        }
        None => Err(format!(
            "{desired} is an older minor than the running {deployed}; Kubernetes does not go back a minor (etcd may hold objects only the newer API servers can read): keep v1.{from} or a later one"
        )),
    }
}

/// Container images and downloads for a Kubernetes version.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Images {
    pub apiserver: String,
    pub controller_manager: String,
    pub scheduler: String,
    pub proxy: String,
    pub etcd: String,
    pub etcd_version: String,
    pub awscli: String,
    pub coredns: String,
    pub flannel: String,
    pub flannel_cni_plugin: String,
    pub cloud_controller_manager: String,
    pub cluster_autoscaler: String,
    pub ebs_csi_driver: String,
    pub csi_provisioner: String,
    pub csi_attacher: String,
    pub csi_resizer: String,
    pub liveness_probe: String,
    pub node_driver_registrar: String,
    pub node_termination_handler: String,
}

pub fn images(version: &str) -> Images {
    let pinned = parse_minor(version)
        .and_then(minor_release)
        .filter(|m| m.patch == version);
    // By digest where one is recorded for exactly this patch release, else by tag.
    let image = |name: &str| match pinned.and_then(|m| m.digests.get(name)) {
        Some(digest) => format!("registry.k8s.io/{name}:{version}@{digest}"),
        None => format!("registry.k8s.io/{name}:{version}"),
    };
    let data = releases();
    // The add-ons that follow the Kubernetes minor; an unknown minor (which validate refuses)
    // gets the newest.
    let release = parse_minor(version)
        .and_then(minor_release)
        .or_else(|| data.minors.last());
    Images {
        apiserver: image("kube-apiserver"),
        controller_manager: image("kube-controller-manager"),
        scheduler: image("kube-scheduler"),
        proxy: image("kube-proxy"),
        etcd: format!("{}:{}", data.etcd.image, data.etcd.version),
        etcd_version: data.etcd.version.clone(),
        awscli: data.awscli.clone(),
        coredns: data.addons.coredns.clone(),
        flannel: data.addons.flannel.clone(),
        flannel_cni_plugin: data.addons.flannel_cni_plugin.clone(),
        cloud_controller_manager: release
            .map(|m| m.cloud_controller_manager.clone())
            .unwrap_or_default(),
        cluster_autoscaler: release
            .map(|m| m.cluster_autoscaler.clone())
            .unwrap_or_default(),
        ebs_csi_driver: data.addons.ebs_csi_driver.clone(),
        csi_provisioner: data.addons.csi_provisioner.clone(),
        csi_attacher: data.addons.csi_attacher.clone(),
        csi_resizer: data.addons.csi_resizer.clone(),
        liveness_probe: data.addons.liveness_probe.clone(),
        node_driver_registrar: data.addons.node_driver_registrar.clone(),
        node_termination_handler: data.addons.node_termination_handler.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_moves_one_minor_up_per_plan_and_never_back() {
        let patch = |minor: u32| minor_release(minor).expect("supported").patch.clone();
        let (v35, v36, v37) = (patch(35), patch(36), patch(37));
        assert_eq!(version_move(&v36, &v36), Ok(VersionMove::Unchanged));
        assert_eq!(version_move("v1.36.0", &v36), Ok(VersionMove::Patch));
        assert_eq!(version_move(&v36, "v1.36.0"), Ok(VersionMove::Patch));
        assert_eq!(
            version_move(&v36, &v37),
            Ok(VersionMove::NextMinor { from: 36, to: 37 })
        );
        let skipped = version_move(&v35, &v37).unwrap_err();
        assert!(
            skipped.contains("2 minors after the running")
                && skipped.contains(&format!("plan and apply {v36}, then {v37} in turn")),
            "{skipped}"
        );
        let back = version_move(&v37, &v36).unwrap_err();
        assert!(
            back.contains("older minor") && back.contains("keep v1.37"),
            "{back}"
        );
    }
}
