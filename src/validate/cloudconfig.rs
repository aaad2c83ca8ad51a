//! The CoreOS/Flatcar cloud-config dialect as a schema (keys, types, allowed values), and a
//! check of a rendered cloud-config against it that reports every finding with its line.

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

use crate::finding::Finding;

/// What a key's value must be.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int,
    /// A string or number (etcd and fleet options accept both).
    Scalar,
    Enum(&'static [&'static str]),
    StrList,
    Map(&'static [(&'static str, Kind)]),
    List(&'static [(&'static str, Kind)]),
    /// A systemd unit file's text.
    Unit,
}

const ENCODINGS: &[&str] = &[
    "b64",
    "base64",
    "gz",
    "gzip",
    "gz+base64",
    "gzip+base64",
    "gz+b64",
    "gzip+b64",
];
const UNIT_COMMANDS: &[&str] = &[
    "start",
    "stop",
    "restart",
    "reload",
    "try-restart",
    "reload-or-restart",
    "reload-or-try-restart",
];
const DROP_IN: &[(&str, Kind)] = &[("name", Kind::Str), ("content", Kind::Unit)];
const UNIT: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("runtime", Kind::Bool),
    ("enable", Kind::Bool),
    ("content", Kind::Unit),
    ("command", Kind::Enum(UNIT_COMMANDS)),
    ("mask", Kind::Bool),
    ("drop-ins", Kind::List(DROP_IN)),
    ("drop_ins", Kind::List(DROP_IN)),
];
const ETCD2: &[(&str, Kind)] = &[
    ("name", Kind::Scalar),
    ("data_dir", Kind::Scalar),
    ("wal_dir", Kind::Scalar),
    ("snapshot_count", Kind::Scalar),
    ("heartbeat_interval", Kind::Scalar),
    ("election_timeout", Kind::Scalar),
    ("listen_peer_urls", Kind::Scalar),
    ("listen_client_urls", Kind::Scalar),
    ("max_snapshots", Kind::Scalar),
    ("max_wals", Kind::Scalar),
    ("cors", Kind::Scalar),
    ("initial_advertise_peer_urls", Kind::Scalar),
    ("initial_cluster", Kind::Scalar),
    ("initial_cluster_state", Kind::Enum(&["new", "existing"])),
    ("initial_cluster_token", Kind::Scalar),
    ("advertise_client_urls", Kind::Scalar),
    ("discovery", Kind::Scalar),
    ("discovery_srv", Kind::Scalar),
    ("discovery_fallback", Kind::Scalar),
    ("discovery_proxy", Kind::Scalar),
    ("strict_reconfig_check", Kind::Bool),
    ("proxy", Kind::Enum(&["on", "off", "readonly"])),
    ("ca_file", Kind::Scalar),
    ("cert_file", Kind::Scalar),
    ("key_file", Kind::Scalar),
    ("client_cert_auth", Kind::Bool),
    ("trusted_ca_file", Kind::Scalar),
    ("auto_tls", Kind::Bool),
    ("peer_ca_file", Kind::Scalar),
    ("peer_cert_file", Kind::Scalar),
    ("peer_key_file", Kind::Scalar),
    ("peer_client_cert_auth", Kind::Bool),
    ("peer_trusted_ca_file", Kind::Scalar),
    ("peer_auto_tls", Kind::Bool),
    ("debug", Kind::Bool),
    ("log_package_levels", Kind::Scalar),
];
const FLEET: &[(&str, Kind)] = &[
    ("agent_ttl", Kind::Scalar),
    ("enable_grpc", Kind::Bool),
    ("engine_reconcile_interval", Kind::Scalar),
    ("etcd_cafile", Kind::Scalar),
    ("etcd_certfile", Kind::Scalar),
    ("etcd_keyfile", Kind::Scalar),
    ("etcd_key_prefix", Kind::Scalar),
    ("etcd_request_timeout", Kind::Scalar),
    ("etcd_servers", Kind::Scalar),
    ("metadata", Kind::Scalar),
    ("public_ip", Kind::Scalar),
    ("verbosity", Kind::Int),
];
const FLANNEL: &[(&str, Kind)] = &[
    ("etcd_endpoints", Kind::Scalar),
    ("etcd_cafile", Kind::Scalar),
    ("etcd_certfile", Kind::Scalar),
    ("etcd_keyfile", Kind::Scalar),
    ("etcd_prefix", Kind::Scalar),
    ("etcd_username", Kind::Scalar),
    ("etcd_password", Kind::Scalar),
    ("ip_masq", Kind::Bool),
    ("subnet_file", Kind::Scalar),
    ("interface", Kind::Scalar),
    ("public_ip", Kind::Scalar),
];
const LOCKSMITH: &[(&str, Kind)] = &[
    ("endpoint", Kind::Scalar),
    ("etcd_cafile", Kind::Scalar),
    ("etcd_certfile", Kind::Scalar),
    ("etcd_keyfile", Kind::Scalar),
    ("group", Kind::Scalar),
    ("window_start", Kind::Scalar),
    ("window_length", Kind::Scalar),
];
const UPDATE: &[(&str, Kind)] = &[
    (
        "reboot_strategy",
        Kind::Enum(&["reboot", "etcd-lock", "best-effort", "off"]),
    ),
    ("group", Kind::Str),
    ("server", Kind::Str),
];
const OEM: &[(&str, Kind)] = &[
    ("id", Kind::Str),
    ("name", Kind::Str),
    ("version_id", Kind::Scalar),
    ("home_url", Kind::Str),
    ("bug_report_url", Kind::Str),
];
const COREOS: &[(&str, Kind)] = &[
    ("etcd2", Kind::Map(ETCD2)),
    ("fleet", Kind::Map(FLEET)),
    ("flannel", Kind::Map(FLANNEL)),
    ("locksmith", Kind::Map(LOCKSMITH)),
    ("update", Kind::Map(UPDATE)),
    ("units", Kind::List(UNIT)),
    ("oem", Kind::Map(OEM)),
];
const WRITE_FILE: &[(&str, Kind)] = &[
    ("path", Kind::Str),
    ("content", Kind::Str),
    ("encoding", Kind::Enum(ENCODINGS)),
    ("owner", Kind::Str),
    ("permissions", Kind::Scalar),
    ("append", Kind::Bool),
];
const USER: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("passwd", Kind::Str),
    ("groups", Kind::StrList),
    ("ssh_authorized_keys", Kind::StrList),
    ("coreos_ssh_import_github", Kind::Str),
    ("coreos_ssh_import_github_users", Kind::StrList),
    ("coreos_ssh_import_url", Kind::Str),
    ("gecos", Kind::Str),
    ("homedir", Kind::Str),
    ("no_create_home", Kind::Bool),
    ("primary_group", Kind::Str),
    ("system", Kind::Bool),
    ("no_user_group", Kind::Bool),
    ("shell", Kind::Str),
];
const TOP: &[(&str, Kind)] = &[
    ("coreos", Kind::Map(COREOS)),
    ("write_files", Kind::List(WRITE_FILE)),
    ("ssh_authorized_keys", Kind::StrList),
    ("hostname", Kind::Str),
    ("users", Kind::List(USER)),
    ("manage_etc_hosts", Kind::Enum(&["localhost"])),
];

