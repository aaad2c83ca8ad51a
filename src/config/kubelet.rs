//! `data/kubelet-rules.json`: kubelet flags removed per minor and the label namespaces
//! kubelet and NodeRestriction refuse.

use super::*;

/// What kubelet and the NodeRestriction admission plugin refuse (`data/kubelet-rules.json`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletRules {
    pub removed_flags: Vec<RemovedFlag>,
    pub cloud_provider_values: Vec<String>,
    pub allowed_labels: Vec<String>,
    pub allowed_label_namespaces: Vec<String>,
    pub restricted_label_namespaces: Vec<String>,
    pub forbidden_label_namespaces: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemovedFlag {
    pub flag: String,
    /// The minor release that removed it.
    pub removed_in: u32,
}

impl KubeletRules {
    /// `data/kubelet-rules.json`, parsed once.
    pub fn get() -> &'static KubeletRules {
        static RULES: std::sync::LazyLock<KubeletRules> = std::sync::LazyLock::new(|| {
            serde_json::from_str(include_str!("../../data/kubelet-rules.json"))
                .expect("data/kubelet-rules.json is checked by a unit test")
        });
        &RULES
    }

    /// Why kubelet (`--node-labels`) or NodeRestriction would refuse label `key`, if they would.
    pub fn label_refusal(&self, key: &str) -> Option<String> {
        let namespace = key.split_once('/').map(|(ns, _)| ns).unwrap_or("");
        let within = |ns: &str, list: &[String]| {
            list.iter()
                .any(|n| ns == n || ns.ends_with(&format!(".{n}")))
        };
        if within(namespace, &self.forbidden_label_namespaces) {
            return Some(format!(
                "the {namespace} namespace is reserved for labels only administrators set; kubelet may not"
            ));
        }
        if within(namespace, &self.restricted_label_namespaces)
            && !self.allowed_labels.iter().any(|l| l == key)
            && !within(namespace, &self.allowed_label_namespaces)
        {
            return Some(format!(
                "kubelet refuses --node-labels in the kubernetes.io and k8s.io namespaces except {} and the {} prefixes",
                self.allowed_labels.join(", "),
                self.allowed_label_namespaces.join(", ")
            ));
        }
        None
    }
}
