//! Renders the cluster's cloud-configs and CloudFormation stack from templates: built-ins
//! compiled into the binary, overridden by files in the cluster directory. Pure: no I/O.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use flate2::Compression;
use flate2::write::GzEncoder;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, context};
use serde::Serialize;

use crate::assets::{CloudConfigId, TlsAssets};
use crate::config::ClusterConfig;
use crate::releases::{images, releases};

mod nodes;
mod stack;

use nodes::{Renderer, render_addons, render_nodes};

/// A template kube-aws ships: its path, relative to the cluster directory (and to
/// `templates/` in this repository), and its built-in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltIn {
    pub path: &'static str,
    pub text: &'static str,
}

/// The template at `templates/<path>`, compiled in.
macro_rules! built_in {
    ($path:literal) => {
        BuiltIn {
            path: $path,
            text: include_str!(concat!("../../templates/", $path)),
        }
    };
}

const CONTROLLER_TEMPLATE: BuiltIn = built_in!("userdata/cloud-config-controller");
const WORKER_TEMPLATE: BuiltIn = built_in!("userdata/cloud-config-worker");
const ETCD_TEMPLATE: BuiltIn = built_in!("userdata/cloud-config-etcd");
const SCRIPTS_TEMPLATE: BuiltIn = built_in!("userdata/scripts.j2");
const STACK_TEMPLATE: BuiltIn = built_in!("stack-template.json");

pub const CONTROLLER: &str = CONTROLLER_TEMPLATE.path;
pub const WORKER: &str = WORKER_TEMPLATE.path;
pub const ETCD: &str = ETCD_TEMPLATE.path;
/// Macros (scripts and units) the cloud-configs import; rendered only through them.
pub const SCRIPTS: &str = SCRIPTS_TEMPLATE.path;
pub const STACK: &str = STACK_TEMPLATE.path;

/// An add-on the controllers apply.
#[derive(Debug, Clone, Copy)]
pub struct Addon {
    pub template: BuiltIn,
    /// For an optional add-on, the cluster.yaml switch that turns it on; `None` when every
    /// cluster gets it.
    pub enabled_by: Option<Switch>,
}

/// A cluster.yaml setting by its name, and how to read it.
#[derive(Debug, Clone, Copy)]
pub struct Switch {
    pub field: &'static str,
    pub enabled: fn(&ClusterConfig) -> bool,
}

impl Addon {
    const fn always(template: BuiltIn) -> Addon {
        Addon {
            template,
            enabled_by: None,
        }
    }
}

/// Drain before terminate: the termination lifecycle hook every worker group and the
/// controllers' group hold an instance in, how long the hook waits (`HeartbeatTimeout`, then
/// the instance goes anyway), and the drainer's own limit for one node, which must end first
/// with room for the queue's delivery (EventBridge, then a 20 s long poll).
pub const DRAIN_HOOK: &str = "kube-aws-drain";
pub const DRAIN_HEARTBEAT_SECONDS: u32 = 600;
pub const DRAIN_GRACE_SECONDS: u32 = 300;
// The hook outlasts the drain, the drainer's 20 s long poll and 20 s visibility timeout, and
// EventBridge's delivery: a drain is never cut short by the instance going.
const _: () = assert!(DRAIN_HEARTBEAT_SECONDS > DRAIN_GRACE_SECONDS + 60);
/// The drainer's liveness endpoint on the controllers' host network.
pub const DRAINER_PROBES_PORT: u16 = 10290;

/// The add-ons, in the order the controllers apply them: a new add-on is its template in
/// `templates/manifests/` and one line here.
pub const ADDONS: [Addon; 9] = [
    Addon::always(built_in!("manifests/node-bootstrap.yaml")),
    Addon::always(built_in!("manifests/bootstrap-token.yaml")),
    Addon::always(built_in!("manifests/kube-proxy.yaml")),
    Addon::always(built_in!("manifests/flannel.yaml")),
    Addon::always(built_in!("manifests/aws-cloud-controller-manager.yaml")),
    Addon::always(built_in!("manifests/coredns.yaml")),
    Addon::always(built_in!("manifests/aws-ebs-csi-driver.yaml")),
    Addon::always(built_in!("manifests/aws-node-termination-handler.yaml")),
    Addon {
        template: built_in!("manifests/cluster-autoscaler.yaml"),
        enabled_by: Some(Switch {
            field: "clusterAutoscaler.enabled",
            enabled: |c| c.cluster_autoscaler.enabled,
        }),
    },
];

