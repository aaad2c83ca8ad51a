//! The release machinery as a user meets it: the release workflows are the ones dist generates
//! from dist-workspace.toml and pass actionlint, and the example workflow's install step takes
//! only the pinned release with the pinned SHA-256.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// actionlint as `scripts/build-go-tools` builds it; never skipped when missing.
pub fn actionlint_binary() -> PathBuf {
    let out = Command::new(root().join("scripts/build-go-tools"))
        .arg("--dir")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let dirs = String::from_utf8_lossy(&out.stdout).into_owned();
    let binary = PathBuf::from(
        dirs.lines()
            .nth(2)
            .expect("a third directory, actionlint's"),
    )
    .join("actionlint");
    assert!(
        binary.exists(),
        "{} is not built: run scripts/ensure-tools (it builds actionlint from its Go module)",
        binary.display()
    );
    binary
}

/// actionlint on `file`, with shellcheck on every `run:` script (exit 1 on any finding).
pub fn actionlint(file: &Path) -> Output {
    actionlint_with(file, &[])
}

fn actionlint_with(file: &Path, ignore: &[&str]) -> Output {
    let mut command = Command::new(actionlint_binary());
    command.arg("-no-color").current_dir(root());
    for pattern in ignore {
        command.args(["-ignore", pattern]);
    }
    command.arg(file).output().unwrap()
}

fn dist() -> Command {
    let binary = root().join(".tools/dist/bin/dist");
    assert!(
        binary.exists(),
        "dist is not installed: run scripts/ensure-tools (it installs the version dist-workspace.toml pins)"
    );
    let mut command = Command::new(binary);
    command.current_dir(root());
    command
}

#[test]
#[ignore = "real-component tier (dist, actionlint): scripts/test and CI run it"]
fn the_release_workflow_is_what_dist_generates_and_plans_every_promised_artifact() {
    // An edit by hand to release.yml, or a config change without `dist generate`, fails here.
    let check = dist()
        .args(["generate", "--mode", "ci", "--check"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));

    let plan = dist()
        .args(["plan", "--output-format", "json"])
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", text(&plan));
    let manifest: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let artifacts: Vec<&str> = manifest["artifacts"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for promised in [
        "kube-aws-x86_64-unknown-linux-musl.tar.xz",
        "kube-aws-aarch64-unknown-linux-musl.tar.xz",
        "kube-aws-x86_64-apple-darwin.tar.xz",
        "kube-aws-aarch64-apple-darwin.tar.xz",
        "kube-aws-x86_64-unknown-linux-musl.tar.xz.sha256",
        "kube-aws-installer.sh",
        "sha256.sum",
    ] {
        assert!(artifacts.contains(&promised), "{promised}: {artifacts:?}");
    }

    // dist's generated scripts carry shellcheck's info and style notes (unquoted variables it
    // controls, repeated redirects); anything else is a finding.
    let release = actionlint_with(
        Path::new(".github/workflows/release.yml"),
        &["SC2086:info:", "SC2129:style:"],
    );
    assert_eq!(release.status.code(), Some(0), "{}", text(&release));
    let image = actionlint(Path::new(".github/workflows/publish-image.yml"));
    assert_eq!(image.status.code(), Some(0), "{}", text(&image));
    let workflow =
        std::fs::read_to_string(root().join(".github/workflows/publish-image.yml")).unwrap();
    assert!(
        workflow.contains("sha256sum --check --strict"),
        "the image takes checked archives"
    );
}

/// The `run:` script of the example's install action.
fn install_script() -> String {
    let path = root().join("examples/github-actions/install-kube-aws/action.yml");
    let doc: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["runs"]["steps"][0]["run"].as_str().unwrap().to_string()
}

#[test]
#[ignore = "real-component tier (shellcheck, tar, xz): scripts/test and CI run it"]
fn the_install_action_takes_only_the_pinned_release_with_the_pinned_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("install.sh");
    std::fs::write(&script, install_script()).unwrap();
    let lint = Command::new("shellcheck")
        .args(["-s", "bash"])
        .arg(&script)
        .output()
        .expect("shellcheck runs (scripts/ensure-tools installs it)");
    assert!(lint.status.success(), "{}", text(&lint));

    // A release archive as dist lays it out, with a stand-in binary.
    let target = "kube-aws-x86_64-unknown-linux-musl";
    let staging = dir.path().join("staging").join(target);
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("kube-aws"), "#!/bin/sh\necho kube-aws 0.1.0\n").unwrap();
    std::fs::set_permissions(
        staging.join("kube-aws"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let archive = dir.path().join(format!("{target}.tar.xz"));
    let tar = Command::new("tar")
        .arg("-cJf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path().join("staging"))
        .arg(target)
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", text(&tar));
    let digest = kube_aws::hash::sha256_hex(std::fs::read(&archive).unwrap());

    // curl is the network here: it hands out the archive for the URL the script asks for and
    // records that URL; everything else (checks, tar, PATH) is the script's own.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let curl = bin.join("curl");
    std::fs::write(
        &curl,
        format!(
            "#!/bin/sh\nfor a; do out_next=${{take:-}}; take=; [ \"$a\" = -o ] && take=1; [ -n \"$out_next\" ] && out=$a; url=$a; done\necho \"$url\" > {}/url\ncp {} \"$out\"\n",
            dir.path().display(),
            archive.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&curl, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let run = |version: &str, sha256: &str| {
        let runner = tempfile::tempdir().unwrap();
        let github_path = runner.path().join("github_path");
        let out = Command::new("bash")
            .arg("-c")
            .arg(install_script())
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env("RUNNER_TEMP", runner.path())
            .env("GITHUB_PATH", &github_path)
            .env("VERSION", version)
            .env("SHA256", sha256)
            .output()
            .unwrap();
        let added = std::fs::read_to_string(&github_path).unwrap_or_default();
        (out, added, runner)
    };

    let (out, added, _runner) = run("0.1.0", &digest);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("kube-aws 0.1.0"), "{}", text(&out));
    assert!(Path::new(added.trim()).join("kube-aws").exists(), "{added}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("url"))
            .unwrap()
            .trim(),
        format!("https://github.com/kube-aws/kube-aws/releases/download/v0.1.0/{target}.tar.xz")
    );

    let mut other = digest.clone();
    other.replace_range(..1, if digest.starts_with('0') { "1" } else { "0" });
    for (version, sha256, says) in [
        ("0.1.0", other.as_str(), "FAILED"),
        ("0.1.0", &"0".repeat(64), "still the placeholder"),
        ("0.1.0", "ABC", "not a SHA-256"),
        ("latest", digest.as_str(), "not a release version"),
        ("0.1.0/../../evil", digest.as_str(), "not a release version"),
    ] {
        let (out, added, _runner) = run(version, sha256);
        assert!(!out.status.success(), "{version} {sha256}: {}", text(&out));
        assert!(text(&out).contains(says), "{says}: {}", text(&out));
        assert!(added.is_empty(), "nothing on PATH after a refusal: {added}");
    }
}
