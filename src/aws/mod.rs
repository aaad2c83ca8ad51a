//! The only place that talks to AWS: narrow traits over the SDK clients, so the engine states
//! what it needs (encrypt a key, find an AMI) and tests can count or fault what crosses the wire.

pub mod cloudformation;
pub mod identity;
pub mod images;
pub mod kms;
pub mod network;
pub mod route53;
pub mod s3;

use std::fmt::Debug;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::error::ProvideErrorMetadata;

/// A failed AWS call: which service and operation, the error code AWS returned, and why.
#[derive(Debug, thiserror::Error)]
#[error("AWS {service} {operation} failed: {message}")]
pub struct AwsError {
    pub service: &'static str,
    pub operation: &'static str,
    /// The AWS error code (`NotFoundException`, `PreconditionFailed`, …) when there is one.
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    pub(crate) fn from_sdk<E>(service: &'static str, operation: &'static str, e: E) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let message = match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_string(),
            _ => error_chain(&e),
        };
        AwsError {
            service,
            operation,
            code: e.code().map(str::to_string),
            message,
        }
    }
}

/// An error and its sources, joined: the SDK's outer errors ("dispatch failure") only make sense
/// with their causes ("failed to load credentials").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = inner.source();
    }
    parts.join(": ")
}

/// Shared SDK configuration: the standard credential chain, `--profile`, the region, and
/// `AWS_ENDPOINT_URL` (which aws-config reads itself), so one binary serves AWS and emulators.
#[derive(Clone, Debug)]
pub struct AwsContext {
    sdk: SdkConfig,
    /// `cloudFormationRoleArn`: the service role CloudFormation acts as for this cluster's
    /// stacks (passed on every change set and stack deletion), when there is one.
    cloudformation_role: Option<String>,
    /// A pull request's preview: it writes nothing instances read (add-on objects), so a
    /// branch's plan job cannot replace what a controller fetches at boot.
    preview: bool,
}

impl AwsContext {
    pub async fn load(region: &str, profile: Option<&str>) -> AwsContext {
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_string()));
        if let Some(profile) = profile {
            loader = loader.profile_name(profile);
        }
        AwsContext {
            sdk: loader.load().await,
            cloudformation_role: None,
            preview: false,
        }
    }

    /// CloudFormation acts as `role` (a service role) rather than with these credentials.
    pub fn acting_through(self, role: Option<String>) -> AwsContext {
        AwsContext {
            cloudformation_role: role,
            ..self
        }
    }

    /// This context plans a preview (see the field).
    pub fn previewing(self) -> AwsContext {
        AwsContext {
            preview: true,
            ..self
        }
    }

    pub fn is_preview(&self) -> bool {
        self.preview
    }

    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    pub fn kms(&self) -> kms::KmsVault {
        kms::KmsVault::new(aws_sdk_kms::Client::new(&self.sdk))
    }

    /// An S3 client for the state bucket's region. Path-style addressing whenever an endpoint
    /// is overridden, since `bucket.localhost`-style hosts do not resolve for local endpoints.
    pub fn s3(&self, region: Option<&str>) -> aws_sdk_s3::Client {
        let mut builder = aws_sdk_s3::config::Builder::from(&self.sdk);
        if let Some(region) = region {
            builder = builder.region(Region::new(region.to_string()));
        }
        if self.sdk.endpoint_url().is_some() {
            builder = builder.force_path_style(true);
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }

    /// Who this run is, for the audit log: the STS caller ARN. When STS cannot say, the run
    /// is refused rather than recorded under a name nobody verified.
    pub async fn actor(&self) -> Result<String, AwsError> {
        identity::caller_arn(&self.sdk).await
    }

    pub fn cloudformation(&self) -> cloudformation::CloudFormation {
        cloudformation::CloudFormation::new(aws_sdk_cloudformation::Client::new(&self.sdk))
            .acting_through(self.cloudformation_role.clone())
    }

    pub fn route53(&self) -> route53::Route53 {
        route53::Route53::new(aws_sdk_route53::Client::new(&self.sdk))
    }

    pub fn network(&self) -> network::Ec2Network {
        network::Ec2Network::new(aws_sdk_ec2::Client::new(&self.sdk))
    }

    pub fn images(&self) -> images::Ec2Images {
        images::Ec2Images::new(aws_sdk_ec2::Client::new(&self.sdk))
    }
}
