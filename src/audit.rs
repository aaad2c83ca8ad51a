//! The tamper-evident audit log: one object per entry (`NNNNNNNN.json`, created only if absent,
//! so two writers can never both take a sequence number), each chained to the previous
//! entry's hash. A `HEAD` hint lets `history --limit N` read N entries without listing the log.

use serde::{Deserialize, Serialize};

// An entry records the summary and provenance of the plan it applied.
pub use crate::planfile::{ChangeSummary, Provenance};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::hash::{canonical_json, canonical_json_pretty, sha256_hex};
use crate::state::StateError;
use crate::state::objects::{ObjectStore, Precondition, StoreError};

pub const FORMAT_VERSION: u32 = 1;
/// `prev_sha256` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HEAD: &str = "HEAD";
/// How often append retries when another writer took the sequence number it wanted; each
/// retry waits a little, at random, so racing writers spread out.
const APPEND_ATTEMPTS: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    Started,
    Succeeded,
    Failed,
    RolledBack,
    Interrupted,
    /// The stack changed, but the run's lock was removed or taken over meanwhile, so it did
    /// not write the state.
    LockLost,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Started => "started",
            AuditResult::Succeeded => "succeeded",
            AuditResult::Failed => "failed",
            AuditResult::RolledBack => "rolled_back",
            AuditResult::Interrupted => "interrupted",
            AuditResult::LockLost => "lock_lost",
        }
    }
}

/// What the caller says about an event; the log adds sequence, chain and hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewEntry {
    pub actor: String,
    pub command: String,
    pub result: Option<AuditResult>,
    pub plan_sha256: Option<String>,
    pub change_set_arn: Option<String>,
    pub state_serial_before: Option<u64>,
    pub state_serial_after: Option<u64>,
    /// SHA-256 of the state this run wrote, so an edited state shows in `history --verify`.
    pub state_sha256_after: Option<String>,
    pub duration_ms: Option<u64>,
    pub summary: Option<ChangeSummary>,
    pub message: Option<String>,
    pub provenance: Option<Provenance>,
}

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub format_version: u32,
    pub seq: u64,
    pub prev_sha256: String,
    /// RFC 3339, UTC.
    pub time: String,
    pub actor: String,
    pub command: String,
    pub result: AuditResult,
    pub plan_sha256: Option<String>,
    pub change_set_arn: Option<String>,
    pub state_serial_before: Option<u64>,
    pub state_serial_after: Option<u64>,
    /// SHA-256 of the state bytes this run wrote; absent in entries written before it was
    /// recorded and in entries that wrote no state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_sha256_after: Option<String>,
    pub duration_ms: Option<u64>,
    pub summary: Option<ChangeSummary>,
    pub message: Option<String>,
    /// Where the run came from; absent in entries written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    pub tool_version: String,
    /// SHA-256 of the canonical JSON of every other field.
    pub entry_sha256: String,
    /// KMS's signature of `entry_sha256` with the cluster's signing key, when it has one: what
    /// makes an edited entry with a recomputed hash detectable. Not covered by the hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<EntrySignature>,
}

/// An entry's signature: ECDSA_SHA_256 over the 64 ASCII bytes of `entry_sha256`, signed as a
/// RAW message (so it can never pass for a plan's signature, which is over a DIGEST).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySignature {
    pub key_arn: String,
    pub algorithm: String,
    /// Base64 of the DER signature.
    pub value: String,
}

/// The fields an entry's hash does not cover.
const UNHASHED: [&str; 2] = ["entry_sha256", "signature"];

impl AuditEntry {
    /// The hash this entry should carry: over its canonical form without `entry_sha256`.
    pub fn compute_sha256(&self) -> String {
        let mut value = serde_json::to_value(self).expect("an entry serialises");
        if let Some(map) = value.as_object_mut() {
            for field in UNHASHED {
                map.remove(field);
            }
        }
        sha256_hex(canonical_json(&value).expect("a value serialises"))
    }

