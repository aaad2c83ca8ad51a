//! Why a certificate's spec no longer matches it, in words a reviewer can check: the state
//! keeps only the spec's hash, so the old certificate itself is read back and compared with
//! the new spec field by field.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

use super::{TlsSpec, Usage};

/// What differs between the certificate `previous_pem` and `spec`: its subject, names added or
/// removed, usages, validity. Empty when the certificate cannot be read or shows no difference
/// (what changed is then what a certificate does not show, such as its key algorithm).
pub fn spec_changes(previous_pem: &str, spec: &TlsSpec) -> Vec<String> {
    let Ok((_, pem)) = parse_x509_pem(previous_pem.as_bytes()) else {
        return Vec::new();
    };
    let Ok(cert) = pem.parse_x509() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok());
    if common_name != Some(spec.common_name.as_str()) {
        out.push(format!(
            "common name {} → {}",
            common_name.unwrap_or("(none)"),
            spec.common_name
        ));
    }
    let organization = subject
        .iter_organization()
        .next()
        .and_then(|a| a.as_str().ok());
    if organization != spec.organization.as_deref() {
        out.push(format!(
            "organization {} → {}",
            organization.unwrap_or("(none)"),
            spec.organization.as_deref().unwrap_or("(none)")
        ));
    }

    let mut had = BTreeSet::new();
    if let Ok(Some(sans)) = cert.subject_alternative_name() {
        for name in &sans.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    had.insert(format!("DNS:{dns}"));
                }
                GeneralName::IPAddress(bytes) => {
                    if let Ok(octets) = <[u8; 4]>::try_from(*bytes) {
                        had.insert(format!("IP:{}", Ipv4Addr::from(octets)));
                    }
                }
                _ => {}
            }
        }
    }
    let wants: BTreeSet<String> = spec
        .dns_names
        .iter()
        .map(|d| format!("DNS:{d}"))
        .chain(spec.ip_addresses.iter().map(|ip| format!("IP:{ip}")))
        .collect();
    let added: Vec<&String> = wants.difference(&had).collect();
    let removed: Vec<&String> = had.difference(&wants).collect();
    if !added.is_empty() || !removed.is_empty() {
        let names = |sign: char, list: &[&String]| {
            list.iter()
                .map(|n| format!("{sign}{n}"))
                .collect::<Vec<_>>()
        };
        let mut both = names('+', &added);
        both.extend(names('-', &removed));
        out.push(format!("names {}", both.join(" ")));
    }

    let usages = |server: bool, client: bool, sign: bool| {
        [
            (sign, "cert sign"),
            (server, "server auth"),
            (client, "client auth"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, word)| *word)
        .collect::<Vec<_>>()
        .join(", ")
    };
    let (server, client) = match cert.extended_key_usage() {
        Ok(Some(eku)) => (eku.value.server_auth, eku.value.client_auth),
        _ => (false, false),
    };
    let sign = cert.is_ca();
    let now = usages(server, client, sign);
    let wanted = usages(
        spec.usages.contains(&Usage::ServerAuth),
        spec.usages.contains(&Usage::ClientAuth),
        spec.usages.contains(&Usage::CertSign),
    );
    if now != wanted {
        out.push(format!("usages {now} → {wanted}"));
    }

    let validity = cert.validity();
    let seconds = validity.not_after.timestamp() - validity.not_before.timestamp();
    // Issued five minutes back-dated: whole days are what the spec says.
    let days = seconds / 86_400;
    if days != i64::from(spec.validity_days) {
        out.push(format!(
            "validity {days} → {} days (tlsCertDurationDays)",
            spec.validity_days
        ));
    }
    out
}