/// Scripts the controllers fetch with the add-on manifests, because their user data holds
/// only 16 KB; rendered with the same context, uploaded and checked the same way, not applied.
pub const CONTROLLER_SCRIPTS: [BuiltIn; 3] = [
    built_in!("userdata/node-csr-approver"),
    built_in!("userdata/node-ready-signaller"),
    built_in!("userdata/drain-queue-url"),
];

/// The add-ons a cluster gets, in the order the controllers apply them.
pub fn addons(config: &crate::config::ClusterConfig) -> Vec<&'static str> {
    ADDONS
        .iter()
        .filter(|addon| {
            addon
                .enabled_by
                .is_none_or(|switch| (switch.enabled)(config))
        })
        .map(|addon| addon.template.path)
        .collect()
}

/// Every template kube-aws ships.
pub fn built_in() -> impl Iterator<Item = BuiltIn> {
    [
        CONTROLLER_TEMPLATE,
        WORKER_TEMPLATE,
        ETCD_TEMPLATE,
        STACK_TEMPLATE,
        SCRIPTS_TEMPLATE,
    ]
    .into_iter()
    .chain(ADDONS.iter().map(|addon| addon.template))
    .chain(CONTROLLER_SCRIPTS)
}

/// Where a template's text came from, so errors and `validate` can name the right file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    BuiltIn,
    ClusterDir,
}

/// The templates one render uses.
#[derive(Debug, Clone)]
pub struct Templates {
    sources: BTreeMap<&'static str, (String, Origin)>,
}

impl Templates {
    /// The built-in templates, each replaced by `overrides` where the cluster dir has one.
    pub fn with_overrides(mut overrides: BTreeMap<&'static str, String>) -> Templates {
        let sources = built_in()
            .map(|BuiltIn { path, text }| match overrides.remove(path) {
                Some(own) => (path, (own, Origin::ClusterDir)),
                None => (path, (text.to_string(), Origin::BuiltIn)),
            })
            .collect();
        Templates { sources }
    }

    pub fn built_in() -> Templates {
        Templates::with_overrides(BTreeMap::new())
    }

    /// The cluster directory's templates (those replacing a built-in), by name.
    pub fn overrides(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.sources
            .iter()
            .filter(|(_, (_, origin))| *origin == Origin::ClusterDir)
            .map(|(name, (text, _))| (*name, text.as_str()))
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.sources.get(name).map(|(text, _)| text.as_str())
    }

    pub fn origin(&self, name: &str) -> Option<&Origin> {
        self.sources.get(name).map(|(_, origin)| origin)
    }
}

/// What a render produces: decoded cloud-configs by asset name and the stack template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// `cloud-config-controller`, one `cloud-config-etcd-<i>` per member, `cloud-config-worker` and one
    /// `cloud-config-worker-<pool>` per node pool.
    pub cloud_configs: BTreeMap<String, String>,
    /// The CloudFormation template as canonical JSON (sorted keys, two-space indent).
    pub stack_template: String,
    /// What the controllers fetch from S3, by file name: the add-on manifests they apply
    /// (`coredns.yaml`) and the scripts too large for their user data (`CONTROLLER_SCRIPTS`).
    pub manifests: BTreeMap<String, String>,
    /// Where each manifest is uploaded; the controller cloud-config names each key with its
    /// hash, so its own hash covers the manifests.
    pub addon_objects: Vec<AddonObject>,
    /// With `stackPerPool`, each worker pool's own stack by pool name; empty otherwise.
    pub pool_stacks: BTreeMap<String, PoolStackTemplate>,
    /// Pools not rendered (`RenderInputs::reuse_pools`): neither their cloud-config nor their
    /// stack is here, and they are the state's.
    pub reused_pools: std::collections::BTreeSet<String>,
}

/// A worker pool's own stack, as rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStackTemplate {
    pub stack_name: String,
    /// Canonical JSON, like the cluster stack's.
    pub template: String,
    /// Its parameters: each is the physical id of the cluster stack's resource of that name.
    pub parameters: Vec<String>,
}

