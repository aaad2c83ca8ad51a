//! `kubeconfig`: the admin credentials, decrypted through KMS into a file only the user can
//! read. The one place a private key is decrypted for the user.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{AwsOptions, EngineError, open};
use crate::assets::encryption_context;
use crate::aws::kms::KeyVault;

/// Decrypts the admin key with its encryption context and writes a kubeconfig (mode 0600)
/// for `https://<externalDNSName>`. Refuses to replace a file unless `force`.
pub async fn kubeconfig(
    dir: &Path,
    aws: &AwsOptions,
    output: &Path,
    force: bool,
) -> Result<PathBuf, EngineError> {
    if output.exists() && !force {
        return Err(EngineError::OutputExists(output.to_path_buf()));
    }
    let (config, context, backend) = open(dir, aws).await?;
    let state = backend
        .load(&config)
        .await?
        .ok_or(EngineError::NotApplied)?
        .state;
    let (Some(admin), Some(ca)) = (state.tls.get("admin"), state.tls.get("ca")) else {
        return Err(EngineError::NoAdminCertificate);
    };
    let ciphertext = super::pki::sealed_key(admin, "admin key")?;
    let key = context
        .kms()
        .decrypt(
            &config.kms_key_arn,
            &ciphertext,
            &encryption_context(&config.cluster_name, "admin"),
        )
        .await?;
    let name = &config.cluster_name;
    let text = zeroize::Zeroizing::new(format!(
        "apiVersion: v1\nkind: Config\nclusters:\n  - name: {name}\n    cluster:\n      server: https://{server}\n      certificate-authority-data: {ca}\nusers:\n  - name: {name}-admin\n    user:\n      client-certificate-data: {cert}\n      client-key-data: {key}\ncontexts:\n  - name: {name}\n    context:\n      cluster: {name}\n      user: {name}-admin\ncurrent-context: {name}\n",
        server = config.external_dns_name,
        ca = BASE64.encode(&ca.certificate_pem),
        cert = BASE64.encode(&admin.certificate_pem),
        key = zeroize::Zeroizing::new(BASE64.encode(&*key)).as_str(),
    ));
    write_private(output, text.as_bytes(), force).map_err(|source| EngineError::Io {
        path: output.to_path_buf(),
        source,
    })?;
    Ok(output.to_path_buf())
}

/// Creates (or with `force` replaces) a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8], force: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if force && path.exists() {
        std::fs::remove_file(path)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