    fn build(seq: u64, prev_sha256: &str, now: OffsetDateTime, new: NewEntry) -> AuditEntry {
        let mut entry = AuditEntry {
            format_version: FORMAT_VERSION,
            seq,
            prev_sha256: prev_sha256.to_string(),
            time: now.format(&Rfc3339).expect("RFC 3339 formats"),
            actor: new.actor,
            command: new.command,
            result: new.result.unwrap_or(AuditResult::Succeeded),
            plan_sha256: new.plan_sha256,
            change_set_arn: new.change_set_arn,
            state_serial_before: new.state_serial_before,
            state_serial_after: new.state_serial_after,
            state_sha256_after: new.state_sha256_after,
            duration_ms: new.duration_ms,
            summary: new.summary,
            message: new.message,
            provenance: new.provenance.filter(|p| !p.is_empty()),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            entry_sha256: String::new(),
            signature: None,
        };
        entry.entry_sha256 = entry.compute_sha256();
        entry
    }
}

/// Builds a chain of entries in memory (for tests and fixtures that seed large logs).
pub fn chain(entries: impl IntoIterator<Item = (OffsetDateTime, NewEntry)>) -> Vec<AuditEntry> {
    let mut prev = GENESIS.to_string();
    entries
        .into_iter()
        .enumerate()
        .map(|(i, (now, new))| {
            let entry = AuditEntry::build(i as u64 + 1, &prev, now, new);
            prev = entry.entry_sha256.clone();
            entry
        })
        .collect()
}

/// The stored form of an entry.
pub fn encode(entry: &AuditEntry) -> Vec<u8> {
    canonical_json_pretty(entry).expect("an entry serialises")
}

/// What `history --verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub entries: u64,
    /// Every problem, in log order; the first is the first break in the chain.
    pub problems: Vec<String>,
    /// What was checked, one line each, so that an OK says exactly what it vouches for.
    pub checked: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct AuditLog<O> {
    objects: O,
    prefix: String,
}

impl<O: ObjectStore> AuditLog<O> {
    pub fn new(objects: O, prefix: &str) -> AuditLog<O> {
        AuditLog {
            objects,
            prefix: prefix.to_string(),
        }
    }

    pub fn entry_key(&self, seq: u64) -> String {
        format!("{}{seq:08}.json", self.prefix)
    }

    /// The hint naming the newest sequence number.
    pub fn head_key(&self) -> String {
        format!("{}{HEAD}", self.prefix)
    }

    fn seq_of(&self, key: &str) -> Option<u64> {
        key.strip_prefix(&self.prefix)?
            .strip_suffix(".json")?
            .parse()
            .ok()
    }