/// The resources a pool stack may hold: anything else in one means a template override
/// written for the single stack rendered the control plane into it.
pub fn pool_stack_resources(logical_name: &str) -> [String; 4] {
    [
        format!("LaunchTemplate{logical_name}"),
        format!("AutoScale{logical_name}"),
        format!("IAMRolePool{logical_name}"),
        format!("IAMInstanceProfilePool{logical_name}"),
    ]
}

/// One add-on manifest as the controllers fetch it from S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddonObject {
    /// File name, e.g. `coredns.yaml`.
    pub name: String,
    /// Content-addressed object key in the artifact bucket.
    pub key: String,
    pub sha256: String,
}

/// Everything a render needs besides the templates.
pub struct RenderInputs<'a> {
    pub config: &'a ClusterConfig,
    pub ami_id: &'a str,
    pub tls: &'a TlsAssets,
    /// The first step of moving an applied single-stack cluster to `stackPerPool`: the pools
    /// stay in the cluster stack exactly as they run, while their own stacks are created
    /// beside them; the next plan removes them from the cluster stack.
    pub keep_pools_in_cluster_stack: bool,
    /// With `stackPerPool`, pools not to render: their inputs hash to the key the state
    /// records, so their template and cloud-config are the state's.
    pub reuse_pools: &'a std::collections::BTreeSet<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{template}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Template {
        template: String,
        line: Option<usize>,
        message: String,
    },
    #[error(
        "{STACK}: the rendered template is not valid JSON at line {line}, column {column}: {message}"
    )]
    StackJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("TLS asset {0} is missing; it must be issued before rendering")]
    MissingTls(String),
    #[error(
        "cluster.yaml: templateBucket: {}",
        crate::config::MISSING_TEMPLATE_BUCKET
    )]
    NoArtifactBucket,
    #[error(
        "{STACK}: node pool {pool}'s own stack (stackPerPool) would also hold {}; the template must render only the pool's resources when `poolStack` is set (see the built-in template)",
        resources.join(", ")
    )]
    PoolStackHoldsMore {
        pool: String,
        resources: Vec<String>,
    },
}

impl RenderError {
    fn from_minijinja(template: &str, e: &minijinja::Error) -> RenderError {
        let mut message = e
            .detail()
            .map(str::to_string)
            .unwrap_or_else(|| e.kind().to_string());
        if let Some(source) = std::error::Error::source(e) {
            message.push_str(&format!(": {source}"));
        }
        RenderError::Template {
            template: e.name().unwrap_or(template).to_string(),
            line: e.line(),
            message,
        }
    }
}

/// The file name under /etc/kubernetes/addons of an add-on template or controller script.
fn addon_file_name(template: &str) -> &str {
    template.rsplit('/').next().unwrap_or(template)
}

/// A kubeconfig that authenticates with `/etc/kubernetes/ssl/<user>.pem`; templates call it.
fn kubeconfig(cluster: &str, server: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n  - name: {cluster}\n    cluster:\n      certificate-authority: /etc/kubernetes/ssl/ca.pem\n      server: {server}\nusers:\n  - name: {user}\n    user:\n      client-certificate: /etc/kubernetes/ssl/{user}.pem\n      client-key: /etc/kubernetes/ssl/{user}-key.pem\ncontexts:\n  - name: {cluster}\n    context:\n      cluster: {cluster}\n      user: {user}\ncurrent-context: {cluster}\n"
    )
}

/// The kubeconfig a kubelet bootstraps with: the cluster's bootstrap token, read from the file
/// `decrypt-assets` writes, so the token itself is never in the rendered file.
fn bootstrap_kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n  - name: cluster\n    cluster:\n      certificate-authority: /etc/kubernetes/ssl/ca.pem\n      server: {server}\nusers:\n  - name: kubelet-bootstrap\n    user:\n      tokenFile: /etc/kubernetes/ssl/{}\ncontexts:\n  - name: bootstrap\n    context:\n      cluster: cluster\n      user: kubelet-bootstrap\ncurrent-context: bootstrap\n",
        crate::assets::tls::BOOTSTRAP_TOKEN
    )
}

