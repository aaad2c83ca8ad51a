//! Offline no-op plan time for 1, 20, 100 and 1,000 node pools, beside `terraform plan` over
//! as many `terraform_data` resources with local state, run side by side in one run, with the
//! ratio. 1,000 pools exceed CloudFormation's limits (1 MB, 500 resources per stack), so that
//! row times plan rendering everything and refusing it in validation.
//! `cargo bench --bench offline_plan`; terraform is used when it is on PATH.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kube_aws::aws::AwsError;
use kube_aws::aws::images::ImageCatalog;
use kube_aws::aws::kms::KeyVault;
use kube_aws::config::{ClusterConfig, ReleaseChannel};
use kube_aws::engine::backend::Backend;
use kube_aws::engine::{self, plan::applied_state};
use zeroize::Zeroizing;

/// Seeds the benchmark's state without AWS: "encrypts" by tagging. Never used by the product.
struct SeedVault;

impl KeyVault for SeedVault {
    async fn encrypt(
        &self,
        _: &str,
        plaintext: &[u8],
        _: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, AwsError> {
        Ok(kube_aws::hash::sha256_hex(plaintext).into_bytes())
    }
    async fn decrypt(
        &self,
        _: &str,
        _: &[u8],
        _: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<Vec<u8>>, AwsError> {
        unreachable!("seeding issues the CA itself")
    }
}

struct NoImages;

impl ImageCatalog for NoImages {
    async fn latest_flatcar(&self, _: ReleaseChannel) -> Result<String, AwsError> {
        unreachable!("the benchmark sets amiId")
    }
}

fn cluster_yaml(pools: usize) -> String {
    let mut text = String::from(
        "clusterName: bench\nexternalDNSName: bench.example.com\nregion: us-west-2\navailabilityZone: us-west-2a\nkeyName: k\nkmsKeyArn: arn:aws:kms:us-west-2:123456789012:key/bench\namiId: ami-0123456789abcdef0\ntemplateBucket: bench-artifacts\nnodePools:\n",
    );
    for i in 0..pools {
        text.push_str(&format!("  - name: pool{i}\n"));
    }
    text
}

fn seed(dir: &Path, pools: usize) {
    std::fs::write(dir.join("cluster.yaml"), cluster_yaml(pools)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = ClusterConfig::load(dir).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let inputs = engine::BuildInputs::new(&config, None, now);
        let build = engine::build(dir, &inputs, Some(&SeedVault), Some(&NoImages), &mut |_| {})
            .await
            .unwrap();
        let state = applied_state(
            &config,
            None,
            "11111111-2222-4333-8444-555555555555".into(),
            &build.image,
            &build.tls.assets,
            &build.rendered,
        );
        let backend = Backend::local(dir);
        let lock = backend
            .store
            .lock("bench", "seed", now, time::Duration::minutes(5))
            .await
            .unwrap();
        backend.store.persist(&state, None, &lock).await.unwrap();
        backend.store.unlock(&lock).await.unwrap();
    });
}

/// Median wall time of `runs` runs of `command`, which must exit with `expect`.
fn time_it(runs: usize, expect: i32, mut command: impl FnMut() -> Command) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let out = command().output().expect("runs");
            let took = start.elapsed();
            assert_eq!(
                out.status.code(),
                Some(expect),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            took
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn terraform(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("terraform");
    cmd.current_dir(dir)
        .args(args)
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1");
    cmd
}

fn main() {
    let kube_aws = env!("CARGO_BIN_EXE_kube-aws");
    let has_terraform = Command::new("terraform")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    println!("offline no-op plan, median wall time (kube-aws: 7 runs; terraform: 3 runs)");
    println!(
        "{:>6}  {:>12}  {:>16}  {:>8}",
        "pools", "kube-aws", "terraform plan", "ratio"
    );
    for pools in [1usize, 20, 100, 1000] {
        let dir = tempfile::tempdir().unwrap();
        seed(dir.path(), pools);
        let expect = if pools > 100 { 1 } else { 0 };
        let ours = time_it(7, expect, || {
            let mut cmd = Command::new(kube_aws);
            cmd.current_dir(dir.path())
                .args(["plan", "--offline", "--detailed-exitcode"])
                .env("NO_COLOR", "1");
            cmd
        });
        let theirs = has_terraform.then(|| {
            let tf = tempfile::tempdir().unwrap();
            std::fs::write(
                tf.path().join("main.tf"),
                format!("resource \"terraform_data\" \"pool\" {{\n  count = {pools}\n  input = \"pool-${{count.index}}\"\n}}\n"),
            )
            .unwrap();
            assert!(terraform(tf.path(), &["init", "-input=false"]).output().unwrap().status.success());
            assert!(terraform(tf.path(), &["apply", "-auto-approve", "-input=false"]).output().unwrap().status.success());
            time_it(3, 0, || terraform(tf.path(), &["plan", "-input=false", "-detailed-exitcode"]))
        });
        match theirs {
            Some(t) => println!(
                "{pools:>6}  {:>10.1}ms  {:>14.1}ms  {:>7.1}x{}",
                ours.as_secs_f64() * 1e3,
                t.as_secs_f64() * 1e3,
                t.as_secs_f64() / ours.as_secs_f64(),
                if expect == 1 {
                    "  (refused: over CloudFormation's stack limits)"
                } else {
                    ""
                }
            ),
            None => println!(
                "{pools:>6}  {:>10.1}ms  {:>16}  {:>8}",
                ours.as_secs_f64() * 1e3,
                "(no terraform)",
                "-"
            ),
        }
    }
}
