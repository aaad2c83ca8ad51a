//! Local checks of the stack template: valid JSON (with the offset and the lines around an
//! error), every `Ref`, `Fn::GetAtt`, `Fn::Sub` variable and `DependsOn` names something that
//! exists, resource types are known, and the size limits of CloudFormation and EC2 hold.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::finding::Finding;

const FILE: &str = "stack-template.json";
/// EC2's limit on user data, before base64.
pub const USERDATA_LIMIT: usize = 16 * 1024;
/// CloudFormation's limits on a template: inline, and through S3.
pub const INLINE_LIMIT: usize = 51_200;
pub const S3_LIMIT: usize = 1_000_000;
/// CloudFormation's limit on resources in one stack.
pub const RESOURCE_LIMIT: usize = 500;

/// The 1-based line of the first occurrence of `needle`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    let at = text.find(needle)?;
    Some(text[..at].matches('\n').count() + 1)
}

fn known_types() -> BTreeSet<String> {
    let table: Value = serde_json::from_str(include_str!("../../data/create-only-properties.json"))
        .expect("the table is valid JSON");
    table["types"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every `${Name}` in a `Fn::Sub` string, without `${!Literal}` escapes.
fn sub_variables(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find('}') else { break };
        let name = &rest[..end];
        if !name.starts_with('!') {
            out.push(name.split('.').next().unwrap_or(name).to_string());
        }
        rest = &rest[end + 1..];
    }
    out
}

struct Names {
    defined: BTreeSet<String>,
}

impl Names {
    fn exists(&self, name: &str) -> bool {
        name.starts_with("AWS::") || self.defined.contains(name)
    }
}

fn walk(value: &Value, names: &Names, text: &str, out: &mut Vec<Finding>) {
    let missing = |what: &str, name: &str, needle: String, out: &mut Vec<Finding>| {
        out.push(Finding::error(
            FILE,
            line_of(text, &needle),
            format!(
                "{what} names \"{name}\", which is not a resource or parameter of the template"
            ),
        ));
    };
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("Ref", Value::String(name)) if !names.exists(name) => {
                        missing("Ref", name, format!("\"Ref\": \"{name}\""), out)
                    }
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        if let Some(name) = parts.first().and_then(Value::as_str)
                            && !names.exists(name)
                        {
                            missing("Fn::GetAtt", name, format!("\"{name}\""), out);
                        }
                    }
                    ("Fn::GetAtt", Value::String(dotted)) => {
                        let name = dotted.split('.').next().unwrap_or(dotted);
                        if !names.exists(name) {
                            missing("Fn::GetAtt", name, dotted.clone(), out);
                        }
                    }
                    ("Fn::Sub", sub) => {
                        let (template, vars): (&str, BTreeSet<String>) = match sub {
                            Value::String(s) => (s, BTreeSet::new()),
                            Value::Array(parts) => (
                                parts.first().and_then(Value::as_str).unwrap_or(""),
                                parts
                                    .get(1)
                                    .and_then(Value::as_object)
                                    .map(|m| m.keys().cloned().collect())
                                    .unwrap_or_default(),
                            ),
                            _ => ("", BTreeSet::new()),
                        };
                        for var in sub_variables(template) {
                            if !vars.contains(&var) && !names.exists(&var) {
                                missing("Fn::Sub variable", &var, format!("${{{var}"), out);
                            }
                        }
                    }
                    _ => {}
                }
                walk(inner, names, text, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, names, text, out)),
        _ => {}
    }
}

