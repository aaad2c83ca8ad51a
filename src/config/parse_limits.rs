//! How far kube-aws reads a cluster.yaml it cannot take as it is: bounds on size and depth
//! before any parser runs, and the rest of the file's findings when one field fails.

use super::*;

/// The largest cluster.yaml kube-aws reads; real ones are a few kilobytes.
const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// The deepest nesting kube-aws reads; cluster.yaml needs five levels.
const MAX_NESTING: usize = 64;

/// Why `text` is too large or too deeply nested to parse, at the line where it gets so. Depth
/// is over-estimated (each indentation column and each `- ` counts as a level, plus open flow
/// brackets), which is safe: the parsers' recursion is what must stay bounded.
pub(super) fn beyond_bounds(text: &str) -> Option<Finding> {
    nested_beyond(text, MAX_NESTING)
}

/// [`beyond_bounds`] with another depth: rendered cloud-configs carry scripts and manifests
/// in block scalars, indented further than any cluster.yaml, and get a wider bound.
pub(crate) fn nested_beyond(text: &str, max_nesting: usize) -> Option<Finding> {
    if text.len() > MAX_CONFIG_BYTES {
        return Some(general_problem(format!(
            "{} bytes: larger than the {MAX_CONFIG_BYTES} bytes kube-aws reads",
            text.len()
        )));
    }
    let mut flow = 0usize;
    for (index, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let mut rest = line.trim_start_matches(' ');
        let mut dashes = 0;
        // `- `, and the explicit key and value indicators `? ` and `: `, each open a level.
        while let Some(after) = rest
            .strip_prefix("- ")
            .or_else(|| rest.strip_prefix("? "))
            .or_else(|| rest.strip_prefix(": "))
            .or_else(|| matches!(rest, "-" | "?" | ":").then_some(""))
        {
            dashes += 1;
            rest = after.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
        }
        let mut deepest_flow = flow;
        let mut quoted: Option<char> = None;
        for ch in rest.chars() {
            match (quoted, ch) {
                (Some(q), c) if c == q => quoted = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quoted = Some(ch),
                (None, '#') => break,
                (None, '[' | '{') => {
                    flow += 1;
                    deepest_flow = deepest_flow.max(flow);
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
        if indent + dashes + deepest_flow > max_nesting {
            return Some(problem(
                String::new(),
                Some(index + 1),
                None,
                format!(
                    "nested more than {max_nesting} levels deep, which no file kube-aws reads needs"
                ),
            ));
        }
    }
    None
}

/// How many fields that fail to parse are set aside, one at a time, before the rest of the
/// file is checked without them.
const MAX_SET_ASIDE: usize = 32;

/// Everything else wrong with a file whose field failed to parse: that field is set aside
/// (and each next one that fails, up to [`MAX_SET_ASIDE`]), and the rest is parsed and checked
/// semantically, so one run reports the type errors, the unknown keys and the semantic errors
/// together. A field that cannot be set aside (a required one) ends the search.
pub(super) fn lenient_findings(
    text: &str,
    first: &serde_norway::Error,
    locator: &Locator,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Ok(mut value) = serde_norway::from_str::<serde_norway::Value>(text) else {
        return findings; // not even YAML: the syntax error is the finding
    };
    let mut failed = first.to_string();
    let mut set_aside: Vec<Vec<Segment>> = Vec::new();
    for _ in 0..MAX_SET_ASIDE {
        let Some(path) = failed
            .split_once(": ")
            .and_then(|(path, _)| locate::parse_path(path))
        else {
            return findings;
        };
        if !locate::remove_path(&mut value, &path) {
            return findings;
        }
        set_aside.push(path);
        let Ok(rest) = serde_norway::to_string(&value) else {
            return findings;
        };
        let mut unknown = Vec::new();
        let de = serde_norway::Deserializer::from_str(&rest);
        let parsed: Result<ClusterConfig, _> =
            serde_ignored::deserialize(de, |path| unknown.push(locate::segments(&path)));
        findings.extend(unknown.iter().map(|segments| locator.unknown_key(segments)));
        match parsed {
            Ok(config) => {
                findings.extend(validate::semantic_problems(&config, locator));
                return findings;
            }
            Err(e) => {
                // Positions in the re-serialised text mean nothing: place it in the original.
                let problem = yaml_problem(&e);
                match locate::parse_path(&problem.field) {
                    // An error about what was set aside (a required field now missing, an
                    // element now null) is that field's finding again, not a new one.
                    Some(path) if set_aside.iter().any(|gone| gone.starts_with(&path)) => {
                        return findings;
                    }
                    Some(path) => findings.push(locator.problem(&path, problem.message)),
                    None => return findings,
                }
                failed = e.to_string();
            }
        }
    }
    findings
}
