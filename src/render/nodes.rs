//! The templates every node reads: the add-ons and scripts the controllers fetch, and each
//! instance's cloud-config with the user data the stack carries.

use super::*;
use crate::config::EtcdMember;

/// The templates' environment and what every template gets.
pub(super) struct Renderer {
    env: Environment<'static>,
    base: minijinja::Value,
}

impl Renderer {
    pub(super) fn new(
        templates: &Templates,
        inputs: &RenderInputs<'_>,
    ) -> Result<Renderer, RenderError> {
        let env = environment(templates)?;
        let c = inputs.config;
        let members = c.etcd_members();
        let etcd_endpoints = client_urls(members.iter());
        let etcd_initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let version = c.kubernetes_version.as_str();
        let base = context! {
            cluster => Serde(c),
            stackName => c.stack_name(),
            etcdEndpoints => etcd_endpoints,
            etcdInitialCluster => etcd_initial_cluster,
            etcdDomain => c.etcd_domain(),
            etcdVolumeLabel => ETCD_VOLUME_LABEL,
            kubernetesServiceIP => c.kubernetes_service_ip().to_string(),
            k8s => context! {
                version => version,
                releaseUrl => format!("https://dl.k8s.io/release/{version}/bin/linux/amd64"),
            },
            cniPlugins => releases().addons.cni_plugins.clone(),
            // How nodes reach the API: by the name the stack points at the load balancer, or at
            // the single controller's private address (so a narrowed apiAccessAllowedSourceCIDRs
            // does not lock the cluster's own nodes out), while it creates them.
            apiServerURL => format!("https://{}:443", c.api_internal_dns_name()),
            apiInternalDNSName => c.api_internal_dns_name(),
            // Until when (seconds of uptime) each boot script that signals CloudFormation waits:
            // derived from the timeout CloudFormation waits for that signal.
            waits => context! {
                controller => ClusterConfig::signal_deadline_seconds(&c.controller_create_timeout),
                worker => ClusterConfig::signal_deadline_seconds(&c.worker_create_timeout),
                etcd => ClusterConfig::signal_deadline_seconds(&c.etcd_create_timeout),
            },
            controllerGroup => c.controllers_behind_load_balancer(),
            drain => context! {
                hookName => DRAIN_HOOK,
                heartbeatTimeout => DRAIN_HEARTBEAT_SECONDS,
                nodeGracePeriod => DRAIN_GRACE_SECONDS,
                probesPort => DRAINER_PROBES_PORT,
            },
            images => Serde(images(version)),
            tls => tls_context(inputs)?,
        };
        Ok(Renderer { env, base })
    }

    /// The template `name` rendered with `extra` beside the common context.
    pub(super) fn one(&self, name: &str, extra: minijinja::Value) -> Result<String, RenderError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| RenderError::from_minijinja(name, &e))?;
        template
            .render(context! { ..extra, ..self.base.clone() })
            .map_err(|e| RenderError::from_minijinja(name, &e))
    }
}

/// The add-ons and controller scripts, rendered: what the controllers fetch.
pub(super) struct RenderedAddons {
    pub(super) manifests: BTreeMap<String, String>,
    pub(super) objects: Vec<AddonObject>,
    /// Each, as the controller's cloud-config and the stack template name it.
    pub(super) listed: Vec<minijinja::Value>,
    /// The artifact bucket they are in.
    pub(super) artifacts: minijinja::Value,
}

pub(super) fn render_addons(
    r: &Renderer,
    c: &ClusterConfig,
) -> Result<RenderedAddons, RenderError> {
    let addon_names = addons(c);
    let mut manifests = BTreeMap::new();
    for name in addon_names
        .iter()
        .chain(&CONTROLLER_SCRIPTS.map(|s| s.path))
    {
        let file = addon_file_name(name).to_string();
        manifests.insert(file, r.one(name, context! {})?);
    }
    let artifacts = c.artifacts().ok_or(RenderError::NoArtifactBucket)?;
    let addon_objects: Vec<AddonObject> = manifests
        .iter()
        .map(|(file, text)| {
            let sha256 = crate::hash::sha256_hex(text);
            AddonObject {
                name: file.clone(),
                key: artifacts.addon_key(&sha256),
                sha256,
            }
        })
        .collect();
    // The manifests in the order the controller applies them, then the scripts it only fetches.
    let addons: Vec<_> = addon_names
        .iter()
        .map(|name| (name, true))
        .chain(
            CONTROLLER_SCRIPTS
                .iter()
                .map(|script| (&script.path, false)),
        )
        .filter_map(|(name, apply)| {
            let file = addon_file_name(name);
            let object = addon_objects.iter().find(|o| o.name == file)?;
            Some(context! {
                name => file, text => manifests[file].clone(), apply => apply,
                key => object.key.clone(), sha256 => object.sha256.clone(),
            })
        })
        .collect();
    let artifact_context = context! {
        bucket => artifacts.bucket.clone(), region => artifacts.region.clone(),
    };
    Ok(RenderedAddons {
        manifests,
        objects: addon_objects,
        listed: addons,
        artifacts: artifact_context,
    })
}

