use std::path::Path;

use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

use super::*;

fn config() -> ClusterConfig {
    ClusterConfig::parse(
        Path::new("cluster.yaml"),
        "clusterName: demo\nexternalDNSName: k8s.example.com\nregion: us-west-2\navailabilityZone: us-west-2a\nkeyName: k\nkmsKeyArn: arn:aws:kms:us-west-2:1:key/x\ntemplateBucket: demo-artifacts\netcdCount: 3\n",
    )
    .unwrap()
}

fn now() -> OffsetDateTime {
    time::macros::datetime!(2026-01-01 00:00 UTC)
}

fn with_cert<R>(
    pem: &str,
    f: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> R,
) -> R {
    let (_, pem) = parse_x509_pem(pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    f(&cert)
}

/// A certificate's DNS and IP subject alternative names, in order.
fn sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> (Vec<String>, Vec<Vec<u8>>) {
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(ip) => ips.push(ip.to_vec()),
            _ => {}
        }
    }
    (dns, ips)
}

#[test]
fn names_match_the_spec_list() {
    let c = config();
    let mut names = vec![ca_spec(&c).name];
    names.extend(leaf_specs(&c, "x").into_iter().map(|s| s.name));
    names.push(service_account_spec(&c).name);
    names.push(bootstrap_token_spec(&c).name);
    names.push(secrets_encryption_spec(&c).name);
    assert_eq!(names, NAMES.to_vec());
}

#[test]
fn spec_hash_is_stable_and_sensitive_to_every_input() {
    let c = config();
    let a = leaf_specs(&c, "ca1");
    assert_eq!(a, leaf_specs(&c, "ca1"));
    assert_eq!(a[0].sha256(), leaf_specs(&c, "ca1")[0].sha256());
    assert_ne!(a[0].sha256(), leaf_specs(&c, "ca2")[0].sha256());
    let mut other = c.clone();
    other.external_dns_name = "other.example.com".into();
    assert_ne!(a[0].sha256(), leaf_specs(&other, "ca1")[0].sha256());
    // The admin certificate does not name the DNS name, so it is unaffected.
    assert_eq!(a[5].name, "admin");
    assert_eq!(a[5].sha256(), leaf_specs(&other, "ca1")[5].sha256());
}

#[test]
fn apiserver_certificate_has_every_san_and_chains_to_the_ca() {
    let c = config();
    let ca = issue(&ca_spec(&c), None, now()).unwrap();
    let signer = CaSigner::new(&ca_spec(&c), &ca.key_pem).unwrap();
    let specs = leaf_specs(&c, &ca.certificate_sha256);
    let apiserver = issue(&specs[0], Some(&signer), now()).unwrap();

    with_cert(&apiserver.certificate_pem, |cert| {
        let (dns, ips) = sans(cert);
        assert_eq!(
            dns,
            vec![
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "k8s.example.com",
                "api.demo.kube-aws.internal",
                "localhost"
            ]
        );
        assert_eq!(ips, vec![vec![10, 3, 0, 1], vec![127, 0, 0, 1]]);
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "kube-apiserver"
        );
        let validity = cert.validity();
        assert_eq!(
            (validity.not_after.timestamp() - now().unix_timestamp()) / 86_400,
            i64::from(c.tls_cert_duration_days)
        );
        with_cert(&ca.certificate_pem, |ca_cert| {
            assert_eq!(cert.issuer(), ca_cert.subject());
            cert.verify_signature(Some(ca_cert.public_key()))
                .expect("the leaf is signed by the CA");
            ca_cert
                .verify_signature(None)
                .expect("the CA is self-signed");
            assert!(ca_cert.is_ca());
        });
    });
}

#[test]
fn etcd_server_certificate_names_every_member() {
    let c = config();
    let ca = issue(&ca_spec(&c), None, now()).unwrap();
    let signer = CaSigner::new(&ca_spec(&c), &ca.key_pem).unwrap();
    let spec = leaf_specs(&c, &ca.certificate_sha256)
        .into_iter()
        .find(|s| s.name == "etcd-server")
        .unwrap();
    let etcd = issue(&spec, Some(&signer), now()).unwrap();
    with_cert(&etcd.certificate_pem, |cert| {
        let (dns, ips) = sans(cert);
        assert_eq!(
            dns,
            vec![
                "etcd-0.demo.kube-aws.internal",
                "etcd-1.demo.kube-aws.internal",
                "etcd-2.demo.kube-aws.internal",
                "localhost"
            ]
        );
        assert_eq!(ips, vec![vec![127, 0, 0, 1]]);
    });
}

