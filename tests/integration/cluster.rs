//! The cluster the workflow tests drive: a directory initialised against moto, with its own
//! hosted zone, state (local or S3) and recording proxy, and the one way they run the binary
//! on it.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::{init_named, kube_aws, moto, unique_cluster};
use crate::proxy::{Faults, Proxy};

/// A cluster directory initialised against moto, with its own hosted zone and proxy.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub zone_id: String,
    pub bucket: Option<String>,
    pub proxy: Proxy,
}

impl Cluster {
    pub fn new(prefix: &str, s3_state: bool, faults: Option<Faults>) -> Cluster {
        let moto = moto();
        let name = unique_cluster(prefix);
        let zone_id = moto.create_zone(&format!("{name}.example.com"));
        let bucket = s3_state.then(|| moto.create_bucket(prefix, true));
        let mut extra = vec!["--hosted-zone-id", zone_id.as_str()];
        if let Some(bucket) = &bucket {
            extra.extend(["--state-bucket", bucket.as_str()]);
        }
        let dir = init_named(moto, &name, &format!("api.{name}.example.com"), &extra);
        Cluster {
            dir,
            name,
            zone_id,
            bucket,
            proxy: Proxy::start(&moto.endpoint, faults),
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Runs kube-aws in the cluster dir with AWS reached through this cluster's proxy.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = kube_aws(moto(), self.dir.path());
        cmd.env("AWS_ENDPOINT_URL", &self.proxy.endpoint);
        cmd.args(args).output().expect("kube-aws runs")
    }

    /// Starts `apply plan.json` (with `env`) through this cluster's proxy, its output piped.
    pub fn spawn_apply(&self, env: &[(&str, &str)]) -> std::process::Child {
        self.apply_command(env).spawn().expect("kube-aws starts")
    }

    /// Apply as `nohup` starts it: SIGHUP ignored from the start.
    pub fn spawn_apply_under_nohup(&self) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let mut command = self.apply_command(&[]);
        // SAFETY: between fork and exec, only signal(2), which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                Ok(())
            });
        }
        command.spawn().expect("kube-aws starts")
    }

    fn apply_command(&self, env: &[(&str, &str)]) -> Command {
        let mut command = kube_aws(moto(), self.dir.path());
        command
            .env("AWS_ENDPOINT_URL", &self.proxy.endpoint)
            .envs(env.iter().copied())
            .args(["apply", "plan.json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    }

    /// Runs kube-aws and insists on `code`.
    pub fn expect(&self, code: i32, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "kube-aws {args:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Two public subnets and two private ones (us-west-2a and b), where the nodes go.
    pub fn use_private_subnets(&self) {
        self.set(
            "subnets",
            "[{availabilityZone: us-west-2a, instanceCIDR: 10.0.0.0/24}, {availabilityZone: us-west-2b, instanceCIDR: 10.0.1.0/24}]",
        );
        self.set(
            "privateSubnets",
            "[{availabilityZone: us-west-2a, instanceCIDR: 10.0.10.0/24}, {availabilityZone: us-west-2b, instanceCIDR: 10.0.11.0/24}]",
        );
    }

    /// Sets a top-level key of cluster.yaml (uncommenting the default `init` wrote, if any).
    pub fn set(&self, key: &str, value: &str) {
        let path = self.path("cluster.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{key}:")) && !l.starts_with(&format!("#{key}:")))
            .map(str::to_string)
            .collect();
        lines.push(format!("{key}: {value}"));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }

    /// The 1-based line of top-level `key:` in cluster.yaml.
    pub fn setting_line(&self, key: &str) -> usize {
        std::fs::read_to_string(self.path("cluster.yaml"))
            .unwrap()
            .lines()
            .position(|l| l.starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("{key} is set"))
            + 1
    }

    /// A plan file of this cluster's directory, decoded (its hash checked).
    pub fn decoded_plan(&self, file: &str) -> kube_aws::planfile::Plan {
        kube_aws::planfile::decode(file, &std::fs::read(self.path(file)).unwrap()).unwrap()
    }

    pub fn plan_file(&self, file: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.path(file)).unwrap()).unwrap()
    }

    /// plan -o FILE then apply FILE; both must succeed.
    /// Runs `body` with the (local) state replaced by `bytes` and the newest audit entry, the
    /// one that wrote the state, saying it wrote those bytes: re-hashed and re-signed with the
    /// cluster's key, as only a holder of `kms:Sign` could. Restores both after. For tests of
    /// what a plan makes of a state kube-aws did not write itself.
    pub fn with_state_as_if_written(&self, bytes: &[u8], body: impl FnOnce()) {
        let state_path = self.path("state/state.json");
        let head = std::fs::read_to_string(self.path("state/audit/HEAD")).unwrap();
        let entry_path = self.path(&format!(
            "state/audit/{:08}.json",
            head.trim().parse::<u64>().unwrap()
        ));
        let (kept_state, kept_entry) = (
            std::fs::read(&state_path).unwrap(),
            std::fs::read(&entry_path).unwrap(),
        );
        let mut entry: kube_aws::audit::AuditEntry = serde_json::from_slice(&kept_entry).unwrap();
        assert!(
            entry.state_serial_after.is_some(),
            "the newest entry wrote the state"
        );
        entry.state_sha256_after = Some(kube_aws::hash::sha256_hex(bytes));
        entry.entry_sha256 = entry.compute_sha256();
        let signature = crate::harness::block_on(async {
            kube_aws::aws::kms::KmsVault::new(aws_sdk_kms::Client::new(&moto().sdk_config().await))
                .sign_raw(moto().plan_signing_key(), entry.entry_sha256.as_bytes())
                .await
                .unwrap()
        });
        use base64::Engine;
        entry.signature.as_mut().unwrap().value =
            base64::engine::general_purpose::STANDARD.encode(signature);
        std::fs::write(&entry_path, kube_aws::audit::encode(&entry)).unwrap();
        std::fs::write(&state_path, bytes).unwrap();
        body();
        std::fs::write(&state_path, kept_state).unwrap();
        std::fs::write(&entry_path, kept_entry).unwrap();
    }

    pub fn plan_and_apply(&self) {
        self.expect(0, &["plan", "-o", "plan.json"]);
        self.expect(0, &["apply", "plan.json"]);
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
