//! `kube-aws export` against moto: reproducible output, no KMS call when the state is current,
//! and no private key anywhere on disk.

use std::path::Path;

use kube_aws::aws::images::Ec2Images;
use kube_aws::aws::kms::KmsVault;
use kube_aws::config::ClusterConfig;
use kube_aws::engine;
use kube_aws::engine::backend::Backend;
use kube_aws::state::State;

use crate::harness::{FLATCAR_AMI, block_on, init_cluster, kube_aws, moto};
use kube_aws::state::lock::Locker;

fn export(dir: &Path, file: &str) -> Vec<u8> {
    let out = kube_aws(moto(), dir)
        .args(["export", "-o", file])
        .output()
        .expect("kube-aws runs");
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.join(file)).expect("export wrote its file")
}

/// Writes the state an apply would leave, from the library's own build.
fn seed_state(dir: &Path, cluster: &str) {
    let moto = moto();
    block_on(async {
        let sdk = moto.sdk_config().await;
        let vault = KmsVault::new(aws_sdk_kms::Client::new(&sdk));
        let images = Ec2Images::new(aws_sdk_ec2::Client::new(&sdk));
        let config = ClusterConfig::load(dir).expect("config");
        let now = time::OffsetDateTime::now_utc();
        let inputs = engine::BuildInputs::new(&config, None, now);
        let build = engine::build(dir, &inputs, Some(&vault), Some(&images), &mut |_| {})
            .await
            .expect("build");
        let mut state = State::new(cluster, "11111111-2222-4333-8444-555555555555".into());
        state.serial = 1;
        state.tls = build.tls.assets;
        state.image = Some(build.image);
        let backend = Backend::local(dir);
        let lock = backend
            .store
            .locker
            .lock("test", "seed", now, time::Duration::minutes(5))
            .await
            .expect("lock");
        backend
            .store
            .persist(&state, None, &lock)
            .await
            .expect("persist");
        backend.store.locker.unlock(&lock).await.expect("unlock");
    });
}

/// Every file under `dir`, recursively, as text.
fn all_files(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn export_twice_against_the_same_state_is_identical_and_makes_no_kms_call() {
    let moto = moto();
    let (dir, cluster) = init_cluster(moto, "export");
    seed_state(dir.path(), &cluster);
    crate::schemas::assert_valid(
        "state.schema.json",
        &crate::schemas::json(&dir.path().join("state/state.json")),
    );
    let seeded = moto.kms_requests_for(&cluster).len();
    assert_eq!(
        seeded,
        kube_aws::assets::tls::NAMES.len(),
        "seeding issues every key asset, one Encrypt each"
    );

    let first = export(dir.path(), "first.json");
    let after_first = moto.kms_requests_for(&cluster).len();
    let second = export(dir.path(), "second.json");
    let after_second = moto.kms_requests_for(&cluster).len();

    assert_eq!(first, second, "two exports against one state differ");
    assert_eq!(after_first - seeded, 0, "the first export called KMS");
    assert_eq!(
        after_second - after_first,
        0,
        "the second export called KMS"
    );

    let stack: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(
        stack["Resources"]["InstanceController"]["Properties"]["ImageId"],
        FLATCAR_AMI
    );
}

#[test]
fn export_without_state_issues_every_key_through_kms_with_its_context() {
    let moto = moto();
    let (dir, cluster) = init_cluster(moto, "fresh");
    export(dir.path(), "stack.json");
    let requests = moto.kms_requests_for(&cluster);
    let encrypts: Vec<_> = requests
        .iter()
        .filter(|r| r.operation == "TrentService.Encrypt")
        .collect();
    assert_eq!(
        encrypts.len(),
        kube_aws::assets::tls::NAMES.len(),
        "{requests:?}"
    );
    for asset in kube_aws::assets::tls::NAMES {
        let marker = format!("\"kube-aws:asset\":\"{asset}\"");
        assert!(
            encrypts.iter().any(|r| r.body.contains(&marker)),
            "no Encrypt for {asset}"
        );
    }
    // Rendering issues the CA key itself, so it never needs Decrypt.
    assert_eq!(requests.len(), encrypts.len());
}

#[test]
fn no_private_key_in_anything_export_writes() {
    let moto = moto();
    let (dir, cluster) = init_cluster(moto, "secrets");
    seed_state(dir.path(), &cluster);
    export(dir.path(), "stack.json");
    let stdout = kube_aws(moto, dir.path()).arg("export").output().unwrap();
    assert!(stdout.status.success());

    let mut files = Vec::new();
    all_files(dir.path(), &mut files);
    files.push((
        "<stdout>".into(),
        String::from_utf8_lossy(&stdout.stdout).into_owned(),
    ));
    files.push((
        "<stderr>".into(),
        String::from_utf8_lossy(&stdout.stderr).into_owned(),
    ));
    // The userdata is gzip+base64 inside the template: look inside it too.
    let stack: serde_json::Value = serde_json::from_slice(&stdout.stdout).unwrap();
    let userdata = stack["Resources"]["InstanceController"]["Properties"]["UserData"]
        .as_str()
        .unwrap();
    let decoded = {
        use base64::Engine;
        use std::io::Read;
        let gz = base64::engine::general_purpose::STANDARD
            .decode(userdata)
            .unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    assert!(decoded.contains("apiserver-key.pem.enc"));
    files.push(("<controller userdata>".into(), decoded));

    assert!(files.iter().any(|(path, _)| path.ends_with("state.json")));
    for (path, text) in &files {
        assert!(!text.contains("PRIVATE KEY"), "{path} holds a private key");
    }
}