/// What every instance group waits for besides what it references: the routes out of its
/// subnets and their route table associations the stack creates, without which a booting
/// instance reaches neither AWS's APIs nor its images (a NAT gateway takes minutes).
fn network_dependencies(
    c: &ClusterConfig,
    subnets: &[crate::config::SubnetConfig],
    route_table: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    if c.vpc_id.is_none() {
        out.push("RouteToInternet".to_string());
    }
    for (i, subnet) in subnets.iter().enumerate() {
        if subnet.id.is_none() && route_table {
            out.push(format!("Subnet{i}RouteTableAssociation"));
        }
    }
    for i in 0..c.private_subnets.len() {
        out.push(format!("PrivateRouteToNat{i}"));
        out.push(format!("PrivateSubnet{i}RouteTableAssociation"));
    }
    out
}

/// Gzip (with a zero mtime, so equal input gives equal bytes) then base64, as EC2 user data.
pub fn gzip_base64(text: &str) -> String {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder
        .write_all(text.as_bytes())
        .expect("writing to a Vec cannot fail");
    BASE64.encode(encoder.finish().expect("writing to a Vec cannot fail"))
}

/// Syntax with trailing newlines kept, so rendered files end as their templates do.
pub fn keep_trailing_newline() -> minijinja::syntax::SyntaxConfig {
    minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .expect("the default delimiters are valid")
}

fn environment(templates: &Templates) -> Result<Environment<'static>, RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Values are placed with explicit `tojson` where JSON quoting is needed; the default
    // callback would JSON-escape every value in `stack-template.json` a second time.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_syntax(keep_trailing_newline());
    env.add_function("kubeconfig", kubeconfig);
    env.add_function("bootstrap_kubeconfig", bootstrap_kubeconfig);
    for (name, (text, _)) in &templates.sources {
        env.add_template_owned(*name, text.clone())
            .map_err(|e| RenderError::from_minijinja(name, &e))?;
    }
    Ok(env)
}

fn tls_context(
    inputs: &RenderInputs<'_>,
) -> Result<BTreeMap<String, minijinja::Value>, RenderError> {
    let mut out = BTreeMap::new();
    for name in crate::assets::tls::all_names() {
        let asset = inputs
            .tls
            .get(name)
            .ok_or_else(|| RenderError::MissingTls(name.to_string()))?;
        out.insert(
            name.to_string(),
            context! {
                cert => asset.certificate_pem.clone(),
                keyCiphertext => asset.key_ciphertext.clone(),
                publicKey => asset.public_key_pem.clone(),
            },
        );
    }
    Ok(out)
}

