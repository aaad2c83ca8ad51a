//! The local AWS for integration tests: one `moto_server` per test binary on a free loopback
//! port, with a Flatcar AMI registered and request recording on, torn down when the binary
//! exits. Fails loudly when moto is missing: these tests never skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

/// The AMI id moto reports for Flatcar stable in every region.
pub const FLATCAR_AMI: &str = "ami-0f1a7c00000000001";

pub struct Moto {
    pub endpoint: String,
    recording: PathBuf,
    _workdir: tempfile::TempDir,
    // Holding the wrapper's stdin open keeps moto alive; the OS closes it when this test
    // binary exits, and the wrapper then kills moto.
    _lifeline: Mutex<(Child, ChildStdin)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The shared moto server, started on first use.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start_moto)
}

fn start_moto() -> Moto {
    let found = Command::new("python3")
        .args(["-c", "import moto.server"])
        .output()
        .expect("python3 runs");
    assert!(
        found.status.success(),
        "moto is not installed: run scripts/ensure-tools (pip install 'moto[server]'). \
         These tests need the local AWS emulator and do not skip without it."
    );
    let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/moto-server");
    let workdir = tempfile::tempdir().expect("temp dir");
    let amis = workdir.path().join("amis.json");
    std::fs::write(
        &amis,
        format!(
            r#"[{{"ami_id": "{FLATCAR_AMI}", "state": "available", "public": true, "owner_id": "075585003325", "image_location": "075585003325/Flatcar-stable-4152.2.0-hvm", "sriov": "simple", "root_device_type": "ebs", "root_device_name": "/dev/xvda", "description": "Flatcar Container Linux stable 4152.2.0 (HVM)", "image_type": "machine", "platform": null, "architecture": "x86_64", "name": "Flatcar-stable-4152.2.0-hvm", "virtualization_type": "hvm", "hypervisor": "xen"}}]"#
        ),
    )
    .expect("write amis.json");
    let recording = workdir.path().join("recording.jsonl");
    let port = free_port();
    let mut child = Command::new("sh")
        .args([
            "-c",
            "\"$3\" -H 127.0.0.1 -p \"$1\" >\"$2\" 2>&1 & m=$!; read _ignored; kill $m",
            "moto-wrapper",
            &port.to_string(),
            &workdir.path().join("moto.log").display().to_string(),
            &launcher.display().to_string(),
        ])
        .env("MOTO_AMIS_PATH", &amis)
        .env("MOTO_ENABLE_RECORDING", "True")
        .env("MOTO_RECORDER_FILEPATH", &recording)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start moto_server");
    let stdin = child.stdin.take().expect("piped stdin");
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http(port, "GET", "/moto-api/data.json", "").is_ok() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(workdir.path().join("moto.log")).unwrap_or_default();
            panic!("moto_server exited with {status}:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer on {endpoint} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        endpoint,
        recording,
        _workdir: workdir,
        _lifeline: Mutex::new((child, stdin)),
    }
}

/// A minimal HTTP/1.1 request to moto's own API (not AWS APIs: those go through the SDK).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// One AWS request moto received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `X-Amz-Target` (JSON protocols) or the `Action` of a query request, when known.
    pub operation: String,
    pub url: String,
    pub body: String,
}

