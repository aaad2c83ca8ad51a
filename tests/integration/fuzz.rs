//! Property suite over everything kube-aws reads from a file: generated cluster.yaml
//! documents, plan files, state files, audit entries and lock files (proptest, a fixed seed,
//! so every run tries the same inputs and CI runs it as an ordinary test). Each input is read
//! through the code the commands use; the properties: no panic, no abort, and every refusal is
//! a positioned error (a line, or the field and the file it is in). It prints how many inputs
//! of each kind it tried, how many were refused, and the slowest input's time and the
//! process's peak memory.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use kube_aws::config::ClusterConfig;
use kube_aws::engine::backend::Backend;

use crate::harness::block_on;
use kube_aws::state::lock::Locker;

const MINIMAL: &str = "\
clusterName: demo
externalDNSName: demo.example.com
region: us-west-2
availabilityZone: us-west-2a
kmsKeyArn: arn:aws:kms:us-west-2:123456789012:key/0000
templateBucket: demo-artifacts
unsignedPlans: true
";

/// Settings kube-aws knows, and one it does not: where generated values go.
const KEYS: &[&str] = &[
    "controllerCount",
    "etcdCount",
    "workerCount",
    "recordSetTTL",
    "tlsCADurationDays",
    "tlsCertDurationDays",
    "controllerIP",
    "instanceCIDR",
    "vpcCIDR",
    "serviceCIDR",
    "podCIDR",
    "dnsServiceIP",
    "workerRootVolumeSize",
    "etcdDataVolumeSize",
    "kubernetesVersion",
    "stackTags",
    "nodePools",
    "subnets",
    "privateSubnets",
    "apiEndpointLoadBalancer",
    "apiAccessAllowedSourceCIDRs",
    "clusterName",
    "region",
    "etcdSnapshotRetentionDays",
    "notAKeyAnyoneKnows",
];

fn cidr() -> impl Strategy<Value = String> {
    (any::<[u8; 4]>(), 0u8..=40)
        .prop_map(|(o, bits)| format!("{}.{}.{}.{}/{bits}", o[0], o[1], o[2], o[3]))
}

/// A YAML value of the kinds careless and hostile files hold.
fn yaml_value() -> impl Strategy<Value = String> {
    let extreme = prop::sample::select(vec![
        "0",
        "-1",
        "1",
        "9",
        "50",
        "1001",
        "2147483648",
        "4294967295",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775809",
        "1e308",
        "-1e308",
        ".nan",
        ".inf",
        "0x7fffffff",
        "0o777",
        "true",
        "null",
        "~",
        "''",
        "soon",
        "!!binary aGVsbG8=",
        "10.0.0.0/33",
        "10.0.0.300",
        "::1",
        "[]",
        "{}",
    ])
    .prop_map(str::to_string);
    let pools = prop::collection::vec(
        (
            prop::sample::select(vec![
                "gpu-large",
                "gpu-large-",
                "workers-",
                "workers",
                "a",
                "-",
                "Ä",
                "",
            ]),
            prop::option::of(any::<i64>()),
        ),
        1..5,
    )
    .prop_map(|pools| {
        let items: Vec<String> = pools
            .iter()
            .map(|(name, count)| match count {
                Some(c) => format!("{{name: \"{name}\", count: {c}}}"),
                None => format!("{{name: \"{name}\"}}"),
            })
            .collect();
        format!("[{}]", items.join(", "))
    });
    let subnets = prop::collection::vec(cidr(), 1..4).prop_map(|cidrs| {
        let items: Vec<String> = cidrs
            .iter()
            .map(|c| format!("{{availabilityZone: us-west-2a, instanceCIDR: {c}}}"))
            .collect();
        format!("[{}]", items.join(", "))
    });
    prop_oneof![
        4 => extreme,
        2 => any::<u64>().prop_map(|n| n.to_string()),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        2 => cidr(),
        2 => "[a-zA-Z0-9 ./:_-]{0,40}".prop_map(|s| format!("\"{s}\"")),
        1 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => (1usize..200_000).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
        1 => (1usize..300).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        1 => (1usize..300).prop_map(|n| format!("{}1{}", "{a: ".repeat(n), "}".repeat(n))),
        2 => pools,
        2 => subnets,
        1 => Just("&a [x, x, x, x, x, x, x, x]".to_string()),
    ]
}

