//! Finds the Flatcar Container Linux AMI of a release channel in the cluster's region.

use aws_sdk_ec2::types::Filter;

use super::AwsError;
use crate::config::ReleaseChannel;

/// The AWS account that publishes Flatcar Container Linux AMIs.
pub const FLATCAR_OWNER: &str = "075585003325";

/// Answers "which AMI is the newest of this channel here?".
#[allow(async_fn_in_trait)] // used through generics only
pub trait ImageCatalog {
    async fn latest_flatcar(&self, channel: ReleaseChannel) -> Result<String, AwsError>;
}

#[derive(Clone, Debug)]
pub struct Ec2Images {
    client: aws_sdk_ec2::Client,
}

impl Ec2Images {
    pub fn new(client: aws_sdk_ec2::Client) -> Ec2Images {
        Ec2Images { client }
    }
}

impl ImageCatalog for Ec2Images {
    async fn latest_flatcar(&self, channel: ReleaseChannel) -> Result<String, AwsError> {
        let filter = |name: &str, value: String| Filter::builder().name(name).values(value).build();
        let out = self
            .client
            .describe_images()
            .owners(FLATCAR_OWNER)
            .filters(filter("name", format!("Flatcar-{}-*", channel.as_str())))
            .filters(filter("architecture", "x86_64".into()))
            .filters(filter("virtualization-type", "hvm".into()))
            .filters(filter("state", "available".into()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("EC2", "DescribeImages", e))?;
        out.images()
            .iter()
            .filter(|image| image.image_id().is_some())
            .max_by(|a, b| a.creation_date().cmp(&b.creation_date()))
            .and_then(|image| image.image_id().map(str::to_string))
            .ok_or_else(|| AwsError {
                service: "EC2",
                operation: "DescribeImages",
                code: None,
                message: format!(
                    "no Flatcar {} AMI from owner {FLATCAR_OWNER} in this region; set `amiId` in cluster.yaml",
                    channel.as_str()
                ),
            })
    }
}