/// Renders every cloud-config and the stack template.
pub fn render(templates: &Templates, inputs: &RenderInputs<'_>) -> Result<Rendered, RenderError> {
    let r = Renderer::new(templates, inputs)?;
    let c = inputs.config;
    let addons = render_addons(&r, c)?;
    let nodes = render_nodes(&r, inputs, &addons)?;
    let keep_pools = nodes.keep_pools;
    let pools = &nodes.pools;
    let network = stack::network(c, pools);
    let iam_roles = stack::iam_roles(c, pools, keep_pools);
    let controller_userdata = gzip_base64(&nodes.cloud_configs[&CloudConfigId::Controller.name()]);
    let userdata = context! {
        controller => controller_userdata.clone(),
        etcd => nodes.etcd_userdata.clone(),
        workers => nodes.worker_userdata,
    };
    let cluster_userdata = match keep_pools {
        true => context! {
            controller => controller_userdata,
            etcd => nodes.etcd_userdata,
            workers => nodes.cluster_worker_userdata,
        },
        false => userdata.clone(),
    };
    let cluster_pools: &[crate::config::WorkerPool] = if c.stack_per_pool && !keep_pools {
        &[]
    } else {
        pools
    };
    // Everything the stack template reads; a pool stack gets the same, with its own pool,
    // role and parameters, so an override that ignores `poolStack` still renders (and is
    // refused by what it holds, not by an undefined value).
    let network_depends_on =
        network_dependencies(c, &network.subnets, network.route_table_ref.is_some());
    let stack_context = context! {
        amiId => inputs.ami_id,
        networkDependsOn => network_depends_on,
        subnets => Serde(&network.subnets),
        privateSubnets => network.private_subnets.clone(),
        natSubnets => network.nat_subnets.clone(),
        nodeSubnetRefs => network.node_subnet_refs.clone(),
        poolSubnetRefs => network.pool_subnet_refs.clone(),
        publicSubnetRefs => network.public_subnet_refs.clone(),
        loadBalancerSubnetRefs => network.load_balancer_subnet_refs.clone(),
        apiLoadBalancer => network.api_load_balancer.clone(),
        addons => addons.listed,
        artifacts => addons.artifacts,
        etcdMembers => Serde(&c.etcd_members()),
        decryptableAssets => decryptable_assets(),
        vpcRef => minijinja::Value::from_safe_string(network.vpc_ref.clone()),
        routeTableRef => network.route_table_ref.clone().map(minijinja::Value::from_safe_string),
        userdata => userdata,
    };
    let pool_stacks = stack::pool_stacks(&r, c, pools, &network, &stack_context)?;
    let stack = r.one(
        STACK,
        context! {
            poolStack => None::<bool>,
            iamRoles => iam_roles,
            workerPools => Serde(cluster_pools),
            userdata => cluster_userdata,
            ..stack_context
        },
    )?;
    let stack_template = canonical_stack(&stack)?;
    Ok(Rendered {
        cloud_configs: nodes.cloud_configs,
        stack_template,
        manifests: addons.manifests,
        addon_objects: addons.objects,
        pool_stacks,
        reused_pools: nodes.reused_pools,
    })
}

/// Refuses a pool stack holding more than the pool's own resources (a template override that
/// does not know `poolStack` renders the whole cluster into each pool's stack).
fn check_pool_stack(pool: &str, logical_name: &str, template: &str) -> Result<(), RenderError> {
    let value: serde_json::Value = serde_json::from_str(template).unwrap_or_default();
    let allowed = pool_stack_resources(logical_name);
    let foreign: Vec<String> = value["Resources"]
        .as_object()
        .into_iter()
        .flat_map(|resources| resources.keys())
        .filter(|id| !allowed.contains(id))
        .cloned()
        .collect();
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(RenderError::PoolStackHoldsMore {
            pool: pool.to_string(),
            resources: foreign,
        })
    }
}

/// Filesystem label of each etcd member's data volume; its mount unit finds it by this label.
const ETCD_VOLUME_LABEL: &str = "kube-aws-etcd";

/// The key assets each instance role may decrypt: exactly those its cloud-config carries, so
/// a worker's role cannot decrypt the CA's or etcd's key even with their ciphertexts.
fn decryptable_assets() -> BTreeMap<&'static str, Vec<&'static str>> {
    BTreeMap::from([
        (
            "Controller",
            vec![
                "apiserver",
                "apiserver-kubelet-client",
                crate::assets::tls::BOOTSTRAP_TOKEN,
                crate::assets::tls::CA,
                "etcd-client",
                "kube-addons",
                "kube-controller-manager",
                "kube-scheduler",
                crate::assets::tls::SECRETS_ENCRYPTION,
                crate::assets::tls::SERVICE_ACCOUNT,
            ],
        ),
        ("Etcd", vec!["etcd-server"]),
        ("Worker", vec![crate::assets::tls::BOOTSTRAP_TOKEN]),
    ])
}

/// The stack template as CloudFormation receives it: the same canonical JSON without
/// indentation, so more fits under the 51,200-byte inline limit. apply re-canonicalises what
/// CloudFormation returns before comparing it with the reviewed template.
pub fn submitted_stack(stack_template: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(stack_template) {
        Ok(value) => {
            String::from_utf8(crate::hash::canonical_json(&value).expect("a JSON value serialises"))
                .expect("serde_json writes UTF-8")
        }
        Err(_) => stack_template.to_string(),
    }
}

fn canonical_stack(text: &str) -> Result<String, RenderError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| RenderError::StackJson {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
    let bytes = crate::hash::canonical_json_pretty(&value).expect("a JSON value serialises");
    Ok(String::from_utf8(bytes).expect("serde_json writes UTF-8"))
}

#[cfg(test)]
mod tests;