#[test]
fn service_account_key_pair_is_rsa_with_a_pkix_public_key_and_ignores_certificate_settings() {
    let c = config();
    let spec = service_account_spec(&c);
    let issued = issue(&spec, None, now()).unwrap();
    assert!(
        issued
            .public_key_pem
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    // PKCS#8 RSA: what client-go's keyutil accepts for --service-account-signing-key-file.
    // Built from parts so no committed file holds a private-key PEM header.
    assert!(
        issued
            .key_pem
            .starts_with(concat!("-----BEGIN ", "PRIVATE KEY-----"))
    );
    let key = KeyPair::from_pem(&issued.key_pem).unwrap();
    assert!(key.is_compatible(&rcgen::PKCS_RSA_SHA256));
    let mut other = c.clone();
    other.tls_cert_duration_days = 30;
    other.tls_ca_duration_days = 100;
    assert_eq!(spec.sha256(), service_account_spec(&other).sha256());
    assert!(!renews_on_expiry(SERVICE_ACCOUNT));
}

#[test]
fn issued_debug_output_never_shows_the_key() {
    let c = config();
    let ca = issue(&ca_spec(&c), None, now()).unwrap();
    let shown = format!("{ca:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert!(shown.contains("<redacted>"));
}

#[test]
fn bootstrap_tokens_have_the_authenticator_format_and_differ() {
    let a = generate_bootstrap_token().unwrap();
    let b = generate_bootstrap_token().unwrap();
    for token in [&a, &b] {
        let (id, secret) = token.split_once('.').unwrap();
        assert_eq!((id.len(), secret.len()), (6, 16), "{}", token.as_str());
        assert!(
            token
                .chars()
                .all(|c| c == '.' || c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
    assert_ne!(a.as_str(), b.as_str());
    assert!(!renews_on_expiry(BOOTSTRAP_TOKEN));
}

#[test]
fn the_encryption_configuration_encrypts_secrets_with_a_fresh_32_byte_key_and_reads_old_ones() {
    use base64::Engine;
    let a = generate_encryption_configuration().unwrap();
    let b = generate_encryption_configuration().unwrap();
    assert_ne!(a.as_str(), b.as_str());
    let doc: serde_json::Value = serde_norway::from_str(&a).unwrap();
    assert_eq!(doc["apiVersion"], "apiserver.config.k8s.io/v1");
    assert_eq!(doc["kind"], "EncryptionConfiguration");
    let rule = &doc["resources"][0];
    assert_eq!(rule["resources"][0], "secrets");
    let secret = rule["providers"][0]["secretbox"]["keys"][0]["secret"]
        .as_str()
        .unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .unwrap();
    assert_eq!(key.len(), 32, "secretbox takes a 32-byte key");
    assert!(
        rule["providers"][1]["identity"].is_object(),
        "identity last: old Secrets stay readable"
    );
    assert!(!renews_on_expiry(SECRETS_ENCRYPTION));
    assert!(is_sealed_secret(&secrets_encryption_spec(&config())));
}

#[test]
fn rotating_the_secrets_key_takes_three_steps_that_never_drop_a_key_still_needed() {
    let names_and_secrets = |text: &str| -> Vec<(String, String)> {
        let doc: serde_json::Value = serde_norway::from_str(text).unwrap();
        let rule = &doc["resources"][0];
        assert!(
            rule["providers"][1]["identity"].is_object(),
            "identity stays last"
        );
        rule["providers"][0]["secretbox"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["name"].as_str().unwrap().to_string(),
                    k["secret"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let start = generate_encryption_configuration().unwrap();
    let k1 = names_and_secrets(&start)[0].clone();

    let (step, one) = rotate_encryption_configuration(&start).unwrap();
    assert_eq!(step, RotationStep::AddNewKey);
    let after_one = names_and_secrets(&one);
    assert_eq!(after_one[0], k1, "the current key still encrypts");
    assert_eq!(after_one[1].0, "key2");
    assert_ne!(after_one[1].1, k1.1);
    let k2 = after_one[1].clone();

    let (step, two) = rotate_encryption_configuration(&one).unwrap();
    assert_eq!(step, RotationStep::EncryptWithNewKey);
    assert_eq!(names_and_secrets(&two), vec![k2.clone(), k1.clone()]);

    let (step, three) = rotate_encryption_configuration(&two).unwrap();
    assert_eq!(step, RotationStep::RemoveOldKey);
    assert_eq!(names_and_secrets(&three), vec![k2.clone()]);

    // The next rotation starts over from key2.
    let (step, again) = rotate_encryption_configuration(&three).unwrap();
    assert_eq!(step, RotationStep::AddNewKey);
    assert_eq!(names_and_secrets(&again)[0], k2);
    assert_eq!(names_and_secrets(&again)[1].0, "key3");

    assert!(rotate_encryption_configuration("kind: Nonsense\n").is_err());
}

#[test]
fn a_changed_spec_is_explained_by_what_the_old_certificate_shows() {
    let c = config();
    let ca = issue(&ca_spec(&c), None, now()).unwrap();
    let signer = CaSigner::new(&ca_spec(&c), &ca.key_pem).unwrap();
    let spec = leaf_specs(&c, &ca.certificate_sha256).remove(0);
    let apiserver = issue(&spec, Some(&signer), now()).unwrap();
    assert_eq!(
        spec_changes(&apiserver.certificate_pem, &spec),
        Vec::<String>::new()
    );

    let mut changed = spec.clone();
    changed.dns_names.retain(|d| d != "localhost");
    changed.dns_names.push("k8s.example.org".into());
    changed.ip_addresses.push(Ipv4Addr::new(10, 0, 0, 50));
    changed.validity_days += 30;
    changed.usages.push(Usage::ClientAuth);
    changed.organization = Some("system:masters".into());
    assert_eq!(
        spec_changes(&apiserver.certificate_pem, &changed),
        [
            "organization (none) → system:masters".to_string(),
            "names +DNS:k8s.example.org +IP:10.0.0.50 -DNS:localhost".to_string(),
            "usages server auth → server auth, client auth".to_string(),
            format!(
                "validity {} → {} days (tlsCertDurationDays)",
                spec.validity_days, changed.validity_days
            ),
        ]
    );
    // What a certificate does not show (its key algorithm) leaves nothing to say.
    let mut algorithm = spec.clone();
    algorithm.key_algorithm = "rsa-2048-sha256";
    assert!(spec_changes(&apiserver.certificate_pem, &algorithm).is_empty());
    assert!(spec_changes("not a certificate", &spec).is_empty());
}