fn line(node: &MarkedYamlOwned) -> usize {
    node.span.start.line()
}

fn key_text(node: &MarkedYamlOwned) -> Option<String> {
    match &node.data {
        YamlDataOwned::Value(ScalarOwned::String(s)) => Some(s.clone()),
        YamlDataOwned::Representation(s, _, _) => Some(s.clone()),
        YamlDataOwned::Value(other) => Some(format!("{other:?}")),
        _ => None,
    }
}

fn type_name(node: &MarkedYamlOwned) -> &'static str {
    match &node.data {
        YamlDataOwned::Value(ScalarOwned::String(_)) | YamlDataOwned::Representation(..) => {
            "a string"
        }
        YamlDataOwned::Value(ScalarOwned::Boolean(_)) => "a boolean",
        YamlDataOwned::Value(ScalarOwned::Integer(_)) => "an integer",
        YamlDataOwned::Value(ScalarOwned::FloatingPoint(_)) => "a number",
        YamlDataOwned::Value(ScalarOwned::Null) => "null",
        YamlDataOwned::Sequence(_) => "a list",
        YamlDataOwned::Mapping(_) => "a mapping",
        _ => "something else",
    }
}

struct Checker<'a> {
    file: &'a str,
    template: Option<&'a str>,
    rendered: Vec<&'a str>,
    findings: Vec<Finding>,
}

