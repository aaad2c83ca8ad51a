//! The KMS trait over HTTP to moto: the encryption context binds a key to cluster and asset.

use crate::harness::{block_on, moto};
use kube_aws::assets::encryption_context;
use kube_aws::aws::kms::{KeyVault, KmsVault};

#[test]
fn decrypt_with_the_same_context_succeeds_and_with_another_fails() {
    let moto = moto();
    let key = moto.create_kms_key();
    let other = moto.create_kms_key();
    block_on(async {
        let vault = KmsVault::new(aws_sdk_kms::Client::new(&moto.sdk_config().await));
        let context = encryption_context("ctx-test", "apiserver");
        let ciphertext = vault
            .encrypt(&key, b"secret key bytes", &context)
            .await
            .unwrap();
        assert!(!ciphertext.windows(6).any(|w| w == b"secret"));

        let plaintext = vault.decrypt(&key, &ciphertext, &context).await.unwrap();
        assert_eq!(&plaintext[..], b"secret key bytes");

        for wrong in [
            encryption_context("ctx-test", "admin"),
            encryption_context("other-cluster", "apiserver"),
            Default::default(),
        ] {
            let err = vault.decrypt(&key, &ciphertext, &wrong).await.unwrap_err();
            assert_eq!(err.operation, "Decrypt");
            assert_eq!(
                err.code.as_deref(),
                Some("InvalidCiphertextException"),
                "{err}"
            );
        }
        // Decrypt names the key: a blob sealed under another key is refused, not decrypted
        // with whichever key it names.
        let err = vault
            .decrypt(&other, &ciphertext, &context)
            .await
            .unwrap_err();
        assert_eq!(err.operation, "Decrypt");
    });
}