impl Moto {
    /// Every AWS request recorded so far.
    pub fn requests(&self) -> Vec<Recorded> {
        use base64::Engine;
        let text = std::fs::read_to_string(&self.recording).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|entry| {
                let body = entry["body"].as_str().unwrap_or_default();
                let body = if entry["body_encoded"].as_bool() == Some(true) {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .unwrap_or_default();
                    String::from_utf8_lossy(&bytes).into_owned()
                } else {
                    body.to_string()
                };
                let headers = &entry["headers"];
                let target = headers["X-Amz-Target"]
                    .as_str()
                    .or_else(|| headers["x-amz-target"].as_str());
                let operation = match target {
                    Some(t) => t.to_string(),
                    None => body
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("Action="))
                        .unwrap_or_default()
                        .to_string(),
                };
                Recorded {
                    operation,
                    url: entry["url"].as_str().unwrap_or_default().to_string(),
                    body,
                }
            })
            .collect()
    }

    /// KMS requests that concern `cluster` (its name is in every encryption context).
    pub fn kms_requests_for(&self, cluster: &str) -> Vec<Recorded> {
        let marker = format!("\"{cluster}\"");
        self.requests()
            .into_iter()
            .filter(|r| r.operation.starts_with("TrentService.") && r.body.contains(&marker))
            .collect()
    }

    /// Requests made to S3 bucket `bucket` (path-style URLs name it first).
    pub fn s3_requests_for(&self, bucket: &str) -> Vec<Recorded> {
        let marker = format!("/{bucket}");
        self.requests()
            .into_iter()
            .filter(|r| {
                r.url
                    .split_once("://")
                    .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
                    .is_some_and(|path| {
                        path == marker
                            || path.starts_with(&format!("{marker}/"))
                            || path.starts_with(&format!("{marker}?"))
                    })
            })
            .collect()
    }

    /// An S3 client for moto (path-style, as the binary uses against custom endpoints).
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk_config().await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Creates a bucket with a unique name, versioned or not.
    pub fn create_bucket(&self, prefix: &str, versioned: bool) -> String {
        let name = unique_cluster(prefix).to_lowercase();
        block_on(async {
            let s3 = self.s3().await;
            s3.create_bucket()
                .bucket(&name)
                .create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsWest2)
                        .build(),
                )
                .send()
                .await
                .expect("moto creates a bucket");
            if versioned {
                s3.put_bucket_versioning()
                    .bucket(&name)
                    .versioning_configuration(
                        aws_sdk_s3::types::VersioningConfiguration::builder()
                            .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                            .build(),
                    )
                    .send()
                    .await
                    .expect("moto enables versioning");
            }
        });
        name
    }

    /// The asymmetric KMS key every test cluster signs its plans with.
    pub fn plan_signing_key(&self) -> &str {
        static KEY: OnceLock<String> = OnceLock::new();
        KEY.get_or_init(|| self.create_signing_key())
    }

    /// A new asymmetric signing key (ECC_NIST_P256, SIGN_VERIFY), e.g. an attacker's own.
    pub fn create_signing_key(&self) -> String {
        block_on(async {
            aws_sdk_kms::Client::new(&self.sdk_config().await)
                .create_key()
                .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
                .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
                .send()
                .await
                .expect("moto creates a signing key")
                .key_metadata
                .expect("key metadata")
                .arn
                .expect("key arn")
        })
    }

    /// The one bucket every local-state test cluster names as its `templateBucket`.
    pub fn artifact_bucket(&self) -> &str {
        static BUCKET: OnceLock<String> = OnceLock::new();
        BUCKET.get_or_init(|| self.create_bucket("artifacts", false))
    }

    /// Makes sure the EC2 key pair every test cluster names (`test-key`) exists.
    pub fn ensure_key_pair(&self) {
        block_on(async {
            let ec2 = aws_sdk_ec2::Client::new(&self.sdk_config().await);
            let exists = ec2
                .describe_key_pairs()
                .key_names("test-key")
                .send()
                .await
                .is_ok_and(|out| !out.key_pairs().is_empty());
            if !exists {
                // Another test may create it at the same moment; either way it then exists.
                let _ = ec2.create_key_pair().key_name("test-key").send().await;
            }
        });
    }

    /// Creates a public hosted zone and returns its id (without `/hostedzone/`).
    pub fn create_zone(&self, name: &str) -> String {
        block_on(async {
            let client = aws_sdk_route53::Client::new(&self.sdk_config().await);
            let out = client
                .create_hosted_zone()
                .name(name)
                .caller_reference(unique_cluster("zone"))
                .send()
                .await
                .expect("moto creates a hosted zone");
            out.hosted_zone
                .expect("a zone")
                .id
                .trim_start_matches("/hostedzone/")
                .to_string()
        })
    }

    /// Every record of a hosted zone as `NAME TYPE VALUES`, read from moto directly (not
    /// through a test's proxy), so a test can compare the zone before and after.
    pub fn zone_records(&self, zone_id: &str) -> Vec<String> {
        block_on(async {
            let client = aws_sdk_route53::Client::new(&self.sdk_config().await);
            let out = client
                .list_resource_record_sets()
                .hosted_zone_id(zone_id)
                .send()
                .await
                .expect("moto lists the zone's records");
            out.resource_record_sets()
                .iter()
                .map(|r| {
                    let values: Vec<&str> =
                        r.resource_records().iter().map(|v| v.value()).collect();
                    let alias = r.alias_target().map(|a| a.dns_name()).unwrap_or_default();
                    format!(
                        "{} {} {}{alias}",
                        r.name(),
                        r.r#type().as_str(),
                        values.join(",")
                    )
                })
                .collect()
        })
    }

    /// Creates a KMS key (through the SDK, like the code under test) and returns its ARN.
    pub fn create_kms_key(&self) -> String {
        block_on(async {
            let client = aws_sdk_kms::Client::new(&self.sdk_config().await);
            let out = client
                .create_key()
                .send()
                .await
                .expect("moto creates a KMS key");
            out.key_metadata.and_then(|m| m.arn).expect("a key ARN")
        })
    }

    /// SDK configuration pointing at this moto, as the binary's would through the environment.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-west-2"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "kube-aws-tests",
            ))
            .load()
            .await
    }

    /// What CloudFormation created for `stack`: (logical id, type, physical id) of each resource.
    pub async fn stack_resources(&self, stack: &str) -> Vec<(String, String, String)> {
        let cfn = aws_sdk_cloudformation::Client::new(&self.sdk_config().await);
        let out = cfn
            .describe_stack_resources()
            .stack_name(stack)
            .send()
            .await
            .expect("describe stack resources");
        out.stack_resources()
            .iter()
            .map(|r| {
                (
                    r.logical_resource_id().unwrap_or_default().to_string(),
                    r.resource_type().unwrap_or_default().to_string(),
                    r.physical_resource_id().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

/// Runs a future to completion on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// Environment that points the kube-aws binary at moto with dummy credentials.
pub fn aws_env(moto: &Moto) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-west-2".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        (
            "AWS_CONFIG_FILE",
            "/nonexistent/kube-aws-test-config".into(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/kube-aws-test-credentials".into(),
        ),
    ]
}

/// The binary in `dir` with no AWS to reach: an unreachable endpoint and dummy keys, so a
/// passing test proves no AWS call was made.
pub fn kube_aws_without_aws(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("kube-aws").expect("the kube-aws binary is built");
    cmd.current_dir(dir)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env_remove("AWS_PROFILE");
    cmd
}

/// The kube-aws binary, run in `dir` against moto.
pub fn kube_aws(moto: &Moto, dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("kube-aws").expect("the kube-aws binary is built");
    cmd.current_dir(dir)
        .envs(aws_env(moto))
        .env("NO_COLOR", "1");
    cmd.env_remove("AWS_PROFILE");
    cmd
}

/// How many add-ons a cluster of `init`'s defaults gets: those no cluster.yaml switch turns on.
pub fn default_addons() -> usize {
    kube_aws::render::ADDONS
        .iter()
        .filter(|addon| addon.enabled_by.is_none())
        .count()
}

/// A unique cluster name per test, so tests sharing moto never see each other's requests.
pub fn unique_cluster(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `kube-aws init` a new cluster directory with a fresh KMS key; returns (dir, cluster name).
pub fn init_cluster(moto: &Moto, prefix: &str) -> (tempfile::TempDir, String) {
    init_cluster_with(moto, prefix, &[])
}

/// Like [`init_cluster`], with extra `init` flags.
pub fn init_cluster_with(moto: &Moto, prefix: &str, extra: &[&str]) -> (tempfile::TempDir, String) {
    let name = unique_cluster(prefix);
    let dir = init_named(moto, &name, &format!("{name}.example.com"), extra);
    (dir, name)
}

/// `kube-aws init` cluster `name` serving the API at `dns_name`, with a fresh KMS key.
pub fn init_named(moto: &Moto, name: &str, dns_name: &str, extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = moto.create_kms_key();
    let out = kube_aws(moto, dir.path())
        .args([
            "init",
            "--cluster-name",
            name,
            "--external-dns-name",
            dns_name,
            "--region",
            "us-west-2",
            "--availability-zone",
            "us-west-2a",
            "--key-name",
            "test-key",
            "--kms-key-arn",
            &key,
        ])
        .args(extra)
        .args(if extra.contains(&"--state-bucket") {
            vec![]
        } else {
            vec!["--template-bucket", moto.artifact_bucket()]
        })
        .args(["--plan-signing-key-arn", moto.plan_signing_key()])
        .output()
        .expect("kube-aws runs");
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}