/// A generated cluster.yaml and how many settings kube-aws knows it carries beyond the
/// minimal file (0 when it was cut into the minimal part).
#[derive(Debug, Clone)]
struct YamlCase {
    text: String,
    known_settings: usize,
}

/// Values a careful user writes for `key`: most files of this kind should be accepted, so
/// the checks are seen passing good input as well as refusing bad.
fn plausible_value(key: &str) -> Vec<&'static str> {
    match key {
        "controllerCount" => vec!["1", "2", "3"],
        "etcdCount" => vec!["1", "3", "5"],
        "workerCount" => vec!["0", "1", "4"],
        "recordSetTTL" => vec!["60", "300"],
        "tlsCADurationDays" => vec!["3650", "1825"],
        "tlsCertDurationDays" => vec!["365", "90"],
        "instanceCIDR" => vec!["10.0.0.0/24"],
        "vpcCIDR" => vec!["10.0.0.0/16"],
        "serviceCIDR" => vec!["10.3.0.0/24"],
        "podCIDR" => vec!["10.2.0.0/16"],
        "dnsServiceIP" => vec!["10.3.0.10"],
        "workerRootVolumeSize" => vec!["30", "100"],
        "etcdDataVolumeSize" => vec!["30", "50"],
        "stackTags" => vec!["{team: platform}", "{cost-center: '42'}"],
        "nodePools" => vec![
            "[{name: gpu, count: 2}]",
            "[{name: a, count: 1}, {name: b}]",
        ],
        "subnets" => vec!["[{availabilityZone: us-west-2a, instanceCIDR: 10.0.0.0/24}]"],
        "apiAccessAllowedSourceCIDRs" => vec!["[10.0.0.0/8]", "[0.0.0.0/0]"],
        "clusterName" => vec!["other", "team-a"],
        "region" => vec!["us-west-2"],
        "etcdSnapshotRetentionDays" => vec!["7", "30"],
        _ => vec![],
    }
}

