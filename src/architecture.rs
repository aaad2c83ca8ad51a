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

/// Every full path a `use` tree or an inline path starting at `text` spells out, braces
/// expanded: `a::{b::C, d}` gives `[a, b, C]` and `[a, d]`. Stops at anything that is not a
/// path (a call, a generic, a space after the last name).
fn path_leaves(text: &str) -> Vec<Vec<String>> {
    /// One path from `at`, each `{…}` group in it expanded.
    fn tree(text: &str, at: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        loop {
            if text.as_bytes().get(*at) == Some(&b'{') {
                group(text, at, &path, out);
                return;
            }
            let name: String = text[*at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            *at += name.len();
            if !name.is_empty() {
                path.push(name);
            }
            if text[*at..].starts_with("::") {
                *at += 2;
                continue;
            }
            out.push(path);
            return;
        }
    }
    /// The items of the group at `at` (its `{`), each a tree under `prefix`.
    fn group(text: &str, at: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let bytes = text.as_bytes();
        *at += 1;
        loop {
            while bytes.get(*at).is_some_and(|b| b.is_ascii_whitespace()) {
                *at += 1;
            }
            if bytes.get(*at).is_none_or(|b| *b == b'}') {
                *at += 1;
                return;
            }
            tree(text, at, prefix, out);
            // Skip `as Alias`, up to the next item or the closing brace.
            while bytes.get(*at).is_some_and(|b| *b != b',' && *b != b'}') {
                *at += 1;
            }
            if bytes.get(*at) == Some(&b',') {
                *at += 1;
            }
        }
    }
    let mut out = Vec::new();
    tree(text, &mut 0, &[], &mut out);
    out
}

/// Every path `source` names, as names from the crate's root: `crate::…` as written,
/// `super::…` from the file's own place.
fn paths_named(source: &Source) -> Vec<Vec<String>> {
    let text = &source.text;
    let mut paths: Vec<Vec<String>> = text
        .match_indices("crate::")
        .flat_map(|(at, _)| path_leaves(&text[at + "crate::".len()..]))
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
        for leaf in path_leaves(rest) {
            paths.push(base.iter().cloned().chain(leaf).collect());
        }
    }
    paths
}

/// What each file re-exports: (the file's names, the item's name) → the path it comes from.
/// `pub use apply::checks::PlanMismatch;` in engine/mod.rs makes `crate::engine::PlanMismatch`
/// name engine/apply. Glob re-exports (`pub use model::*`) are not followed.
fn re_exports(sources: &[Source]) -> BTreeMap<(Vec<String>, String), Vec<String>> {
    let mut out = BTreeMap::new();
    for source in sources {
        let text = &source.text;
        for keyword in ["pub use ", "pub(crate) use ", "pub(super) use "] {
            for (at, _) in text.match_indices(keyword) {
                // The whole statement, however many lines it spans.
                let statement = &text[at + keyword.len()..];
                let tree = &statement[..statement.find(';').unwrap_or(statement.len())];
                let (base, tree) = if let Some(rest) = tree.strip_prefix("crate::") {
                    (Vec::new(), rest)
                } else {
                    let mut base = source.names.clone();
                    let mut rest = tree.strip_prefix("self::").unwrap_or(tree);
                    while let Some(after) = rest.strip_prefix("super::") {
                        base.pop();
                        rest = after;
                    }
                    (base, rest)
                };
                for leaf in path_leaves(tree) {
                    if let Some(item) = leaf.last() {
                        let from: Vec<String> = base.iter().cloned().chain(leaf.clone()).collect();
                        out.insert((source.names.clone(), item.clone()), from);
                    }
                }
            }
        }
    }
    out
}

/// The file a path leads to, after following re-exports: its longest prefix that is a source
/// file, unless the next name is re-exported there from elsewhere.
fn file_of(
    path: &[String],
    files: &BTreeSet<Vec<String>>,
    exports: &BTreeMap<(Vec<String>, String), Vec<String>>,
) -> Vec<String> {
    let mut path = path.to_vec();
    // A re-export of a re-export is followed too; a bound stops a (non-compiling) loop.
    for _ in 0..8 {
        let file_len = (0..=path.len())
            .rev()
            .find(|n| files.contains(&path[..*n]))
            .unwrap_or(0);
        let file = path[..file_len].to_vec();
        let Some(item) = path.get(file_len) else {
            return file;
        };
        match exports.get(&(file.clone(), item.clone())) {
            Some(from) => {
                let mut next = from.clone();
                next.extend(path[file_len + 1..].iter().cloned());
                path = next;
            }
            None => return file,
        }
    }
    path
}

fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let modules: BTreeSet<String> = sources.iter().map(|s| module_of(&s.names)).collect();
    let files: BTreeSet<Vec<String>> = sources.iter().map(|s| s.names.clone()).collect();
    let exports = re_exports(&sources);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in &sources {
        let module = module_of(&source.names);
        for path in paths_named(source) {
            let target = module_of(&file_of(&path, &files, &exports));
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