    fn decode(&self, key: &str, bytes: &[u8]) -> Result<AuditEntry, StateError> {
        let origin = self.objects.location(key);
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|source| StateError::Malformed {
                origin: origin.clone(),
                source,
            })?;
        match value.get("format_version").and_then(|v| v.as_u64()) {
            // From the bytes, not the value: serde's errors then say the line and column.
            Some(v) if v == u64::from(FORMAT_VERSION) => serde_json::from_slice(bytes)
                .map_err(|source| StateError::Malformed { origin, source }),
            Some(found) => Err(StateError::UnknownVersion { origin, found }),
            None => Err(StateError::Malformed {
                origin,
                source: serde::de::Error::missing_field("format_version"),
            }),
        }
    }

    /// The highest sequence number in the log (0 when empty): the HEAD hint, then a listing
    /// of anything after it, since a writer may have died between its entry and the hint. The
    /// hint is trusted only as far as an entry exists there; a HEAD that names a missing entry
    /// (deleted, or edited to any number) is ignored and the whole log listed instead.
    pub async fn latest_seq(&self) -> Result<u64, StateError> {
        Ok(self.latest().await?.0)
    }

    /// The newest entry with the sequence number its key has (which a copied entry does not
    /// share), found as `latest_seq` finds it and read with no request more when it is the one
    /// HEAD names.
    pub async fn newest_entry(&self) -> Result<Option<(u64, Option<AuditEntry>)>, StateError> {
        let (seq, hinted) = self.latest().await?;
        let entry = match hinted {
            _ if seq == 0 => return Ok(None),
            Some((hint, bytes)) if hint == seq => Some(self.decode(&self.entry_key(seq), &bytes)?),
            _ => self.read(seq).await?,
        };
        Ok(Some((seq, entry)))
    }

    /// The highest sequence number, and the bytes of the entry HEAD names when it exists.
    async fn latest(&self) -> Result<(u64, Option<(u64, Vec<u8>)>), StateError> {
        let head_key = self.head_key();
        let mut hint = match self.objects.get(&head_key).await? {
            Some(object) => String::from_utf8_lossy(&object.bytes)
                .trim()
                .parse()
                .unwrap_or(0),
            None => 0,
        };
        let mut hinted = None;
        if hint > 0 {
            match self.objects.get(&self.entry_key(hint)).await? {
                Some(object) => hinted = Some((hint, object.bytes)),
                None => hint = 0,
            }
        }
        let after = (hint > 0).then(|| self.entry_key(hint));
        let newer = self
            .objects
            .list(&self.prefix, after.as_deref(), 1000)
            .await?;
        let latest = newer
            .iter()
            .filter_map(|k| self.seq_of(k))
            .max()
            .unwrap_or(0)
            .max(hint);
        Ok((latest, hinted))
    }

    /// One entry, if it exists.
    pub async fn read(&self, seq: u64) -> Result<Option<AuditEntry>, StateError> {
        let key = self.entry_key(seq);
        match self.objects.get(&key).await? {
            Some(object) => self.decode(&key, &object.bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Appends an unsigned entry chained to the current last one.
    pub async fn append(
        &self,
        now: OffsetDateTime,
        new: NewEntry,
    ) -> Result<AuditEntry, StateError> {
        self.append_with(now, new, async |_: &str| Ok(None)).await
    }

    /// Appends an entry chained to the current last one, signed by `sign` (given the entry's
    /// hash) before it is written.
    pub async fn append_with(
        &self,
        now: OffsetDateTime,
        new: NewEntry,
        sign: impl AsyncFn(&str) -> Result<Option<EntrySignature>, StateError>,
    ) -> Result<AuditEntry, StateError> {
        for _ in 0..APPEND_ATTEMPTS {
            let latest = self.latest_seq().await?;
            let prev = if latest == 0 {
                GENESIS.to_string()
            } else {
                match self.read(latest).await? {
                    Some(entry) => entry.entry_sha256,
                    None => {
                        return Err(StateError::Stale {
                            message: format!(
                                "audit entry {latest} is missing at {}; run `kube-aws history --verify`",
                                self.objects.location(&self.entry_key(latest))
                            ),
                        });
                    }
                }
            };
            let Some(next) = latest.checked_add(1) else {
                return Err(StateError::Stale {
                    message: format!(
                        "the audit log's newest entry claims sequence number {latest}, the largest there is; run `kube-aws history --verify`"
                    ),
                });
            };
            let mut entry = AuditEntry::build(next, &prev, now, new.clone());
            entry.signature = sign(&entry.entry_sha256).await?;
            let key = self.entry_key(entry.seq);
            match self
                .objects
                .put(&key, &encode(&entry), Precondition::IfAbsent)
                .await
            {
                Ok(_) => {
                    let head_key = self.head_key();
                    self.objects
                        .put(
                            &head_key,
                            entry.seq.to_string().as_bytes(),
                            Precondition::Overwrite,
                        )
                        .await?;
                    return Ok(entry);
                }
                Err(StoreError::PreconditionFailed { .. }) => {
                    let jitter = (uuid::Uuid::new_v4().as_u128() % 40) as u64;
                    tokio::time::sleep(std::time::Duration::from_millis(5 + jitter)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StateError::LockContended)
    }

    /// The newest `limit` entries, newest first, reading only those entries.
    pub async fn newest(&self, limit: u64) -> Result<Vec<AuditEntry>, StateError> {
        let latest = self.latest_seq().await?;
        let oldest = latest.saturating_sub(limit.saturating_sub(1)).max(1);
        let mut out = Vec::new();
        for seq in (oldest..=latest).rev() {
            if let Some(entry) = self.read(seq).await? {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// Checks every entry's hash and every link; names each missing, edited or misplaced one.
    pub async fn verify(&self) -> Result<Verification, StateError> {
        self.verify_with(async |_: &AuditEntry| None).await
    }

    /// [`AuditLog::verify`], plus `check` on every readable entry (its signature, what it
    /// says about the state), whose problem, if any, is reported in log order.
    pub async fn verify_with(
        &self,
        check: impl AsyncFn(&AuditEntry) -> Option<String>,
    ) -> Result<Verification, StateError> {
        let keys = self.objects.list(&self.prefix, None, usize::MAX).await?;
        let mut problems = Vec::new();
        let mut prev_hash = GENESIS.to_string();
        let mut expected = 1;
        let mut count = 0;
        for key in keys {
            let Some(seq) = self.seq_of(&key) else {
                continue;
            };
            count += 1;
            // A key may name any number: one line per gap, however wide.
            if expected < seq {
                problems.push(if seq - expected == 1 {
                    format!("entry {expected} is missing")
                } else {
                    format!("entries {expected} to {} are missing", seq - 1)
                });
                prev_hash = String::new();
            }
            let location = self.objects.location(&key);
            let Some(object) = self.objects.get(&key).await? else {
                problems.push(format!("entry {seq} disappeared while verifying"));
                continue;
            };
            match self.decode(&key, &object.bytes) {
                Err(e) => problems.push(format!("entry {seq} is unreadable: {e}")),
                Ok(entry) => {
                    if entry.seq != seq {
                        problems.push(format!(
                            "entry {seq} ({location}) holds sequence number {} (entries reordered?)",
                            entry.seq
                        ));
                    }
                    if entry.compute_sha256() != entry.entry_sha256 {
                        problems.push(format!(
                            "entry {seq} ({location}) was edited: its content does not hash to its entry_sha256"
                        ));
                    }
                    if !prev_hash.is_empty() && entry.prev_sha256 != prev_hash {
                        problems.push(format!(
                            "entry {seq} ({location}) does not chain to entry {}: prev_sha256 differs",
                            seq.saturating_sub(1)
                        ));
                    }
                    if let Some(problem) = check(&entry).await {
                        problems.push(problem);
                    }
                    prev_hash = entry.entry_sha256;
                }
            }
            expected = seq.saturating_add(1);
        }
        let head_key = self.head_key();
        if let Some(object) = self.objects.get(&head_key).await?
            && let Ok(head) = String::from_utf8_lossy(&object.bytes).trim().parse::<u64>()
            && head >= expected
        {
            // One line per missing entry while that is readable; HEAD is only a hint, and one
            // edited to 2^64-1 must cost one line, not 2^64.
            if head - expected < 20 {
                for missing in expected..=head {
                    problems.push(format!(
                        "entry {missing} is missing (the log's HEAD is {head})"
                    ));
                }
            } else {
                problems.push(format!(
                    "entries {expected} to {head} are missing, or HEAD was edited: the log's HEAD is {head} but its last entry is {}",
                    expected - 1
                ));
            }
        }
        Ok(Verification {
            entries: count,
            problems,
            checked: vec![format!(
                "{count} entries: each hashes to its entry_sha256 and chains to the one before"
            )],
        })
    }
}