/// A cluster.yaml: the minimal file plus settings, sometimes cut, sometimes deeply nested.
/// Half the files set only plausible values, half anything.
fn cluster_yaml() -> impl Strategy<Value = YamlCase> {
    let plausible_keys: Vec<&'static str> = KEYS
        .iter()
        .copied()
        .filter(|k| !plausible_value(k).is_empty())
        .collect();
    let plausible = prop::sample::select(plausible_keys).prop_flat_map(|key| {
        (
            Just(key),
            prop::sample::select(plausible_value(key)).prop_map(str::to_string),
        )
    });
    let hostile = (prop::sample::select(KEYS), yaml_value());
    let settings = prop_oneof![
        prop::collection::vec(plausible, 0..6),
        prop::collection::vec(hostile, 0..6),
    ];
    (
        settings,
        prop_oneof![
            8 => Just(None),
            1 => (0usize..400).prop_map(Some),
        ],
        prop_oneof![
            8 => Just(0usize),
            1 => 1usize..30_000,
        ],
        prop_oneof![
            9 => Just(false),
            1 => Just(true),
        ],
    )
        .prop_map(|(settings, cut, dashes, aliases)| {
            let mut text = MINIMAL.to_string();
            let mut known_settings = 0;
            for (key, value) in settings {
                text.push_str(&format!("{key}: {value}\n"));
                if key != "notAKeyAnyoneKnows" {
                    known_settings += 1;
                }
            }
            if dashes > 0 {
                text.push_str(&format!("nodePools:\n{}\n", "- ".repeat(dashes)));
            }
            if aliases {
                // A billion laughs: each level repeats the one before nine times.
                text.push_str(
                    "stackTags:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
                );
                for level in 1..9 {
                    let prev = format!("*l{}", level - 1);
                    text.push_str(&format!(
                        "  l{level}: &l{level} [{}]\n",
                        vec![prev; 9].join(", ")
                    ));
                }
            }
            if let Some(cut) = cut {
                let mut at = cut.min(text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.truncate(at);
                if at <= MINIMAL.len() {
                    known_settings = 0;
                }
            }
            YamlCase {
                text,
                known_settings,
            }
        })
}

/// How a JSON document kube-aws wrote gets damaged: flipped bytes, a cut, a field replaced by
/// an extreme value, deep nesting, bytes that are not UTF-8.
#[derive(Debug, Clone)]
enum Damage {
    Flip(Vec<(usize, u8)>),
    Cut(usize),
    Replace(usize, String),
    Nest(usize),
    NotUtf8(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    let value = prop_oneof![
        Just("null".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
        (1usize..100_000).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    prop_oneof![
        3 => prop::collection::vec((any::<usize>(), any::<u8>()), 1..8).prop_map(Damage::Flip),
        2 => any::<usize>().prop_map(Damage::Cut),
        4 => (any::<usize>(), value).prop_map(|(i, v)| Damage::Replace(i, v)),
        1 => (1usize..100_000).prop_map(Damage::Nest),
        1 => any::<usize>().prop_map(Damage::NotUtf8),
    ]
}

fn apply(damage: &Damage, original: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    match damage {
        Damage::Flip(flips) => {
            for (at, byte) in flips {
                let i = at % bytes.len();
                bytes[i] = *byte;
            }
        }
        Damage::Cut(at) => bytes.truncate(at % (bytes.len() + 1)),
        Damage::Replace(which, value) => {
            // Replace the which-th leaf (scalar) value of the document.
            if let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(original) {
                let mut leaves = 0usize;
                count_leaves(&doc, &mut leaves);
                let mut target = which % leaves.max(1);
                replace_leaf(&mut doc, &mut target);
                bytes = serde_json::to_vec_pretty(&doc).unwrap();
                // The replacement is raw JSON text; put it in place of the marker.
                let text = String::from_utf8(bytes).unwrap();
                bytes = text.replacen("\"\\u0000REPLACED\"", value, 1).into_bytes();
            }
        }
        Damage::Nest(depth) => {
            let mut text = "[".repeat(*depth);
            text.push_str(&"]".repeat(*depth));
            bytes = text.into_bytes();
        }
        Damage::NotUtf8(at) => {
            let i = at % (bytes.len() + 1);
            bytes.splice(i..i, [0xff, 0xfe, 0xc3]);
        }
    }
    bytes
}

fn count_leaves(v: &serde_json::Value, n: &mut usize) {
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|x| count_leaves(x, n)),
        serde_json::Value::Object(o) => o.values().for_each(|x| count_leaves(x, n)),
        _ => *n += 1,
    }
}

fn replace_leaf(v: &mut serde_json::Value, target: &mut usize) -> bool {
    match v {
        serde_json::Value::Array(a) => a.iter_mut().any(|x| replace_leaf(x, target)),
        serde_json::Value::Object(o) => o.values_mut().any(|x| replace_leaf(x, target)),
        leaf => {
            if *target == 0 {
                *leaf = serde_json::Value::String("\u{0}REPLACED".into());
                true
            } else {
                *target -= 1;
                false
            }
        }
    }
}

/// Totals per kind of input, printed at the end.
#[derive(Default, Debug)]
struct Tally {
    tried: u64,
    refused: u64,
    slowest: Duration,
    /// cluster.yaml: accepted although it set something beyond the minimal file.
    accepted_with_settings: u64,
    /// plans: damaged, then sealed again, so the decoder reads their fields.
    resealed: u64,
    /// plans: resealed, and still refused by the seal check (must be none).
    resealed_but_tampered: u64,
    /// plans: resealed and decoded (a damaged value the plan's types still take).
    resealed_accepted: u64,
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    )
}

/// Runs `read` on each generated input; a panic fails the property.
fn check<S: Strategy>(
    kind: &str,
    cases: u32,
    strategy: S,
    tallies: &RefCell<BTreeMap<String, Tally>>,
    read: impl Fn(&S::Value) -> Result<(), String>,
) -> Result<(), String>
where
    S::Value: std::fmt::Debug,
{
    let mut runner = runner(cases);
    runner
        .run(&strategy, |input| {
            let started = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| read(&input)));
            let elapsed = started.elapsed();
            let mut tallies = tallies.borrow_mut();
            let tally = tallies.entry(kind.to_string()).or_default();
            tally.tried += 1;
            tally.slowest = tally.slowest.max(elapsed);
            match outcome {
                Err(_) => Err(TestCaseError::fail(format!("{kind}: panicked"))),
                Ok(Err(unpositioned)) => Err(TestCaseError::fail(format!(
                    "{kind}: a refusal without a position: {unpositioned}"
                ))),
                Ok(Ok(())) => Ok(()),
            }
        })
        .map_err(|e| e.to_string())
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("state/fixtures")
            .join(name),
    )
    .unwrap()
}