impl Checker<'_> {
    fn push(&mut self, mut finding: Finding) {
        if let (Some(template), Some(l)) = (self.template, finding.line)
            && let Some(text) = self.rendered.get(l - 1)
        {
            finding.template_line = super::template_line(template, text);
        }
        self.findings.push(finding);
    }

    fn check(&mut self, path: &str, node: &MarkedYamlOwned, kind: Kind) {
        let wrong = |expected: &str| format!("expected {expected}, found {}", type_name(node));
        match (kind, &node.data) {
            (
                Kind::Str,
                YamlDataOwned::Value(ScalarOwned::String(_)) | YamlDataOwned::Representation(..),
            ) => {}
            (Kind::Bool, YamlDataOwned::Value(ScalarOwned::Boolean(_))) => {}
            (Kind::Int, YamlDataOwned::Value(ScalarOwned::Integer(_))) => {}
            (
                Kind::Scalar,
                YamlDataOwned::Value(
                    ScalarOwned::String(_)
                    | ScalarOwned::Integer(_)
                    | ScalarOwned::FloatingPoint(_)
                    | ScalarOwned::Boolean(_),
                )
                | YamlDataOwned::Representation(..),
            ) => {}
            (Kind::Enum(allowed), YamlDataOwned::Value(ScalarOwned::String(s))) => {
                if !allowed.contains(&s.as_str()) {
                    self.push(
                        Finding::error(
                            self.file,
                            Some(line(node)),
                            format!("invalid value \"{s}\" (allowed: {})", allowed.join(", ")),
                        )
                        .in_field(path),
                    );
                }
            }
            (Kind::StrList, YamlDataOwned::Sequence(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.check(&format!("{path}[{i}]"), item, Kind::Str);
                }
            }
            (Kind::Map(fields), YamlDataOwned::Mapping(map)) => {
                for (k, v) in map.iter() {
                    let Some(name) = key_text(k) else { continue };
                    match fields.iter().find(|(f, _)| *f == name) {
                        Some((_, kind)) => {
                            self.check(format!("{path}.{name}").trim_start_matches('.'), v, *kind)
                        }
                        None => self.push(Finding::warning(
                            self.file,
                            Some(line(k)),
                            format!("unrecognized key \"{name}\""),
                        )),
                    }
                }
            }
            (Kind::List(fields), YamlDataOwned::Sequence(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.check(&format!("{path}[{i}]"), item, Kind::Map(fields));
                }
            }
            (
                Kind::Unit,
                YamlDataOwned::Value(ScalarOwned::String(text))
                | YamlDataOwned::Representation(text, _, _),
            ) => {
                self.check_unit(path, line(node), text);
            }
            (Kind::Str | Kind::Unit, _) => self.push(
                Finding::error(self.file, Some(line(node)), wrong("a string")).in_field(path),
            ),
            (Kind::Bool, _) => self.push(
                Finding::error(self.file, Some(line(node)), wrong("a boolean")).in_field(path),
            ),
            (Kind::Int, _) => self.push(
                Finding::error(self.file, Some(line(node)), wrong("an integer")).in_field(path),
            ),
            (Kind::Scalar, _) => self.push(
                Finding::error(self.file, Some(line(node)), wrong("a string or number"))
                    .in_field(path),
            ),
            (Kind::Enum(_), _) => self.push(
                Finding::error(self.file, Some(line(node)), wrong("a string")).in_field(path),
            ),
            (Kind::StrList | Kind::List(_), _) => self
                .push(Finding::error(self.file, Some(line(node)), wrong("a list")).in_field(path)),
            (Kind::Map(_), _) => self.push(
                Finding::error(self.file, Some(line(node)), wrong("a mapping")).in_field(path),
            ),
        }
    }

    /// A unit's text must be systemd's layout: `[Section]` headers, then `Key=Value` lines.
    fn check_unit(&mut self, path: &str, start: usize, text: &str) {
        let mut in_section = false;
        let mut continued = false;
        for (offset, raw) in text.lines().enumerate() {
            // saphyr starts a block scalar's span at its first content line.
            let at = Some(start + offset);
            let l = raw.trim();
            if continued {
                continued = l.ends_with('\\');
                continue;
            }
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            if l.starts_with('[') {
                if !l.ends_with(']') || l.len() < 3 {
                    self.push(
                        Finding::error(self.file, at, format!("malformed section header {l:?}"))
                            .in_field(path),
                    );
                }
                in_section = true;
                continue;
            }
            match l.split_once('=') {
                _ if !in_section => self.push(
                    Finding::error(self.file, at, format!("{l:?} is outside any [Section]"))
                        .in_field(path),
                ),
                Some((key, _)) if !key.trim().is_empty() && !key.trim().contains(' ') => {
                    continued = l.ends_with('\\');
                }
                _ => self.push(
                    Finding::error(self.file, at, format!("{l:?} is not a Key=Value line"))
                        .in_field(path),
                ),
            }
        }
    }
}

