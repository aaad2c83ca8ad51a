//! CloudFormation behind the operations plan and apply need: describe a stack, create,
//! describe, execute and delete change sets, read templates and stream stack events.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::types::{Capability, ChangeSetType, Tag};

use super::AwsError;
use crate::planfile::{Replacement, ResourceAction};

mod status;
pub mod watch;
pub use status::{ChangeSetStatus, ExecutionStatus, ResourceStatus, StackEnding, StackStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackDescription {
    pub id: String,
    pub name: String,
    /// The template's `Description`.
    pub description: Option<String>,
    pub status: StackStatus,
    pub status_reason: Option<String>,
    pub outputs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSetRequest {
    pub stack_name: String,
    pub change_set_name: String,
    /// True when the stack does not exist yet.
    pub create: bool,
    pub template_body: Option<String>,
    pub template_url: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Template parameters by name (a pool stack's, from the cluster stack's outputs).
    pub parameters: BTreeMap<String, String>,
    pub description: String,
}

/// One resource change of a change set, as CloudFormation describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceChange {
    pub action: ResourceAction,
    pub logical_id: String,
    pub resource_type: String,
    pub physical_id: Option<String>,
    /// Absent when the service gives none.
    pub replacement: Option<Replacement>,
    pub scope: Vec<String>,
    pub details: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSetDescription {
    pub arn: String,
    pub stack_id: Option<String>,
    pub status: ChangeSetStatus,
    pub status_reason: Option<String>,
    pub execution_status: ExecutionStatus,
    pub changes: Vec<ResourceChange>,
}

impl ChangeSetDescription {
    /// Made, and neither executed nor made obsolete by another change: apply may run it.
    pub fn is_executable(&self) -> bool {
        self.status == ChangeSetStatus::CreateComplete
            && self.execution_status == ExecutionStatus::Available
    }

    /// CloudFormation refused to make it because the template and parameters change nothing.
    /// The API says so only in the reason's words (two wordings are in use).
    pub fn found_no_changes(&self) -> bool {
        self.status == ChangeSetStatus::Failed
            && self.status_reason.as_deref().is_some_and(|reason| {
                reason.contains("didn't contain changes")
                    || reason.contains("No updates are to be performed")
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEvent {
    pub id: String,
    pub timestamp: String,
    pub logical_id: String,
    pub resource_type: String,
    pub status: ResourceStatus,
    pub reason: Option<String>,
}

/// The CloudFormation operations kube-aws uses.
#[allow(async_fn_in_trait)] // used through generics only
pub trait StackService {
    /// `None` when the stack does not exist (or only its deletion remains).
    async fn describe_stack(&self, name: &str) -> Result<Option<StackDescription>, AwsError>;
    /// Returns the change set ARN and the stack id.
    async fn create_change_set(
        &self,
        request: &ChangeSetRequest,
    ) -> Result<(String, String), AwsError>;
    /// The change set with every page of its changes.
    async fn describe_change_set(
        &self,
        stack: &str,
        change_set: &str,
    ) -> Result<ChangeSetDescription, AwsError>;
    async fn delete_change_set(&self, stack: &str, change_set: &str) -> Result<(), AwsError>;
    async fn execute_change_set(&self, stack: &str, change_set: &str) -> Result<(), AwsError>;
    /// The template a change set would apply, or the stack's current one when `change_set`
    /// is `None`.
    async fn get_template(&self, stack: &str, change_set: Option<&str>)
    -> Result<String, AwsError>;
    async fn delete_stack(&self, stack: &str) -> Result<(), AwsError>;
    /// Each of the stack's resources by logical id: its physical id.
    async fn physical_ids(&self, stack: &str) -> Result<BTreeMap<String, String>, AwsError>;
    /// CloudFormation's own check of a template body.
    async fn validate_template(&self, body: &str) -> Result<(), AwsError>;
    /// The stack's events, newest first, stopping at `until_id` (exclusive).
    async fn events_since(
        &self,
        stack: &str,
        until_id: Option<&str>,
    ) -> Result<Vec<StackEvent>, AwsError>;
}

#[derive(Clone, Debug)]
pub struct CloudFormation {
    client: aws_sdk_cloudformation::Client,
    /// The service role the stacks' changes and deletions run as (`RoleARN`), if any.
    role_arn: Option<String>,
}

impl CloudFormation {
    pub fn new(client: aws_sdk_cloudformation::Client) -> CloudFormation {
        CloudFormation {
            client,
            role_arn: None,
        }
    }

    /// Every change set made and stack deleted through this client runs as `role`.
    pub fn acting_through(self, role: Option<String>) -> CloudFormation {
        CloudFormation {
            role_arn: role,
            ..self
        }
    }
}

fn err<E>(operation: &'static str) -> impl FnOnce(E) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    move |e| AwsError::from_sdk("CloudFormation", operation, e)
}

fn timestamp(t: Option<&aws_sdk_cloudformation::primitives::DateTime>) -> String {
    t.and_then(|t| {
        t.fmt(aws_sdk_cloudformation::primitives::DateTimeFormat::DateTime)
            .ok()
    })
    .unwrap_or_default()
}

impl StackService for CloudFormation {
    async fn describe_stack(&self, name: &str) -> Result<Option<StackDescription>, AwsError> {
        let out = match self.client.describe_stacks().stack_name(name).send().await {
            Ok(out) => out,
            // A missing stack is a ValidationError saying "Stack with id X does not exist".
            Err(e)
                if e.code() == Some("ValidationError")
                    && e.message().is_some_and(|m| m.contains("does not exist")) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(err("DescribeStacks")(e)),
        };
        let Some(stack) = out.stacks().first() else {
            return Ok(None);
        };
        let status = StackStatus::from(stack.stack_status().map_or("", |s| s.as_str()));
        if status == StackStatus::DeleteComplete {
            return Ok(None);
        }
        Ok(Some(StackDescription {
            id: stack.stack_id().unwrap_or_default().to_string(),
            name: stack.stack_name().unwrap_or(name).to_string(),
            description: stack.description().map(str::to_string),
            status,
            status_reason: stack.stack_status_reason().map(str::to_string),
            outputs: stack
                .outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
                .collect(),
        }))
    }

    async fn create_change_set(
        &self,
        request: &ChangeSetRequest,
    ) -> Result<(String, String), AwsError> {
        let tags: Vec<Tag> = request
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let out = self
            .client
            .create_change_set()
            .stack_name(&request.stack_name)
            .change_set_name(&request.change_set_name)
            .change_set_type(if request.create {
                ChangeSetType::Create
            } else {
                ChangeSetType::Update
            })
            .set_template_body(request.template_body.clone())
            .set_template_url(request.template_url.clone())
            .capabilities(Capability::CapabilityIam)
            .set_role_arn(self.role_arn.clone())
            .set_tags((!tags.is_empty()).then_some(tags))
            .set_parameters((!request.parameters.is_empty()).then(|| {
                request
                    .parameters
                    .iter()
                    .map(|(k, v)| {
                        aws_sdk_cloudformation::types::Parameter::builder()
                            .parameter_key(k)
                            .parameter_value(v)
                            .build()
                    })
                    .collect()
            }))
            .description(&request.description)
            .send()
            .await
            .map_err(err("CreateChangeSet"))?;
        Ok((out.id.unwrap_or_default(), out.stack_id.unwrap_or_default()))
    }

    async fn describe_change_set(
        &self,
        stack: &str,
        change_set: &str,
    ) -> Result<ChangeSetDescription, AwsError> {
        let mut token: Option<String> = None;
        let mut description: Option<ChangeSetDescription> = None;
        loop {
            let out = self
                .client
                .describe_change_set()
                .stack_name(stack)
                .change_set_name(change_set)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(err("DescribeChangeSet"))?;
            let mut changes = Vec::new();
            for rc in out.changes().iter().filter_map(|c| c.resource_change()) {
                changes.push(ResourceChange {
                    action: plan_word(rc.action().map_or("", |a| a.as_str()))?,
                    logical_id: rc.logical_resource_id().unwrap_or_default().to_string(),
                    resource_type: rc.resource_type().unwrap_or_default().to_string(),
                    physical_id: rc.physical_resource_id().map(str::to_string),
                    replacement: rc
                        .replacement()
                        .map(|r| plan_word(r.as_str()))
                        .transpose()?,
                    scope: rc.scope().iter().map(|s| s.as_str().to_string()).collect(),
                    details: rc
                        .details()
                        .iter()
                        .filter_map(|d| {
                            let target = d.target()?;
                            Some(format!(
                                "{}{} ({}, {})",
                                target.attribute().map(|a| a.as_str()).unwrap_or(""),
                                target.name().map(|n| format!(".{n}")).unwrap_or_default(),
                                target
                                    .requires_recreation()
                                    .map(|r| format!("recreation {}", r.as_str()))
                                    .unwrap_or_default(),
                                d.evaluation().map(|e| e.as_str()).unwrap_or("")
                            ))
                        })
                        .collect(),
                });
            }
            let entry = description.get_or_insert_with(|| ChangeSetDescription {
                arn: out.change_set_id().unwrap_or_default().to_string(),
                stack_id: out.stack_id().map(str::to_string),
                status: ChangeSetStatus::from(out.status().map_or("", |s| s.as_str())),
                status_reason: out.status_reason().map(str::to_string),
                execution_status: ExecutionStatus::from(
                    out.execution_status().map_or("", |s| s.as_str()),
                ),
                changes: Vec::new(),
            });
            entry.changes.extend(changes);
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => break,
            }
        }
        Ok(description.expect("the loop runs at least once"))
    }

    async fn delete_change_set(&self, stack: &str, change_set: &str) -> Result<(), AwsError> {
        self.client
            .delete_change_set()
            .stack_name(stack)
            .change_set_name(change_set)
            .send()
            .await
            .map_err(err("DeleteChangeSet"))?;
        Ok(())
    }

    async fn execute_change_set(&self, stack: &str, change_set: &str) -> Result<(), AwsError> {
        self.client
            .execute_change_set()
            .stack_name(stack)
            .change_set_name(change_set)
            .send()
            .await
            .map_err(err("ExecuteChangeSet"))?;
        Ok(())
    }

    async fn get_template(
        &self,
        stack: &str,
        change_set: Option<&str>,
    ) -> Result<String, AwsError> {
        let out = self
            .client
            .get_template()
            .stack_name(stack)
            .set_change_set_name(change_set.map(str::to_string))
            .send()
            .await
            .map_err(err("GetTemplate"))?;
        Ok(out.template_body.unwrap_or_default())
    }

    async fn delete_stack(&self, stack: &str) -> Result<(), AwsError> {
        self.client
            .delete_stack()
            .stack_name(stack)
            .set_role_arn(self.role_arn.clone())
            .send()
            .await
            .map_err(err("DeleteStack"))?;
        Ok(())
    }

    async fn physical_ids(&self, stack: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let mut ids = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_stack_resources()
                .stack_name(stack)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(err("ListStackResources"))?;
            for r in out.stack_resource_summaries() {
                if let (Some(logical), Some(physical)) =
                    (r.logical_resource_id(), r.physical_resource_id())
                {
                    ids.insert(logical.to_string(), physical.to_string());
                }
            }
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(ids),
            }
        }
    }

    async fn validate_template(&self, body: &str) -> Result<(), AwsError> {
        self.client
            .validate_template()
            .template_body(body)
            .send()
            .await
            .map_err(err("ValidateTemplate"))?;
        Ok(())
    }

    async fn events_since(
        &self,
        stack: &str,
        until_id: Option<&str>,
    ) -> Result<Vec<StackEvent>, AwsError> {
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        'pages: loop {
            let out = self
                .client
                .describe_stack_events()
                .stack_name(stack)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(err("DescribeStackEvents"))?;
            for e in out.stack_events() {
                let id = e.event_id().unwrap_or_default().to_string();
                if Some(id.as_str()) == until_id {
                    break 'pages;
                }
                events.push(StackEvent {
                    id,
                    timestamp: timestamp(e.timestamp()),
                    logical_id: e.logical_resource_id().unwrap_or_default().to_string(),
                    resource_type: e.resource_type().unwrap_or_default().to_string(),
                    status: ResourceStatus::from(e.resource_status().map_or("", |s| s.as_str())),
                    reason: e.resource_status_reason().map(str::to_string),
                });
            }
            match out.next_token {
                Some(next) if !next.is_empty() && until_id.is_some() => token = Some(next),
                _ => break,
            }
        }
        Ok(events)
    }
}

/// A word of CloudFormation's change set answer as the plan's vocabulary. One the plan has no
/// word for fails the description: a plan never misstates what a change does.
fn plan_word<W: std::str::FromStr<Err = crate::planfile::UnknownWord>>(
    word: &str,
) -> Result<W, AwsError> {
    word.parse()
        .map_err(|e: crate::planfile::UnknownWord| AwsError {
            service: "CloudFormation",
            operation: "DescribeChangeSet",
            code: None,
            message: e.to_string(),
        })
}
