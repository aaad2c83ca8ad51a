//! Maps a field path in `cluster.yaml` back to its line and column, using saphyr's marked nodes,
//! and knows which keys each section accepts (for "did you mean" suggestions).

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use serde::de::{self, Deserialize, Visitor};

use super::{ClusterConfig, NodePoolConfig, StateConfig, SubnetConfig, TaintConfig, problem};
use crate::finding::Finding;

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Renders a path the way users write it: `nodePools[1].labels`.
pub fn display_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Parses a path as serde_norway writes it in its errors (`nodePools[1].count`); `None` for
/// anything else.
pub fn parse_path(text: &str) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    for part in text.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key.to_string()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']')?;
            out.push(Segment::Index(inner[..end].parse().ok()?));
            rest = &inner[end + 1..];
        }
        if !rest.is_empty() || (key.is_empty() && out.is_empty()) {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Removes the field at `path` from `value`; whether there was one.
pub fn remove_path(value: &mut serde_norway::Value, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for segment in parents {
        let next = match (segment, node) {
            (Segment::Key(k), serde_norway::Value::Mapping(m)) => m.get_mut(k.as_str()),
            (Segment::Index(i), serde_norway::Value::Sequence(s)) => s.get_mut(*i),
            _ => None,
        };
        match next {
            Some(child) => node = child,
            None => return false,
        }
    }
    match (last, node) {
        (Segment::Key(k), serde_norway::Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        // An element is replaced by null rather than removed, so later indexes keep their
        // places (and their line numbers).
        (Segment::Index(i), serde_norway::Value::Sequence(s)) if *i < s.len() => {
            let was_null = s[*i].is_null();
            s[*i] = serde_norway::Value::Null;
            !was_null
        }
        _ => false,
    }
}

/// Converts serde_ignored's path (innermost last) into segments from the root.
pub fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut current = path;
    loop {
        match current {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                out.push(Segment::Index(*index));
                current = parent;
            }
            serde_ignored::Path::Map { parent, key } => {
                out.push(Segment::Key(key.clone()));
                current = parent;
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => current = parent,
        }
    }
    out.reverse();
    out
}

/// The parsed document with positions, for answering "where is this field?".
pub struct Locator {
    root: Option<MarkedYamlOwned>,
}

impl Locator {
    /// Parses `text`; a YAML syntax error becomes a problem with its position.
    pub fn new(text: &str) -> Result<Locator, Box<Finding>> {
        let docs = MarkedYamlOwned::load_from_str(text).map_err(|e| {
            Box::new(problem(
                String::new(),
                Some(e.marker().line()),
                Some(e.marker().col() + 1),
                format!("YAML syntax error: {}", e.info()),
            ))
        })?;
        Ok(Locator {
            root: docs.into_iter().next(),
        })
    }

    /// 1-based (line, column) of the key that names `path`, or of its value for indices.
    /// Falls back to the nearest ancestor that exists in the file.
    pub fn position(&self, path: &[Segment]) -> Option<(usize, usize)> {
        self.walk(path).0
    }

    /// Follows `path` as far as the file goes: the position reached, and whether all of it
    /// exists.
    fn walk(&self, path: &[Segment]) -> (Option<(usize, usize)>, bool) {
        let Some(mut node) = self.root.as_ref() else {
            return (None, false);
        };
        let mut best = None;
        for segment in path {
            let next = match (segment, &node.data) {
                (Segment::Key(key), YamlDataOwned::Mapping(map)) => map
                    .iter()
                    .find(|(k, _)| scalar_text(k).as_deref() == Some(key))
                    .map(|(k, v)| (marker(k), v)),
                (Segment::Index(i), YamlDataOwned::Sequence(items)) => {
                    items.get(*i).map(|item| (marker(item), item))
                }
                _ => None,
            };
            match next {
                Some((position, child)) => {
                    best = Some(position);
                    node = child;
                }
                None => return (best, false),
            }
        }
        (best.or(Some(marker(node))), true)
    }

    /// A problem for a key that the model does not know, with a suggestion when one is close.
    pub fn unknown_key(&self, path: &[Segment]) -> Finding {
        let (line, column) = self.position(path).unzip();
        let key = match path.last() {
            Some(Segment::Key(key)) => key.as_str(),
            _ => "",
        };
        let mut message = format!("unknown key \"{key}\"");
        if let Some(suggestion) = suggest(key, known_keys_at(&path[..path.len().saturating_sub(1)]))
        {
            message.push_str(&format!(" (did you mean \"{suggestion}\"?)"));
        }
        problem(display_path(path), line, column, message)
    }

    /// A problem about an existing field, positioned at that field.
    /// A field the file does not set is named as its default, since that is what is wrong.
    pub fn problem(&self, path: &[Segment], message: impl Into<String>) -> Finding {
        let mut message = message.into();
        let position = match self.walk(path) {
            (position, true) => position,
            _ => {
                message.push_str(" (not set in the file, so this is the default)");
                None
            }
        };
        let (line, column) = position.unzip();
        problem(display_path(path), line, column, message)
    }
}

fn marker(node: &MarkedYamlOwned) -> (usize, usize) {
    (node.span.start.line(), node.span.start.col() + 1)
}

fn scalar_text(node: &MarkedYamlOwned) -> Option<String> {
    match &node.data {
        YamlDataOwned::Value(ScalarOwned::String(s)) => Some(s.clone()),
        YamlDataOwned::Value(ScalarOwned::Integer(i)) => Some(i.to_string()),
        YamlDataOwned::Value(ScalarOwned::Boolean(b)) => Some(b.to_string()),
        YamlDataOwned::Representation(s, _, _) => Some(s.clone()),
        _ => None,
    }
}

/// The closest known key, if it is close enough to be a likely typo.
fn suggest<'a>(key: &str, known: &'a [&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| {
            (
                strsim::jaro_winkler(&key.to_lowercase(), &k.to_lowercase()),
                *k,
            )
        })
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// The keys a section accepts, read from the serde model itself so the list never drifts.
fn known_keys_at(parent: &[Segment]) -> &'static [&'static str] {
    let keys: Vec<&str> = parent
        .iter()
        .filter_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
        .collect();
    match keys.as_slice() {
        [] => struct_fields::<ClusterConfig>(),
        ["subnets"] => struct_fields::<SubnetConfig>(),
        ["nodePools"] => struct_fields::<NodePoolConfig>(),
        ["nodePools", "taints"] => struct_fields::<TaintConfig>(),
        ["state"] => struct_fields::<StateConfig>(),
        _ => &[],
    }
}