/// Every finding in one rendered cloud-config. `template` is the source it was rendered from,
/// used to name template lines.
pub fn check(file: &str, rendered: &str, template: Option<&str>) -> Vec<Finding> {
    let mut checker = Checker {
        file,
        template,
        rendered: rendered.lines().collect(),
        findings: Vec::new(),
    };
    if !rendered.starts_with("#cloud-config\n") {
        checker.push(Finding::error(
            file,
            Some(1),
            "the first line must be \"#cloud-config\" or coreos-cloudinit ignores the file",
        ));
    }
    // The YAML parser recurses per nesting level: bound the input before it sees it.
    if let Some(problem) = crate::config::nested_beyond(rendered, 1024) {
        checker.push(Finding::error(file, problem.line, problem.message));
        return checker.findings;
    }
    match MarkedYamlOwned::load_from_str(rendered) {
        Err(e) => checker.push(Finding::error(
            file,
            Some(e.marker().line()),
            format!("YAML syntax error: {}", e.info()),
        )),
        Ok(docs) => {
            if let Some(doc) = docs.first() {
                checker.check("", doc, Kind::Map(TOP));
            }
        }
    }
    checker.findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_wrong_types_bad_values_and_bad_units_are_all_found() {
        let text = "#cloud-config\ncoreos:\n  update:\n    reboot_strategy: sometimes\n  unitz: []\n  units:\n    - name: a.service\n      enable: yes please\n      commnd: start\n      content: |\n        [Unit]\n        Description=x\n        not a key value\nwrite_files: {}\n";
        let found = check("UserDataWorker", text, None);
        let shown: Vec<String> = found.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "UserDataWorker:4: error: coreos.update.reboot_strategy: invalid value \"sometimes\" (allowed: reboot, etcd-lock, best-effort, off)",
                "UserDataWorker:5: warning: unrecognized key \"unitz\"",
                "UserDataWorker:8: error: coreos.units[0].enable: expected a boolean, found a string",
                "UserDataWorker:9: warning: unrecognized key \"commnd\"",
                "UserDataWorker:13: error: coreos.units[0].content: \"not a key value\" is not a Key=Value line",
                "UserDataWorker:14: error: write_files: expected a list, found a mapping",
            ]
        );
    }

    #[test]
    fn a_cloud_config_nested_beyond_any_real_one_is_an_error_not_a_stack_overflow() {
        for deep in [
            format!("#cloud-config\n{}x\n", "- ".repeat(200_000)),
            format!("#cloud-config\n{}a\n", "? ".repeat(200_000)),
        ] {
            let found = check("UserDataWorker", &deep, None);
            assert!(
                found[0]
                    .to_string()
                    .contains("nested more than 1024 levels"),
                "{found:?}"
            );
        }
    }

    #[test]
    fn template_lines_are_named_when_unambiguous() {
        let template = "#cloud-config\n# {{ name }}\ncoreos:\n  updat:\n    group: {{ g }}\n";
        let rendered = "#cloud-config\n# x\ncoreos:\n  updat:\n    group: y\n";
        let found = check("UserDataEtcd", rendered, Some(template));
        assert_eq!(
            found[0].to_string(),
            "UserDataEtcd:4: warning: unrecognized key \"updat\" (template line 4)"
        );
    }
}
