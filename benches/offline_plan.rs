//! Offline no-op plan time for 1, 20, 100 and 1,000 node pools, beside `terraform plan` over
//! as many `terraform_data` resources with local state, run side by side in one run, with the
//! ratio, the time each pool adds and kube-aws's peak RSS. A second column times the same plan
//! rendering everything (the state's render key removed); 1,000 pools in one stack exceed
//! CloudFormation's limits (1 MB, 500 resources per stack), so there it renders and refuses in
//! validation. Both layouts are measured: every pool in the cluster stack, and a stack each
//! (`stackPerPool`), which holds 1,000 pools.
//! `cargo bench --bench offline_plan`; terraform is used when it is on PATH.
//! `cargo bench --bench offline_plan -- --seed DIR POOLS [--stack-per-pool]` only seeds DIR,
//! for profiling.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube_aws::aws::AwsError;
use kube_aws::aws::images::ImageCatalog;
use kube_aws::aws::kms::KeyVault;
use kube_aws::config::{ClusterConfig, ReleaseChannel};
use kube_aws::engine::backend::Backend;
use kube_aws::engine::{self, plan::applied_state};
use kube_aws::state::lock::Locker;
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

fn cluster_yaml(pools: usize, stack_per_pool: bool) -> String {
    let mut text = String::from(if stack_per_pool {
        "stackPerPool: true\n"
    } else {
        ""
    });
    text.push_str(
        "clusterName: bench\nexternalDNSName: bench.example.com\nregion: us-west-2\navailabilityZone: us-west-2a\nkeyName: k\nkmsKeyArn: arn:aws:kms:us-west-2:123456789012:key/bench\namiId: ami-0123456789abcdef0\ntemplateBucket: bench-artifacts\nnodePools:\n",
    );
    for i in 0..pools {
        text.push_str(&format!("  - name: pool{i}\n"));
    }
    text
}

fn seed(dir: &Path, pools: usize, stack_per_pool: bool) {
    std::fs::write(
        dir.join("cluster.yaml"),
        cluster_yaml(pools, stack_per_pool),
    )
    .unwrap();
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
            &build,
        );
        let backend = Backend::local(dir);
        let lock = backend
            .store
            .locker
            .lock("bench", "seed", now, time::Duration::minutes(5))
            .await
            .unwrap();
        backend.store.persist(&state, None, &lock).await.unwrap();
        backend.store.locker.unlock(&lock).await.unwrap();
    });
}

/// One run's wall time and the child's own peak resident set (KiB), from `wait4`.
fn measured_run(mut command: Command, expect: i32) -> (Duration, i64) {
    let start = Instant::now();
    // Reaped by wait4 below: std's wait does not report the child's resource usage.
    #[allow(clippy::zombie_processes)]
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runs");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = loop {
        // SAFETY: the pid is our own unwaited child; both pointers are to live locals.
        let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
        if waited >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
        {
            break waited;
        }
    };
    let took = start.elapsed();
    assert_eq!(waited, child.id() as libc::pid_t, "wait4");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    if code != Some(expect) {
        let again = command.output().expect("runs");
        panic!(
            "exit {code:?}, expected {expect}; run again, it said: {}",
            String::from_utf8_lossy(&again.stderr)
        );
    }
    // KiB on Linux (bytes on macOS).
    (took, usage.ru_maxrss)
}

/// Median wall time and largest peak RSS (KiB) of `runs` runs, each of which must exit `expect`.
fn time_ours(runs: usize, expect: i32, mut command: impl FnMut() -> Command) -> (Duration, i64) {
    let mut peak = 0;
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let (took, rss) = measured_run(command(), expect);
            peak = peak.max(rss);
            took
        })
        .collect();
    times.sort();
    (times[runs / 2], peak)
}

