//! Where a plan or an apply came from, for the audit log: the git commit of the cluster
//! directory (and whether it had uncommitted changes), and the CI run and pull request when
//! run in CI. Read from git and from the environment variables CI systems set; nothing here
//! fails a run: what cannot be learned is left out.

use std::path::Path;
use std::process::Command;

use crate::planfile::Provenance;

/// What git and the environment say about this run.
pub fn collect(dir: &Path) -> Provenance {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (git_commit, git_dirty) = git(dir);
    Provenance {
        git_commit,
        git_dirty,
        ci_run_url: ci_run_url(&env),
        pull_request: pull_request(&env),
    }
}

fn git(dir: &Path) -> (Option<String>, Option<bool>) {
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(commit) = run(&["rev-parse", "HEAD"]).filter(|c| c.len() == 40) else {
        return (None, None);
    };
    // Only the cluster directory counts: the plan file or state written beside it do not.
    let dirty = run(&[
        "status",
        "--porcelain",
        "--",
        ".",
        ":(exclude)state",
        ":(exclude,glob)*.json",
    ])
    .map(|s| !s.is_empty());
    (Some(commit), dirty)
}

/// The run's URL: GitHub Actions, GitLab CI, or the `BUILD_URL` Jenkins and others set.
fn ci_run_url(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if let (Some(server), Some(repo), Some(run)) = (
        env("GITHUB_SERVER_URL"),
        env("GITHUB_REPOSITORY"),
        env("GITHUB_RUN_ID"),
    ) {
        let attempt = env("GITHUB_RUN_ATTEMPT")
            .map(|a| format!("/attempts/{a}"))
            .unwrap_or_default();
        return Some(format!("{server}/{repo}/actions/runs/{run}{attempt}"));
    }
    env("CI_JOB_URL").or_else(|| env("BUILD_URL"))
}

/// The pull (merge) request this run is for: GitHub's `refs/pull/N/merge`, GitLab's merge
/// request, Jenkins' `CHANGE_ID`.
fn pull_request(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(number) = env("GITHUB_REF")
        .as_deref()
        .and_then(|r| r.strip_prefix("refs/pull/"))
        .and_then(|r| r.split('/').next())
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(match (env("GITHUB_SERVER_URL"), env("GITHUB_REPOSITORY")) {
            (Some(server), Some(repo)) => format!("{server}/{repo}/pull/{number}"),
            _ => format!("#{number}"),
        });
    }
    env("CI_MERGE_REQUEST_IID")
        .map(|iid| match env("CI_MERGE_REQUEST_PROJECT_URL") {
            Some(project) => format!("{project}/-/merge_requests/{iid}"),
            None => format!("!{iid}"),
        })
        .or_else(|| env("CHANGE_URL"))
        .or_else(|| env("CHANGE_ID").map(|id| format!("#{id}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn from(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn github_actions_names_the_run_and_the_pull_request() {
        let env = from(&[
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "acme/clusters"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_REF", "refs/pull/17/merge"),
        ]);
        assert_eq!(
            ci_run_url(&env).as_deref(),
            Some("https://github.com/acme/clusters/actions/runs/42/attempts/2")
        );
        assert_eq!(
            pull_request(&env).as_deref(),
            Some("https://github.com/acme/clusters/pull/17")
        );
        // A push to main is no pull request.
        let main = from(&[("GITHUB_REF", "refs/heads/main")]);
        assert_eq!(pull_request(&main), None);
    }

    #[test]
    fn gitlab_and_jenkins_by_their_own_variables() {
        let gitlab = from(&[
            ("CI_JOB_URL", "https://gitlab.example/acme/c/-/jobs/9"),
            ("CI_MERGE_REQUEST_IID", "5"),
            (
                "CI_MERGE_REQUEST_PROJECT_URL",
                "https://gitlab.example/acme/c",
            ),
        ]);
        assert_eq!(
            ci_run_url(&gitlab).as_deref(),
            Some("https://gitlab.example/acme/c/-/jobs/9")
        );
        assert_eq!(
            pull_request(&gitlab).as_deref(),
            Some("https://gitlab.example/acme/c/-/merge_requests/5")
        );
        let jenkins = from(&[("BUILD_URL", "https://ci/job/x/3/"), ("CHANGE_ID", "8")]);
        assert_eq!(ci_run_url(&jenkins).as_deref(), Some("https://ci/job/x/3/"));
        assert_eq!(pull_request(&jenkins).as_deref(), Some("#8"));
        assert_eq!(ci_run_url(&from(&[])), None);
    }
}