/// Asks a type's `Deserialize` impl for the field names it passes to `deserialize_struct`.
fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct FieldCatcher;
    #[derive(Debug)]
    struct Caught(&'static [&'static str]);
    impl std::fmt::Display for Caught {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("fields caught")
        }
    }
    impl std::error::Error for Caught {}
    impl de::Error for Caught {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Caught(&[])
        }
    }
    impl<'de> de::Deserializer<'de> for FieldCatcher {
        type Error = Caught;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Caught> {
            Err(Caught(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Caught> {
            Err(Caught(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(FieldCatcher) {
        Err(Caught(fields)) => fields,
        Ok(_) => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_fields_lists_the_renamed_keys() {
        let fields = struct_fields::<ClusterConfig>();
        assert!(fields.contains(&"externalDNSName"), "{fields:?}");
        assert!(fields.contains(&"nodePools"));
        assert_eq!(
            struct_fields::<SubnetConfig>(),
            &["id", "availabilityZone", "instanceCIDR"]
        );
    }

    #[test]
    fn suggest_finds_close_keys_only() {
        let known = struct_fields::<ClusterConfig>();
        assert_eq!(
            suggest("workerInstanceTyp", known),
            Some("workerInstanceType")
        );
        assert_eq!(suggest("zzzz", known), None);
    }

    #[test]
    fn position_walks_mappings_and_sequences() {
        let text = "a: 1\nlist:\n  - name: x\n  - name: y\n    extra: 2\n";
        let locator = Locator::new(text).unwrap();
        let path = [
            Segment::Key("list".into()),
            Segment::Index(1),
            Segment::Key("extra".into()),
        ];
        assert_eq!(locator.position(&path), Some((5, 5)));
        assert_eq!(display_path(&path), "list[1].extra");
    }
}
