//! Who is acting: the STS caller ARN online, `user@host` offline; audit entries and locks
//! name it.

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

/// `user@host` for offline runs.
pub fn local_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}
