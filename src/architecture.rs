//! ARCHITECTURE.md's dependency rules as a test over the source: no import circles between
//! modules, the AWS SDK only under `aws/`, clap and printing only in `cli` and `main`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The folders whose files are modules of their own for the circle check: a circle between
/// two of them is as bad as one between two top-level modules.
const SPLIT: [&str; 3] = ["engine", "aws", "state"];

/// A source file: its names under `src/` (`["engine", "apply", "run"]`; `mod.rs` is its
/// folder's) and its text before any test module.
struct Source {
    names: Vec<String>,
    text: String,
}

/// Every `.rs` file under `src/` but the tests.
fn sources() -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(&src).unwrap().with_extension("");
            let names: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .filter(|p| p != "mod")
                .collect();
            if names.iter().any(|p| p == "tests" || p == "architecture") {
                return None;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.split("#[cfg(test)]").next().unwrap().to_string();
            Some(Source { names, text })
        })
        .collect()
}

/// The module names belong to: the top-level module, or two levels under `SPLIT`.
fn module_of(names: &[String]) -> String {
    match names {
        [] => "lib".into(),
        [top, second, ..] if SPLIT.contains(&top.as_str()) => format!("{top}/{second}"),
        [top, ..] => top.clone(),
    }
}

/// The lower-case names a path continues with after `at` (`engine::plan::stack`), up to the
/// first type, brace or call.
fn names_from(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for segment in text.split("::") {
        let name: String = segment
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if name.is_empty() {
            break;
        }
        let whole = name.len() == segment.len();
        names.push(name);
        if !whole {
            break;
        }
    }
    names
}

/// Every path `source` names, as names from the crate's root: `crate::…` as written,
/// `super::…` from the file's own place.
fn paths_named(source: &Source) -> Vec<Vec<String>> {
    let text = &source.text;
    let mut paths: Vec<Vec<String>> = text
        .match_indices("crate::")
        .map(|(at, _)| names_from(&text[at + "crate::".len()..]))
        .collect();
    for (at, _) in text.match_indices("super::") {
        if text[..at].ends_with("::") {
            continue; // the middle of `super::super::`
        }
        let mut rest = &text[at..];
        let mut base = source.names.clone();
        while let Some(after) = rest.strip_prefix("super::") {
            base.pop();
            rest = after;
        }
        base.extend(names_from(rest));
        paths.push(base);
    }
    paths
}

fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let modules: BTreeSet<String> = sources.iter().map(|s| module_of(&s.names)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in &sources {
        let module = module_of(&source.names);
        for path in paths_named(source) {
            // `crate::aws::AwsError` names `aws` (its mod.rs), `crate::engine::x` a module
            // of its own.
            let target = match module_of(&path) {
                two if modules.contains(&two) => two,
                _ => path.first().cloned().unwrap_or_default(),
            };
            if modules.contains(&target) && target != module {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

/// A path that leads from `to` back to `from`, if there is one.
fn path_back(
    edges: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
) -> Option<Vec<String>> {
    let mut queue = vec![vec![to.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = queue.pop() {
        let last = path.last().unwrap();
        if last == from {
            return Some(path);
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        for next in edges.get(last).into_iter().flatten() {
            let mut longer = path.clone();
            longer.push(next.clone());
            queue.push(longer);
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let edges = edges();
    assert!(edges.contains_key("engine/apply") && edges.contains_key("config"));
    let mut circles = Vec::new();
    for (from, targets) in &edges {
        // A module's own submodules and their `super::` are not circles.
        for to in targets.iter().filter(|t| !t.starts_with(from.as_str())) {
            if let Some(back) = path_back(&edges, from, to) {
                circles.push(format!("{from} -> {}", back.join(" -> ")));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn only_aws_uses_the_sdk_and_only_cli_parses_flags_or_prints() {
    let mut wrong = Vec::new();
    for source in sources() {
        let (module, text) = (module_of(&source.names), source.text);
        let top = module.split('/').next().unwrap();
        if text.contains("aws_sdk_") && top != "aws" {
            wrong.push(format!("{module} uses the AWS SDK"));
        }
        if top != "cli" && top != "main" {
            for what in ["clap::", "println!", "eprintln!", "print!(", "eprint!("] {
                if text.contains(what) {
                    wrong.push(format!("{module} uses {what}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