/// Every cloud-config, and the user data the stack template carries.
pub(super) struct RenderedNodes {
    pub(super) cloud_configs: BTreeMap<String, String>,
    pub(super) etcd_userdata: Vec<String>,
    pub(super) worker_userdata: BTreeMap<String, String>,
    /// While the pools stay in the cluster stack: the user data they run with there.
    pub(super) cluster_worker_userdata: BTreeMap<String, String>,
    /// The pools rendered (all but the reused ones).
    pub(super) pools: Vec<crate::config::WorkerPool>,
    pub(super) reused_pools: std::collections::BTreeSet<String>,
    pub(super) keep_pools: bool,
}

pub(super) fn render_nodes(
    r: &Renderer,
    inputs: &RenderInputs<'_>,
    addons: &RenderedAddons,
) -> Result<RenderedNodes, RenderError> {
    let c = inputs.config;
    let (addons, artifact_context) = (&addons.listed, &addons.artifacts);
    let controller_logical_id = if c.controllers_behind_load_balancer() {
        "AutoScaleController"
    } else {
        "InstanceController"
    };
    let mut cloud_configs = BTreeMap::new();
    cloud_configs.insert(
        CloudConfigId::Controller.name(),
        r.one(
            CONTROLLER,
            context! {
                addons => addons.clone(), artifacts => artifact_context.clone(),
                controllerLogicalId => controller_logical_id,
            },
        )?,
    );
    let mut etcd_userdata = Vec::new();
    let members = c.etcd_members();
    // Every member address this render lists: a member removes the members it does not see.
    let member_peer_urls = members
        .iter()
        .map(EtcdMember::peer_url)
        .collect::<Vec<_>>()
        .join(" ");
    for member in &members {
        // Through whom a member without data joins, and changes the member list.
        let peer_endpoints = client_urls(members.iter().filter(|m| m.index != member.index));
        let text = r.one(
            ETCD,
            context! {
                member => Serde(member),
                peerEndpoints => peer_endpoints,
                memberPeerURLs => &member_peer_urls,
            },
        )?;
        etcd_userdata.push(gzip_base64(&text));
        cloud_configs.insert(CloudConfigId::Etcd(member.index).name(), text);
    }
    let keep_pools = c.stack_per_pool && inputs.keep_pools_in_cluster_stack;
    // A pool in a stack of its own, unchanged, is not rendered at all; in the cluster stack
    // (or while moving out of it) every pool is.
    let reused_pools: std::collections::BTreeSet<String> = if c.stack_per_pool && !keep_pools {
        inputs.reuse_pools.clone()
    } else {
        Default::default()
    };
    let pools: Vec<_> = c
        .worker_pools()
        .into_iter()
        .filter(|p| !reused_pools.contains(&p.name))
        .collect();
    let mut worker_userdata = BTreeMap::new();
    // While the pools stay in the cluster stack, their launch templates keep the user data
    // they run with (signalling the cluster stack), so nothing rolls there.
    let mut cluster_worker_userdata = BTreeMap::new();
    for pool in &pools {
        let mut labels = vec![format!("{}={}", crate::config::POOL_LABEL, pool.name)];
        labels.extend(pool.labels.iter().map(|(k, v)| format!("{k}={v}")));
        let taints = pool
            .taints
            .iter()
            .map(|t| format!("{}={}:{:?}", t.key, t.value, t.effect))
            .collect::<Vec<_>>()
            .join(",");
        // The worker's cloud-config signals the stack its group is in.
        let signalling = |stack_name: String| {
            r.one(
                WORKER,
                context! { stackName => stack_name, pool => context! {
                    name => pool.name.clone(), logicalName => pool.logical_name.clone(),
                    nodeLabels => labels.join(","), nodeTaints => taints.clone(),
                }},
            )
        };
        let text = signalling(if c.stack_per_pool {
            c.pool_stack_name(&pool.name)
        } else {
            c.stack_name()
        })?;
        worker_userdata.insert(pool.name.clone(), gzip_base64(&text));
        cloud_configs.insert(CloudConfigId::Worker(pool.name.clone()).name(), text);
        if keep_pools {
            let in_cluster_stack = signalling(c.stack_name())?;
            cluster_worker_userdata.insert(pool.name.clone(), gzip_base64(&in_cluster_stack));
        }
    }
    Ok(RenderedNodes {
        cloud_configs,
        etcd_userdata,
        worker_userdata,
        cluster_worker_userdata,
        pools,
        reused_pools,
        keep_pools,
    })
}

/// etcd members' client URLs as etcdctl and `--etcd-servers` take them: comma-separated.
fn client_urls<'a>(members: impl Iterator<Item = &'a EtcdMember>) -> String {
    members
        .map(EtcdMember::client_url)
        .collect::<Vec<_>>()
        .join(",")
}
