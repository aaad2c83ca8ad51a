//! Content hashing and canonical JSON, so equal values always hash and serialise to equal bytes.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(bytes.as_ref()))
}

/// How a secret is shown wherever people read: a short hash that identifies it, never the value.
pub fn redacted(secret: &str) -> String {
    format!("<redacted sha256:{}>", &sha256_hex(secret)[..12])
}

/// Serialises `value` as compact JSON with every object's keys sorted.
///
/// Going through `serde_json::Value` sorts keys because its map is a BTreeMap; struct field
/// order therefore never leaks into hashes.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    serde_json::to_vec(&value)
}

/// Like [`canonical_json`] but indented with a trailing newline, for files people read and diff.
pub fn canonical_json_pretty<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    let mut bytes = serde_json::to_vec_pretty(&value)?;
    bytes.push(b'\n');
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn canonical_json_sorts_keys_whatever_the_insertion_order() {
        let mut a = HashMap::new();
        a.insert("zeta", 1);
        a.insert("alpha", 2);
        let mut b = HashMap::new();
        b.insert("alpha", 2);
        b.insert("zeta", 1);
        assert_eq!(canonical_json(&a).unwrap(), br#"{"alpha":2,"zeta":1}"#);
        assert_eq!(canonical_json(&a).unwrap(), canonical_json(&b).unwrap());
    }

    #[test]
    fn sha256_hex_matches_known_vector() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