fn terraform(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("terraform");
    cmd.current_dir(dir)
        .args(args)
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1");
    cmd
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `-- --seed DIR POOLS` only seeds a cluster directory, to profile one plan by hand.
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--seed") {
        let dir = Path::new(&args[at + 1]);
        std::fs::create_dir_all(dir).unwrap();
        let per_pool = args.get(at + 3).is_some_and(|a| a == "--stack-per-pool");
        seed(
            dir,
            args[at + 2].parse().expect("POOLS is a number"),
            per_pool,
        );
        return;
    }
    let kube_aws = env!("CARGO_BIN_EXE_kube-aws");
    let has_terraform = Command::new("terraform")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    println!(
        "offline no-op plan, median wall time (kube-aws no-op: 15 runs, render: 3; terraform: 3), side by side"
    );
    println!("  no-op:   the state's render key matches, so the plan is made without rendering");
    println!("  render:  the same plan with the keys removed from the state (a full render)");
    println!(
        "  1 changed: with stackPerPool, the plan after one pool's instance type changed (the"
    );
    println!("           other pools' keys are the state's, so only that pool is rendered)");
    let plan = |dir: &Path| {
        let mut cmd = Command::new(kube_aws);
        cmd.current_dir(dir)
            .args(["plan", "--offline", "--detailed-exitcode"])
            .env("NO_COLOR", "1");
        cmd
    };
    for stack_per_pool in [false, true] {
        println!(
            "{}",
            if stack_per_pool {
                "each pool in a stack of its own (stackPerPool: true):"
            } else {
                "every pool in the cluster stack:"
            }
        );
        println!(
            "{:>6}  {:>9}  {:>12}  {:>9}  {:>10}  {:>15}  {:>7}  {:>9}",
            "pools",
            "no-op",
            "per pool",
            "peak RSS",
            "render",
            "terraform plan",
            "ratio",
            "1 changed"
        );
        let mut first: Option<(usize, Duration)> = None;
        for pools in [1usize, 20, 100, 1000] {
            let dir = tempfile::tempdir().unwrap();
            // Seeded by another process: a child's peak RSS counts what its parent held when it
            // was spawned, so this one stays small.
            let seeded = Command::new(std::env::current_exe().unwrap())
                .arg("--seed")
                .arg(dir.path())
                .arg(pools.to_string())
                .args(stack_per_pool.then_some("--stack-per-pool"))
                .status()
                .unwrap();
            assert!(seeded.success(), "seeding {pools} pools");
            let (ours, peak) = time_ours(15, 0, || plan(dir.path()));
            // Without the keys (the cluster's and each pool stack's) the plan renders, validates
            // and compresses everything; 1,000 pools exceed CloudFormation's stack limits (1 MB,
            // 500 resources), which validation refuses.
            let state_path = dir.path().join("state/state.json");
            let seeded_state = std::fs::read(&state_path).unwrap();
            let mut state: serde_json::Value = serde_json::from_slice(&seeded_state).unwrap();
            state.as_object_mut().unwrap().remove("render_key");
            if let Some(stacks) = state.get_mut("pool_stacks").and_then(|s| s.as_object_mut()) {
                for stack in stacks.values_mut() {
                    stack.as_object_mut().unwrap().remove("render_key");
                }
            }
            std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
            // One stack cannot hold them; stacks of their own can.
            let refused = pools > 100 && !stack_per_pool;
            let (rendering, _) = time_ours(3, if refused { 1 } else { 0 }, || plan(dir.path()));
            // One pool changed: a plan with changes (exit 2) that renders only that pool.
            let one_changed = stack_per_pool.then(|| {
                std::fs::write(&state_path, &seeded_state).unwrap();
                let yaml = dir.path().join("cluster.yaml");
                let text = std::fs::read_to_string(&yaml).unwrap().replace(
                    "  - name: pool0\n",
                    "  - name: pool0\n    instanceType: m6i.large\n",
                );
                std::fs::write(&yaml, text).unwrap();
                format!("{:.1}ms", ms(time_ours(3, 2, || plan(dir.path())).0))
            });
            // What each pool adds beyond the one-pool run: flat when the cost is linear.
            let per_pool = match first {
                None => {
                    first = Some((pools, ours));
                    "-".to_string()
                }
                Some((n, t)) => format!(
                    "{:.1}us",
                    (ours.as_secs_f64() - t.as_secs_f64()) * 1e6 / (pools - n) as f64
                ),
            };
            let theirs = has_terraform.then(|| {
            let tf = tempfile::tempdir().unwrap();
            std::fs::write(
                tf.path().join("main.tf"),
                format!("resource \"terraform_data\" \"pool\" {{\n  count = {pools}\n  input = \"pool-${{count.index}}\"\n}}\n"),
            )
            .unwrap();
            assert!(terraform(tf.path(), &["init", "-input=false"]).output().unwrap().status.success());
            assert!(terraform(tf.path(), &["apply", "-auto-approve", "-input=false"]).output().unwrap().status.success());
            time_ours(3, 0, || terraform(tf.path(), &["plan", "-input=false", "-detailed-exitcode"])).0
        });
            let rendering = format!(
                "{:.1}ms{}",
                ms(rendering),
                if refused { " (refused)" } else { "" }
            );
            let (terraform_text, ratio) = match theirs {
                Some(t) => (
                    format!("{:.1}ms", ms(t)),
                    format!("{:.1}x", t.as_secs_f64() / ours.as_secs_f64()),
                ),
                None => ("(no terraform)".to_string(), "-".to_string()),
            };
            println!(
                "{pools:>6}  {:>7.1}ms  {per_pool:>12}  {:>6.1}MB  {rendering:>10}  {terraform_text:>15}  {ratio:>7}  {:>9}{}",
                ms(ours),
                peak as f64 / 1024.0,
                one_changed.as_deref().unwrap_or("-"),
                if refused {
                    "  (a state no apply writes: one stack cannot hold it)"
                } else {
                    ""
                }
            );
        }
    }
}
