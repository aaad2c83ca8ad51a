//! Who is acting: the STS caller ARN, which audit entries and locks name; a run that cannot
//! learn it is refused rather than recorded under an unverified name.

use super::AwsError;

/// The ARN of the credentials in use (STS GetCallerIdentity).
pub async fn caller_arn(sdk: &aws_config::SdkConfig) -> Result<String, AwsError> {
    let out = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("STS", "GetCallerIdentity", e))?;
    out.arn.ok_or_else(|| AwsError {
        service: "STS",
        operation: "GetCallerIdentity",
        code: None,
        message: "the response carried no Arn".into(),
    })
}
