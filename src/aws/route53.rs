//! Route53 behind what plan and apply need: find the hosted zone, read one record, change
//! records and wait until the change is in sync.

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};

use super::AwsError;
use crate::planfile::RecordAction;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// Without the `/hostedzone/` prefix.
    pub id: String,
    /// Without the trailing dot.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordValue {
    pub ttl: u32,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordChange {
    /// `Upsert` or `Delete`.
    pub action: RecordAction,
    pub name: String,
    pub record_type: String,
    pub ttl: u32,
    pub values: Vec<String>,
}

#[allow(async_fn_in_trait)] // used through generics only
pub trait DnsService {
    async fn zone_by_id(&self, id: &str) -> Result<Option<Zone>, AwsError>;
    async fn zone_by_name(&self, name: &str) -> Result<Option<Zone>, AwsError>;
    async fn record(
        &self,
        zone_id: &str,
        name: &str,
        record_type: &str,
    ) -> Result<Option<RecordValue>, AwsError>;
    /// Submits the changes as one batch and returns the change id.
    async fn change(&self, zone_id: &str, changes: &[RecordChange]) -> Result<String, AwsError>;
    /// Whether the change has reached every Route53 server.
    async fn in_sync(&self, change_id: &str) -> Result<bool, AwsError>;
}

#[derive(Clone, Debug)]
pub struct Route53 {
    client: aws_sdk_route53::Client,
}

impl Route53 {
    pub fn new(client: aws_sdk_route53::Client) -> Route53 {
        Route53 { client }
    }
}

fn err<E>(operation: &'static str) -> impl FnOnce(E) -> AwsError
where
    E: aws_sdk_route53::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    move |e| AwsError::from_sdk("Route53", operation, e)
}

fn bare_id(id: &str) -> String {
    id.trim_start_matches("/hostedzone/").to_string()
}

/// `example.com.` and `example.com` are the same name.
pub fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

impl DnsService for Route53 {
    async fn zone_by_id(&self, id: &str) -> Result<Option<Zone>, AwsError> {
        match self.client.get_hosted_zone().id(bare_id(id)).send().await {
            Ok(out) => Ok(out.hosted_zone.map(|z| Zone {
                id: bare_id(z.id()),
                name: z.name().trim_end_matches('.').to_string(),
            })),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_hosted_zone()) =>
            {
                Ok(None)
            }
            Err(e) => Err(err("GetHostedZone")(e)),
        }
    }

    async fn zone_by_name(&self, name: &str) -> Result<Option<Zone>, AwsError> {
        let out = self
            .client
            .list_hosted_zones_by_name()
            .dns_name(fqdn(name))
            .max_items(1)
            .send()
            .await
            .map_err(err("ListHostedZonesByName"))?;
        Ok(out
            .hosted_zones()
            .iter()
            .find(|z| z.name() == fqdn(name))
            .map(|z| Zone {
                id: bare_id(z.id()),
                name: z.name().trim_end_matches('.').to_string(),
            }))
    }

    async fn record(
        &self,
        zone_id: &str,
        name: &str,
        record_type: &str,
    ) -> Result<Option<RecordValue>, AwsError> {
        let out = self
            .client
            .list_resource_record_sets()
            .hosted_zone_id(bare_id(zone_id))
            .start_record_name(fqdn(name))
            .start_record_type(RrType::from(record_type))
            .max_items(1)
            .send()
            .await
            .map_err(err("ListResourceRecordSets"))?;
        Ok(out
            .resource_record_sets()
            .iter()
            .find(|r| fqdn(r.name()) == fqdn(name) && r.r#type().as_str() == record_type)
            .map(|r| RecordValue {
                ttl: r.ttl().unwrap_or(0).max(0) as u32,
                values: r
                    .resource_records()
                    .iter()
                    .map(|v| v.value().to_string())
                    .collect(),
            }))
    }

    async fn change(&self, zone_id: &str, changes: &[RecordChange]) -> Result<String, AwsError> {
        let build = |c: &RecordChange| -> Result<Change, AwsError> {
            let invalid = |e: aws_sdk_route53::error::BuildError| AwsError {
                service: "Route53",
                operation: "ChangeResourceRecordSets",
                code: None,
                message: e.to_string(),
            };
            let records = c
                .values
                .iter()
                .map(|v| ResourceRecord::builder().value(v).build().map_err(invalid))
                .collect::<Result<Vec<_>, _>>()?;
            let set = ResourceRecordSet::builder()
                .name(fqdn(&c.name))
                .r#type(RrType::from(c.record_type.as_str()))
                .ttl(i64::from(c.ttl))
                .set_resource_records(Some(records))
                .build()
                .map_err(invalid)?;
            Change::builder()
                .action(ChangeAction::from(c.action.as_str()))
                .resource_record_set(set)
                .build()
                .map_err(invalid)
        };
        let batch = ChangeBatch::builder()
            .comment("kube-aws apply")
            .set_changes(Some(
                changes.iter().map(build).collect::<Result<Vec<_>, _>>()?,
            ))
            .build()
            .map_err(|e| AwsError {
                service: "Route53",
                operation: "ChangeResourceRecordSets",
                code: None,
                message: e.to_string(),
            })?;
        let out = self
            .client
            .change_resource_record_sets()
            .hosted_zone_id(bare_id(zone_id))
            .change_batch(batch)
            .send()
            .await
            .map_err(err("ChangeResourceRecordSets"))?;
        Ok(out
            .change_info
            .map(|c| c.id.trim_start_matches("/change/").to_string())
            .unwrap_or_default())
    }

    async fn in_sync(&self, change_id: &str) -> Result<bool, AwsError> {
        let out = self
            .client
            .get_change()
            .id(change_id)
            .send()
            .await
            .map_err(err("GetChange"))?;
        Ok(out
            .change_info
            .is_some_and(|c| c.status == ChangeStatus::Insync))
    }
}
