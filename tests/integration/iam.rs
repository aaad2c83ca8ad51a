//! IAM policy evaluation as AWS documents it (actions, resources and conditions, explicit deny
//! first), so the tests that hold a policy to what the code does compare what each request
//! needs, not only its action name. Operators the policies here do not use are refused, so a
//! new one cannot pass unevaluated.

use std::collections::BTreeMap;

use serde_json::Value;

/// One authorisation question: an action on a resource, with the request's context keys.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub action: String,
    pub resource: String,
    /// Condition keys (`aws:RequestedRegion`, `kms:EncryptionContext:kube-aws:cluster`, …);
    /// several values for multi-valued keys.
    pub context: BTreeMap<String, Vec<String>>,
}

impl Request {
    pub fn new(action: &str, resource: &str) -> Request {
        Request {
            action: action.to_string(),
            resource: resource.to_string(),
            context: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: &str, value: &str) -> Request {
        self.context
            .entry(key.to_string())
            .or_default()
            .push(value.to_string());
        self
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)?;
        if !self.context.is_empty() {
            write!(f, " {:?}", self.context)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

/// The decision of one identity policy: a matching Deny wins, then a matching Allow.
pub fn evaluate(policy: &Value, request: &Request) -> Decision {
    let statements: Vec<&Value> = match &policy["Statement"] {
        Value::Array(list) => list.iter().collect(),
        single @ Value::Object(_) => vec![single],
        other => panic!("a policy's Statement is a list or an object, not {other}"),
    };
    let mut allowed = false;
    for statement in statements {
        if !statement_matches(statement, request) {
            continue;
        }
        match statement["Effect"].as_str() {
            Some("Deny") => return Decision::ExplicitDeny,
            Some("Allow") => allowed = true,
            other => panic!("Effect {other:?}"),
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

pub fn allows(policy: &Value, request: &Request) -> bool {
    evaluate(policy, request) == Decision::Allow
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => panic!("a condition value must be a string, not {other}"),
            })
            .collect(),
        Value::Bool(b) => vec![b.to_string()],
        Value::Number(n) => vec![n.to_string()],
        other => panic!("expected a string or a list, not {other}"),
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` any one.
pub fn wildcard(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if ignore_case {
        (
            pattern.to_lowercase().chars().collect(),
            text.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn statement_matches(statement: &Value, request: &Request) -> bool {
    let action_hit = |field: &Value| {
        strings(field)
            .iter()
            .any(|a| wildcard(a, &request.action, true))
    };
    let action = match (statement.get("Action"), statement.get("NotAction")) {
        (Some(a), None) => action_hit(a),
        (None, Some(n)) => !action_hit(n),
        _ => panic!("a statement has exactly one of Action and NotAction: {statement}"),
    };
    let resource_hit = |field: &Value| {
        strings(field).iter().any(|r| {
            substituted(r, request).is_some_and(|r| wildcard(&r, &request.resource, false))
        })
    };
    let resource = match (statement.get("Resource"), statement.get("NotResource")) {
        (Some(r), None) => resource_hit(r),
        (None, Some(n)) => !resource_hit(n),
        _ => panic!("a statement has exactly one of Resource and NotResource: {statement}"),
    };
    action && resource && conditions_hold(statement.get("Condition"), request)
}

/// `text` with each policy variable (`${ec2:SourceInstanceARN}`) replaced by the request's
/// value of that key; `None` when the request has no such value, which IAM treats as a
/// resource or condition value that matches nothing.
fn substituted(text: &str, request: &Request) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed ${…}") + start;
        let values = request.context.get(&rest[start + 2..end])?;
        let [value] = values.as_slice() else {
            panic!(
                "policy variable {} is not single-valued",
                &rest[start..=end]
            );
        };
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn conditions_hold(conditions: Option<&Value>, request: &Request) -> bool {
    let Some(conditions) = conditions else {
        return true;
    };
    conditions
        .as_object()
        .expect("Condition is an object")
        .iter()
        .all(|(operator, keys)| {
            keys.as_object()
                .expect("a condition operator maps keys to values")
                .iter()
                .all(|(key, values)| {
                    let wanted: Vec<String> = strings(values)
                        .iter()
                        .filter_map(|v| substituted(v, request))
                        .collect();
                    condition_holds(operator, &wanted, request.context.get(key))
                })
        })
}

/// One condition as IAM evaluates it: every key of an operator must hold; a key holds when
/// any of its values matches (for negated operators, when none does).
fn condition_holds(operator: &str, wanted: &[String], present: Option<&Vec<String>>) -> bool {
    let (set, operator) = match operator.split_once(':') {
        Some((set @ ("ForAllValues" | "ForAnyValue"), op)) => (Some(set), op),
        _ => (None, operator),
    };
    let (operator, if_exists) = match operator.strip_suffix("IfExists") {
        Some(op) => (op, true),
        None => (operator, false),
    };
    if operator == "Null" {
        let absent = present.is_none_or(|v| v.is_empty());
        return wanted.iter().any(|w| (w == "true") == absent);
    }
    let (negated, matches): (bool, fn(&str, &str) -> bool) = match operator {
        "StringEquals" | "ArnEquals" => (false, |w, v| w == v),
        "StringNotEquals" | "ArnNotEquals" => (true, |w, v| w == v),
        "StringEqualsIgnoreCase" => (false, |w, v| w.eq_ignore_ascii_case(v)),
        "StringLike" | "ArnLike" => (false, |w, v| wildcard(w, v, false)),
        "StringNotLike" | "ArnNotLike" => (true, |w, v| wildcard(w, v, false)),
        "Bool" => (false, |w, v| w.eq_ignore_ascii_case(v)),
        other => panic!("condition operator {other} is not evaluated by these tests"),
    };
    let values = match present {
        Some(values) if !values.is_empty() => values,
        _ => {
            return match set {
                // Over an empty set, "all values match" holds and "any value matches" not.
                Some("ForAllValues") => true,
                Some(_) => false,
                None => if_exists || negated,
            };
        }
    };
    let hit = |v: &String| wanted.iter().any(|w| matches(w, v));
    match set {
        Some("ForAllValues") => values.iter().all(|v| hit(v) != negated),
        Some(_) => values.iter().any(|v| hit(v) != negated),
        None => values.iter().any(hit) != negated,
    }
}

#[test]
fn evaluation_follows_iam_semantics() {
    let policy: Value = serde_json::from_str(
        r#"{"Statement": [
            {"Effect": "Allow", "Action": ["s3:Get*"], "Resource": "arn:aws:s3:::b/k.audit/*"},
            {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "arn:aws:kms:*:1:key/k",
             "Condition": {"StringEquals": {"kms:EncryptionContext:c": "demo", "kms:EncryptionContext:a": ["ca", "x"]}}},
            {"Effect": "Allow", "Action": "iam:CreateRole", "Resource": "arn:aws:iam::1:role/demo-*",
             "Condition": {"StringEquals": {"iam:PermissionsBoundary": "arn:aws:iam::1:policy/b"}}},
            {"Effect": "Allow", "Action": "ec2:*", "Resource": "*",
             "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}, "StringNotEquals": {"aws:RequestedRegion": "eu-west-1"}}},
            {"Effect": "Deny", "Action": "ec2:DeleteVpc", "Resource": "*"}
        ]}"#,
    )
    .unwrap();
    let get = |key: &str| Request::new("s3:GetObject", &format!("arn:aws:s3:::b/{key}"));
    assert!(allows(&policy, &get("k.audit/00000001.json")));
    assert!(!allows(&policy, &get("k")), "another object");
    assert!(!allows(
        &policy,
        &Request::new("s3:PutObject", "arn:aws:s3:::b/k.audit/1")
    ));
    let decrypt = |c: &str, a: &str| {
        Request::new("kms:Decrypt", "arn:aws:kms:us-west-2:1:key/k")
            .with("kms:EncryptionContext:c", c)
            .with("kms:EncryptionContext:a", a)
    };
    assert!(allows(&policy, &decrypt("demo", "ca")));
    assert!(
        !allows(&policy, &decrypt("demo", "apiserver")),
        "another asset"
    );
    assert!(!allows(&policy, &decrypt("other", "ca")), "another cluster");
    assert!(
        !allows(
            &policy,
            &Request::new("kms:Decrypt", "arn:aws:kms:us-west-2:1:key/k")
        ),
        "no context at all"
    );
    let role = Request::new("iam:CreateRole", "arn:aws:iam::1:role/demo-x");
    assert!(!allows(&policy, &role), "no boundary");
    assert!(allows(
        &policy,
        &role
            .clone()
            .with("iam:PermissionsBoundary", "arn:aws:iam::1:policy/b")
    ));
    let ec2 = Request::new("ec2:RunInstances", "*").with("aws:RequestedRegion", "us-west-2");
    assert!(
        allows(&policy, &ec2),
        "no tags: ForAllValues over nothing holds"
    );
    assert!(allows(&policy, &ec2.clone().with("aws:TagKeys", "a")));
    assert!(!allows(
        &policy,
        &ec2.clone()
            .with("aws:TagKeys", "a")
            .with("aws:TagKeys", "z")
    ));
    assert!(!allows(
        &policy,
        &Request::new("ec2:RunInstances", "*").with("aws:RequestedRegion", "eu-west-1")
    ));
    assert_eq!(
        evaluate(&policy, &Request::new("ec2:DeleteVpc", "*")),
        Decision::ExplicitDeny
    );
    // A policy variable is the request's value of that key, and matches nothing without one.
    let own: Value = serde_json::from_str(
        r#"{"Statement": {"Effect": "Allow", "Action": "ec2:CreateTags", "Resource": "${ec2:SourceInstanceARN}"}}"#,
    )
    .unwrap();
    let tag = |target: &str| {
        Request::new(
            "ec2:CreateTags",
            &format!("arn:aws:ec2:r:1:instance/{target}"),
        )
    };
    let from = "arn:aws:ec2:r:1:instance/i-1";
    assert!(allows(
        &own,
        &tag("i-1").with("ec2:SourceInstanceARN", from)
    ));
    assert!(!allows(
        &own,
        &tag("i-2").with("ec2:SourceInstanceARN", from)
    ));
    assert!(!allows(&own, &tag("i-1")), "not from an instance");
    assert!(wildcard("kms:*", "KMS:Decrypt", true));
    assert!(!wildcard("a?c", "abbc", false));
}
