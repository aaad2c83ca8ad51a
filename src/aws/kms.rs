//! KMS behind the one operation pair the PKI needs: encrypt a private key, decrypt it again,
//! always bound to an encryption context.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_kms::primitives::Blob;
use zeroize::Zeroizing;

use super::AwsError;

/// Encrypts and decrypts key material under a fixed KMS key.
#[allow(async_fn_in_trait)] // used through generics only; callers never need `Send` bounds named
pub trait KeyVault {
    /// Returns the ciphertext blob of `plaintext` under `key_id`, bound to `context`.
    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, AwsError>;

    /// Decrypts a ciphertext blob with `key_id` only (KMS refuses a blob another key sealed,
    /// instead of using whichever key the blob names); fails unless `context` is the one it was
    /// encrypted with.
    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<Vec<u8>>, AwsError>;
}

/// [`KeyVault`] over the AWS SDK's KMS client.
#[derive(Clone, Debug)]
pub struct KmsVault {
    client: aws_sdk_kms::Client,
}

impl KmsVault {
    pub fn new(client: aws_sdk_kms::Client) -> KmsVault {
        KmsVault { client }
    }
}

impl KmsVault {
    /// DescribeKey's metadata, or `None` for a key that does not exist.
    async fn described(
        &self,
        key_id: &str,
    ) -> Result<Option<aws_sdk_kms::types::KeyMetadata>, AwsError> {
        match self.client.describe_key().key_id(key_id).send().await {
            Ok(out) => Ok(out.key_metadata),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(AwsError::from_sdk("KMS", "DescribeKey", e)),
        }
    }

    /// Why `key_id` cannot seal keys for this caller (missing, disabled, not allowed to
    /// Encrypt with `context`), or `None` when it can.
    pub async fn check_key(
        &self,
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<Option<String>, AwsError> {
        let Some(metadata) = self.described(key_id).await? else {
            return Ok(Some(format!("KMS key {key_id} does not exist")));
        };
        if !metadata.enabled {
            return Ok(Some(format!("KMS key {key_id} is disabled")));
        }
        match self.encrypt(key_id, b"kube-aws validate", context).await {
            Ok(_) => Ok(None),
            Err(e) => Ok(Some(format!(
                "this caller cannot Encrypt with KMS key {key_id}: {e}"
            ))),
        }
    }
}

impl KmsVault {
    /// Why `key_id` cannot sign plans (missing, disabled, not an asymmetric `SIGN_VERIFY`
    /// `ECC_NIST_P256` key), or `None` when it can; from DescribeKey alone, so validate signs
    /// nothing.
    pub async fn check_signing_key(&self, key_id: &str) -> Result<Option<String>, AwsError> {
        use aws_sdk_kms::types::{KeySpec, KeyUsageType};
        let Some(metadata) = self.described(key_id).await? else {
            return Ok(Some(format!("KMS key {key_id} does not exist")));
        };
        let named = |value: Option<&str>| value.unwrap_or("(none given)").to_string();
        let (usage, spec) = (metadata.key_usage.clone(), metadata.key_spec.clone());
        Ok(if !metadata.enabled {
            Some(format!("KMS key {key_id} is disabled"))
        } else if usage != Some(KeyUsageType::SignVerify) || spec != Some(KeySpec::EccNistP256) {
            Some(format!(
                "KMS key {key_id} cannot sign plans: its KeyUsage is {} and its KeySpec {}; plans need an asymmetric SIGN_VERIFY key of spec ECC_NIST_P256",
                named(usage.as_ref().map(|u| u.as_str())),
                named(spec.as_ref().map(|s| s.as_str()))
            ))
        } else {
            None
        })
    }
}

/// The one signing algorithm plans use: ECDSA on P-256 over the plan's SHA-256.
pub const PLAN_SIGNING_ALGORITHM: &str = "ECDSA_SHA_256";

impl KmsVault {
    /// Signs a SHA-256 digest with an asymmetric `ECC_NIST_P256` key; the private key never
    /// leaves KMS.
    pub async fn sign_digest(&self, key_id: &str, digest: &[u8]) -> Result<Vec<u8>, AwsError> {
        self.sign(key_id, digest, aws_sdk_kms::types::MessageType::Digest)
            .await
    }

    /// Whether `signature` is `key_id`'s signature of `digest`.
    pub async fn verify_digest(
        &self,
        key_id: &str,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, AwsError> {
        self.verify(
            key_id,
            digest,
            signature,
            aws_sdk_kms::types::MessageType::Digest,
        )
        .await
    }

    /// Signs a short message that KMS hashes itself (audit entries sign their hash's hex this
    /// way, so the apply role can be allowed RAW signing only and never sign a plan digest).
    pub async fn sign_raw(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>, AwsError> {
        self.sign(key_id, message, aws_sdk_kms::types::MessageType::Raw)
            .await
    }

    /// Whether `signature` is `key_id`'s RAW signature of `message`.
    pub async fn verify_raw(
        &self,
        key_id: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, AwsError> {
        self.verify(
            key_id,
            message,
            signature,
            aws_sdk_kms::types::MessageType::Raw,
        )
        .await
    }

    async fn sign(
        &self,
        key_id: &str,
        message: &[u8],
        message_type: aws_sdk_kms::types::MessageType,
    ) -> Result<Vec<u8>, AwsError> {
        let out = self
            .client
            .sign()
            .key_id(key_id)
            .message(Blob::new(message))
            .message_type(message_type)
            .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("KMS", "Sign", e))?;
        out.signature.map(Blob::into_inner).ok_or_else(|| AwsError {
            service: "KMS",
            operation: "Sign",
            code: None,
            message: "the response carried no Signature".into(),
        })
    }

    /// KMS answers an invalid signature with KMSInvalidSignatureException, which is `false`
    /// here, not an error.
    async fn verify(
        &self,
        key_id: &str,
        message: &[u8],
        signature: &[u8],
        message_type: aws_sdk_kms::types::MessageType,
    ) -> Result<bool, AwsError> {
        let out = self
            .client
            .verify()
            .key_id(key_id)
            .message(Blob::new(message))
            .message_type(message_type)
            .signature(Blob::new(signature))
            .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.signature_valid),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_kms_invalid_signature_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(AwsError::from_sdk("KMS", "Verify", e)),
        }
    }
}

fn to_hash_map(context: &BTreeMap<String, String>) -> HashMap<String, String> {
    context
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl KeyVault for KmsVault {
    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, AwsError> {
        let out = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(plaintext))
            .set_encryption_context(Some(to_hash_map(context)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("KMS", "Encrypt", e))?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| AwsError {
                service: "KMS",
                operation: "Encrypt",
                code: None,
                message: "the response carried no CiphertextBlob".into(),
            })
    }

    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<Vec<u8>>, AwsError> {
        let out = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(ciphertext))
            .set_encryption_context(Some(to_hash_map(context)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("KMS", "Decrypt", e))?;
        out.plaintext
            .map(|b| Zeroizing::new(b.into_inner()))
            .ok_or_else(|| AwsError {
                service: "KMS",
                operation: "Decrypt",
                code: None,
                message: "the response carried no Plaintext".into(),
            })
    }
}