/// Every finding in the rendered stack template.
pub fn check(text: &str) -> Vec<Finding> {
    let template: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let lines: Vec<&str> = text.lines().collect();
            let from = e.line().saturating_sub(3);
            let context: Vec<String> = lines
                .iter()
                .enumerate()
                .skip(from)
                .take(5)
                .map(|(i, l)| {
                    format!(
                        "{:>5}{} {l}",
                        i + 1,
                        if i + 1 == e.line() { ">" } else { " " }
                    )
                })
                .collect();
            let offset: usize = lines
                .iter()
                .take(e.line().saturating_sub(1))
                .map(|l| l.len() + 1)
                .sum::<usize>()
                + e.column().saturating_sub(1);
            return vec![Finding::error(
                FILE,
                Some(e.line()),
                format!(
                    "not valid JSON at offset {offset} (column {}): {e}\n{}",
                    e.column(),
                    context.join("\n")
                ),
            )];
        }
    };
    let mut out = Vec::new();
    let resources = template["Resources"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if resources.is_empty() {
        out.push(Finding::error(FILE, None, "the template has no Resources"));
    }
    let mut defined: BTreeSet<String> = resources.keys().cloned().collect();
    if let Some(parameters) = template["Parameters"].as_object() {
        defined.extend(parameters.keys().cloned());
    }
    let names = Names { defined };
    walk(&template, &names, text, &mut out);

    let types = known_types();
    for (id, resource) in &resources {
        // Only findings need a line: searching the text for every resource would make
        // validation quadratic in the template's size.
        let here = || line_of(text, &format!("\"{id}\": {{"));
        let depends: Vec<&str> = match &resource["DependsOn"] {
            Value::String(s) => vec![s.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        for target in depends {
            if !resources.contains_key(target) {
                out.push(Finding::error(FILE, here(), format!("{id}: DependsOn names \"{target}\", which is not a resource of the template")));
            }
        }
        match resource["Type"].as_str() {
            None => out.push(Finding::error(FILE, here(), format!("{id}: has no Type"))),
            Some(t)
                if !types.contains(t)
                    && !t.starts_with("Custom::")
                    && !t.starts_with("AWS::CloudFormation::") =>
            {
                out.push(Finding::warning(FILE, here(), format!("{id}: resource type {t} is not one the built-in template uses; kube-aws cannot forecast its replacements")));
            }
            Some(_) => {}
        }
        let props = &resource["Properties"];
        let userdata = props["UserData"]
            .as_str()
            .or_else(|| props["LaunchTemplateData"]["UserData"].as_str());
        if let Some(u) = userdata {
            match BASE64.decode(u) {
                Ok(bytes) if bytes.len() > USERDATA_LIMIT => out.push(Finding::error(
                    FILE,
                    here(),
                    format!("{id}: UserData is {} bytes before base64, over EC2's {USERDATA_LIMIT}-byte limit", bytes.len()),
                )),
                Ok(_) => {}
                Err(e) => out.push(Finding::error(FILE, here(), format!("{id}: UserData is not base64: {e}"))),
            }
        }
    }
    if resources.len() > RESOURCE_LIMIT {
        out.push(Finding::error(FILE, None, format!("the template has {} resources, over CloudFormation's {RESOURCE_LIMIT}-resource limit per stack", resources.len())));
    }
    // CloudFormation's limits apply to what plan submits: the template without indentation.
    // One over the inline limit is no finding: plans upload it to templateBucket (or the
    // state bucket), which every configuration has.
    let submitted = crate::render::submitted_stack(text).len();
    if submitted > S3_LIMIT {
        out.push(Finding::error(
            FILE,
            None,
            format!(
                "the template is {submitted} bytes, over CloudFormation's {S3_LIMIT}-byte limit"
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_references_oversized_userdata_and_unknown_types_are_found() {
        let big = BASE64.encode(vec![7u8; USERDATA_LIMIT + 1]);
        let text = format!(
            "{{\n  \"Resources\": {{\n    \"A\": {{\n      \"Type\": \"AWS::EC2::Instance\",\n      \"DependsOn\": \"Nope\",\n      \"Properties\": {{\"SubnetId\": {{\"Ref\": \"Missing\"}}, \"UserData\": \"{big}\"}}\n    }},\n    \"B\": {{\"Type\": \"AWS::Foo::Bar\", \"Properties\": {{\"X\": {{\"Fn::Sub\": \"${{A}}-${{Ghost}}-${{AWS::Region}}-${{!Lit}}\"}}, \"Y\": {{\"Fn::GetAtt\": [\"Gone\", \"Arn\"]}}}}}}\n  }}\n}}\n"
        );
        let found: Vec<String> = check(&text).iter().map(|f| f.to_string()).collect();
        assert!(found.contains(&"stack-template.json:6: error: Ref names \"Missing\", which is not a resource or parameter of the template".to_string()), "{found:#?}");
        assert!(
            found
                .iter()
                .any(|f| f.contains("Fn::Sub variable names \"Ghost\"")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.contains("Fn::GetAtt names \"Gone\"")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.contains(":3: error: A: DependsOn names \"Nope\"")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.contains("A: UserData is 16385 bytes before base64")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.contains("warning: B: resource type AWS::Foo::Bar")),
            "{found:#?}"
        );
        assert_eq!(found.len(), 6, "{found:#?}");
    }

    #[test]
    fn more_than_500_resources_is_an_error() {
        let resources: Vec<String> = (0..501)
            .map(|i| format!("\"R{i}\": {{\"Type\": \"AWS::EC2::EIP\"}}"))
            .collect();
        let text = format!("{{\"Resources\": {{{}}}}}", resources.join(", "));
        let found: Vec<String> = check(&text).iter().map(|f| f.to_string()).collect();
        assert_eq!(
            found,
            vec![
                "stack-template.json: error: the template has 501 resources, over CloudFormation's 500-resource limit per stack"
            ]
        );
    }

    #[test]
    fn a_syntax_error_shows_offset_and_context() {
        let found = check("{\n  \"Resources\": {\n    \"A\": {,}\n  }\n}\n");
        assert_eq!(found.len(), 1);
        let text = found[0].to_string();
        assert!(
            text.starts_with("stack-template.json:3: error: not valid JSON at offset 29"),
            "{text}"
        );
        assert!(text.contains("    3>     \"A\": {,}"), "{text}");
    }
}
