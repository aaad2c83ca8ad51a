//! The S3 backend's storage: objects in a versioned bucket, written with S3's conditional
//! requests (`If-None-Match: *`, `If-Match`) so that no concurrent update is ever lost.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AwsError;
use crate::state::objects::{
    Object, ObjectStore, ObjectVersion, Precondition, StoreError, Written,
};

/// What [`S3Objects::versioning`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketVersioning {
    NoBucket,
    Off,
    Enabled,
}

#[derive(Debug, Clone)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Objects {
    pub fn new(client: aws_sdk_s3::Client, bucket: &str) -> S3Objects {
        S3Objects {
            client,
            bucket: bucket.to_string(),
        }
    }

    /// Objects in `bucket` through the context's credentials, in the bucket's `region`.
    pub fn connect(aws: &super::AwsContext, region: &str, bucket: &str) -> S3Objects {
        S3Objects::new(aws.s3(Some(region)), bucket)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Whether the bucket exists for this caller and keeps versions (the state needs both).
    pub async fn versioning(&self) -> Result<BucketVersioning, AwsError> {
        match self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => Ok(
                match out.status() == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled) {
                    true => BucketVersioning::Enabled,
                    false => BucketVersioning::Off,
                },
            ),
            Err(e) if e.code() == Some("NoSuchBucket") => Ok(BucketVersioning::NoBucket),
            Err(e) => Err(AwsError::from_sdk("S3", "GetBucketVersioning", e)),
        }
    }

    async fn read_object(
        &self,
        key: &str,
        out: aws_sdk_s3::operation::get_object::GetObjectOutput,
    ) -> Result<Object, StoreError> {
        let etag = out.e_tag.clone().unwrap_or_default();
        let version_id = out.version_id.clone().filter(|v| v != "null");
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Failed {
                location: self.location(key),
                message: format!("reading the object body: {e}"),
            })?
            .into_bytes()
            .to_vec();
        Ok(Object {
            bytes,
            etag,
            version_id,
        })
    }

    fn failed<E>(&self, key: &str, operation: &'static str, e: E) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        StoreError::Failed {
            location: self.location(key),
            message: AwsError::from_sdk("S3", operation, e).to_string(),
        }
    }
}

/// S3 answers a failed condition with 412 PreconditionFailed, and under contention may answer
/// 409 ConditionalRequestConflict; both mean another writer got there first.
fn is_precondition_failure(code: Option<&str>) -> bool {
    matches!(
        code,
        // NoSuchKey: a conditional write of an object that is gone (a removed lock).
        Some("PreconditionFailed") | Some("ConditionalRequestConflict") | Some("NoSuchKey")
    )
}

fn rfc3339(t: Option<&aws_sdk_s3::primitives::DateTime>) -> String {
    t.and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

impl ObjectStore for S3Objects {
    fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.failed(key, "GetObject", e)),
        };
        self.read_object(key, out).await.map(Some)
    }

    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        condition: Precondition,
    ) -> Result<Written, StoreError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(bytes.to_vec()));
        request = match condition {
            Precondition::IfAbsent => request.if_none_match("*"),
            Precondition::IfMatch(etag) => request.if_match(etag),
            Precondition::Overwrite => request,
        };
        match request.send().await {
            Ok(out) => Ok(Written {
                etag: out.e_tag.unwrap_or_default(),
                version_id: out.version_id.filter(|v| v != "null"),
            }),
            Err(e) if is_precondition_failure(e.code()) => Err(StoreError::PreconditionFailed {
                location: self.location(key),
            }),
            Err(e) => Err(self.failed(key, "PutObject", e)),
        }
    }

    async fn delete(&self, key: &str, if_match: &str) -> Result<(), StoreError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .if_match(if_match)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_precondition_failure(e.code()) => Err(StoreError::PreconditionFailed {
                location: self.location(key),
            }),
            Err(e) => Err(self.failed(key, "DeleteObject", e)),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        while keys.len() < max {
            let page = i32::try_from((max - keys.len()).min(1000)).unwrap_or(1000);
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_start_after(start_after.map(str::to_string))
                .set_continuation_token(token.clone())
                .max_keys(page)
                .send()
                .await
                .map_err(|e| self.failed(prefix, "ListObjectsV2", e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match out.next_continuation_token {
                Some(next) if out.is_truncated == Some(true) => token = Some(next),
                _ => break,
            }
        }
        keys.truncate(max);
        Ok(keys)
    }

    async fn versions(&self, key: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        let mut versions = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(key)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .map_err(|e| self.failed(key, "ListObjectVersions", e))?;
            versions.extend(
                out.versions()
                    .iter()
                    .filter(|v| v.key() == Some(key))
                    .map(|v| ObjectVersion {
                        version_id: v.version_id().unwrap_or("null").to_string(),
                        last_modified: rfc3339(v.last_modified()),
                        is_latest: v.is_latest() == Some(true),
                        size: v.size().unwrap_or(0).max(0) as u64,
                    }),
            );
            if out.is_truncated == Some(true) {
                key_marker = out.next_key_marker;
                version_marker = out.next_version_id_marker;
            } else {
                break;
            }
        }
        versions.sort_by(|a, b| {
            b.last_modified
                .cmp(&a.last_modified)
                .then(b.is_latest.cmp(&a.is_latest))
        });
        Ok(versions)
    }

    async fn get_version(&self, key: &str, version_id: &str) -> Result<Object, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| self.failed(key, "GetObject", e))?;
        self.read_object(key, out).await
    }
}