/// A damaged plan that is still a JSON object, sealed again the way kube-aws seals one, so
/// the decoder gets past the seal check and reads the damaged fields. `None` when the damage
/// left no JSON object to seal.
fn reseal(damaged: &[u8]) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(damaged).ok()?;
    let map = value.as_object_mut()?;
    map.remove("plan_sha256");
    map.remove("signature");
    let sha256 = kube_aws::hash::sha256_hex(kube_aws::hash::canonical_json(&value).ok()?);
    value
        .as_object_mut()?
        .insert("plan_sha256".into(), serde_json::Value::String(sha256));
    kube_aws::hash::canonical_json_pretty(&value).ok()
}

/// A refusal of a JSON file must name the file, and say where (serde's line and column) or
/// which field (the version and the hash checks name theirs).
fn positioned(origin: &str, message: &str) -> Result<(), String> {
    let named = message.contains(origin);
    let placed = message.contains("line ")
        || message.contains("format_version")
        || message.contains("plan_sha256")
        || message.contains("not valid UTF-8")
        || message.contains("EOF");
    if named && placed {
        Ok(())
    } else {
        Err(message.to_string())
    }
}

#[test]
fn every_input_kube_aws_reads_is_refused_with_a_position_or_accepted_never_a_panic() {
    let started = Instant::now();
    let tallies: RefCell<BTreeMap<String, Tally>> = RefCell::new(BTreeMap::new());
    let refuse = |kind: &str| {
        tallies
            .borrow_mut()
            .entry(kind.to_string())
            .or_default()
            .refused += 1;
    };

    // cluster.yaml, through the parser and every semantic check.
    check(
        "cluster.yaml",
        10_000,
        cluster_yaml(),
        &tallies,
        |case| match ClusterConfig::parse(Path::new("cluster.yaml"), &case.text) {
            Ok(_) => {
                if case.known_settings > 0 {
                    tallies
                        .borrow_mut()
                        .entry("cluster.yaml".into())
                        .or_default()
                        .accepted_with_settings += 1;
                }
                Ok(())
            }
            Err(e) => {
                refuse("cluster.yaml");
                for p in &e.problems {
                    let document_level = p.field.is_empty()
                        && (p.message.contains("bytes") || p.message.contains("nested"));
                    // A field the file holds is named with its line; only a field the file
                    // lacks (a required one cut off) has none to name.
                    let top = p.field.split(['.', '[']).next().unwrap_or_default();
                    let present = !top.is_empty()
                        && case.text.lines().any(|l| l.starts_with(&format!("{top}:")));
                    let unplaced = p.line.is_none() && (present || p.field.is_empty());
                    if unplaced && !document_level {
                        return Err(format!("{}: {e}", p.field));
                    }
                }
                Ok(())
            }
        },
    )
    .unwrap();

    // A cluster.yaml that is not UTF-8, through `load` as the commands read it.
    let dir = tempfile::tempdir().unwrap();
    check(
        "cluster.yaml (bytes)",
        500,
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)),
        &tallies,
        |(at, bytes)| {
            let mut text = MINIMAL.as_bytes().to_vec();
            let i = at % (text.len() + 1);
            text.splice(i..i, bytes.iter().copied());
            std::fs::write(dir.path().join("cluster.yaml"), &text).unwrap();
            match ClusterConfig::load(dir.path()) {
                Ok(_) => Ok(()),
                Err(e) => {
                    refuse("cluster.yaml (bytes)");
                    let message = e.to_string();
                    if message.contains("cluster.yaml") {
                        Ok(())
                    } else {
                        Err(message)
                    }
                }
            }
        },
    )
    .unwrap();

    // Plan files, through the decoder apply uses: a realistic plan (a first apply's, with
    // its template, certificates, records and resource changes), damaged, then mostly sealed
    // again so that the decoder reads the damaged fields instead of stopping at the seal.
    let plan = fixture("plan-v1.json");
    kube_aws::planfile::decode("plan-v1.json", &plan).expect("the fixture decodes");
    check("plan", 2_500, damage(), &tallies, |d| {
        let damaged = apply(d, &plan);
        let resealed = reseal(&damaged);
        let bytes = resealed.clone().unwrap_or(damaged);
        let decoded = kube_aws::planfile::decode("plan.json", &bytes);
        if resealed.is_some() {
            let mut tallies = tallies.borrow_mut();
            let tally = tallies.entry("plan".into()).or_default();
            tally.resealed += 1;
            match &decoded {
                Err(kube_aws::planfile::PlanError::Tampered { .. }) => {
                    tally.resealed_but_tampered += 1
                }
                Ok(_) => tally.resealed_accepted += 1,
                Err(_) => {}
            }
        }
        match decoded {
            Ok(_) => Ok(()),
            Err(e) => {
                refuse("plan");
                positioned("plan.json", &e.to_string())
            }
        }
    })
    .unwrap();

    // State, audit entries and locks, through the local backend as the commands read them.
    let cluster = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cluster.path().join("state/audit")).unwrap();
    let backend = Backend::local(cluster.path());
    let state = fixture("state-v1.json");
    check("state", 2_500, damage(), &tallies, |d| {
        std::fs::write(cluster.path().join("state/state.json"), apply(d, &state)).unwrap();
        match block_on(backend.store.load()) {
            Ok(_) => Ok(()),
            Err(e) => {
                refuse("state");
                positioned("state.json", &e.to_string())
            }
        }
    })
    .unwrap();
    let entry = fixture("audit-entry-v1.json");
    check("audit entry", 2_500, damage(), &tallies, |d| {
        std::fs::write(
            cluster.path().join("state/audit/00000001.json"),
            apply(d, &entry),
        )
        .unwrap();
        let read = block_on(backend.audit.read(1));
        let verified = block_on(backend.audit.verify()).map_err(|e| e.to_string())?;
        match read {
            Ok(_) if verified.ok() => Ok(()),
            Ok(_) => {
                refuse("audit entry");
                // verify names the entry in each problem.
                match verified.problems.iter().find(|p| !p.contains("entry 1")) {
                    Some(p) => Err(p.clone()),
                    None => Ok(()),
                }
            }
            Err(e) => {
                refuse("audit entry");
                positioned("00000001.json", &e.to_string())
            }
        }
    })
    .unwrap();
    let lock = fixture("lock-v1.json");
    check("lock", 2_500, damage(), &tallies, |d| {
        std::fs::write(cluster.path().join("state/state.lock"), apply(d, &lock)).unwrap();
        match block_on(backend.store.locker.current()) {
            Ok(_) => Ok(()),
            Err(e) => {
                refuse("lock");
                positioned("state.lock", &e.to_string())
            }
        }
    })
    .unwrap();

    let tallies = tallies.into_inner();
    let mut total = 0;
    for (kind, t) in &tallies {
        total += t.tried;
        println!(
            "fuzz: {kind:<22} {:>6} tried, {:>6} refused with a position, 0 panics, slowest {:?}",
            t.tried, t.refused, t.slowest
        );
    }
    let peak_mib = peak_rss_kib() / 1024;
    println!(
        "fuzz: {total} inputs in {:.1?}, peak RSS {peak_mib} MiB",
        started.elapsed()
    );
    // Every generated input was tried (a property that stopped early fails above).
    let tried: BTreeMap<&str, u64> = tallies.iter().map(|(k, t)| (k.as_str(), t.tried)).collect();
    assert_eq!(
        tried,
        BTreeMap::from([
            ("audit entry", 2_500),
            ("cluster.yaml", 10_000),
            ("cluster.yaml (bytes)", 500),
            ("lock", 2_500),
            ("plan", 2_500),
            ("state", 2_500),
        ])
    );
    // Both sides of the parser are exercised: files with settings accepted and refused.
    let yaml = &tallies["cluster.yaml"];
    let plans = &tallies["plan"];
    println!(
        "fuzz: {} cluster.yaml files with settings accepted; {} damaged plans re-sealed, {} of them decoded",
        yaml.accepted_with_settings, plans.resealed, plans.resealed_accepted
    );
    assert!(
        yaml.accepted_with_settings >= 1_000 && yaml.refused >= 3_000,
        "{yaml:?}"
    );
    // Most damaged plans reach the field decoder, and resealing always gets them past the seal.
    assert!(
        plans.resealed >= 600
            && plans.resealed_accepted >= 50
            && plans.resealed_accepted < plans.resealed,
        "{plans:?}"
    );
    assert_eq!(plans.resealed_but_tampered, 0, "{plans:?}");
    // No input exhausts time or memory: a billion laughs, 300-deep nesting and 200 KB strings
    // included (a debug build; generous bounds that a quadratic parser would still break).
    for (kind, t) in &tallies {
        assert!(
            t.slowest < Duration::from_secs(5),
            "{kind}: one input took {:?}",
            t.slowest
        );
    }
    assert!(peak_mib < 1_536, "peak RSS {peak_mib} MiB");
}
