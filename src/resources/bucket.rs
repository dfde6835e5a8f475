//! The account's SSM output bucket in the region (shared by every stack, created by the first
//! provision there, never removed) and a stack's objects in it: what is found, planned, made
//! and removed. The S3 calls themselves are in aws/s3.rs, which the phases use too.

use super::change::{step, Change, Step};
use super::Teardown;
use super::{touched, Apply, Made};
use crate::aws::tags::Role;
use crate::aws::Aws;
use crate::error::Result;
use crate::resources::discover::Discovered;
use crate::spec::StackId;
use serde::Serialize;

/// The account's SSM output bucket in this region, and this stack's objects in it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutputBucket {
    pub name: String,
    pub exists: bool,
    pub encrypted: bool,
    pub public_access_blocked: bool,
    pub stack_objects: Vec<String>,
    /// The retention periods (days) the bucket's backup lifecycle rules expire.
    pub backup_rules: Vec<u32>,
}

/// The ID of the rule that expires backups tagged `poscloud:keep=<days>d`.
fn rule_id(days: u32) -> String {
    format!("poscloud-backup-keep-{days}d")
}

/// The periods of the bucket's poscloud backup rules (by their IDs).
fn backup_rules(rules: &[aws_sdk_s3::types::LifecycleRule]) -> Vec<u32> {
    rules
        .iter()
        .filter_map(|r| {
            r.id()?
                .strip_prefix("poscloud-backup-keep-")?
                .strip_suffix('d')?
                .parse()
                .ok()
        })
        .collect()
}

/// A rule that expires every object tagged `poscloud:keep=<days>d` (backup archives and
/// their summaries; the host tags both) `days` after it was written.
fn backup_rule(days: u32) -> Result<aws_sdk_s3::types::LifecycleRule> {
    use aws_sdk_s3::types::{
        ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, Tag,
    };
    let bad = |e: aws_sdk_s3::error::BuildError| {
        crate::error::Error::failed(format!("a lifecycle rule: {e}"))
    };
    LifecycleRule::builder()
        .id(rule_id(days))
        .filter(
            LifecycleRuleFilter::builder()
                .tag(
                    Tag::builder()
                        .key("poscloud:keep")
                        .value(format!("{days}d"))
                        .build()
                        .map_err(bad)?,
                )
                .build(),
        )
        .expiration(LifecycleExpiration::builder().days(days as i32).build())
        .status(ExpirationStatus::Enabled)
        .build()
        .map_err(bad)
}

impl Aws {
    pub(crate) async fn find_output(&self, id: &StackId) -> Result<(String, OutputBucket)> {
        let account = self.account_id().await?;
        let name = crate::aws::s3::output_bucket_name(&account, &self.region);
        // All at once: the settings and keys of a bucket that does not exist read as none.
        let prefix = crate::aws::s3::stack_prefix(id);
        let (exists, (encrypted, public_access_blocked), stack_objects, rules) = tokio::try_join!(
            self.bucket_exists(&name),
            self.bucket_security(&name),
            self.list_keys(&name, &prefix, 1000),
            self.lifecycle_rules(&name)
        )?;
        Ok((
            account,
            OutputBucket {
                name,
                exists,
                encrypted: exists && encrypted,
                public_access_blocked: exists && public_access_blocked,
                stack_objects: if exists { stack_objects } else { Vec::new() },
                backup_rules: backup_rules(&rules),
            },
        ))
    }
}

/// The bucket, encrypted and closed to the public; with a POS (whose host backs up), the
/// lifecycle rules that expire its backups.
pub fn plan(spec: &crate::spec::StackSpec, d: &Discovered) -> Vec<Step> {
    let out = &d.output;
    let mut changes = Vec::new();
    if !out.exists {
        changes.push(Change::CreateOutputBucket {
            name: out.name.clone(),
        });
    }
    if !(out.encrypted && out.public_access_blocked) {
        changes.push(Change::SecureOutputBucket);
    }
    if spec.pos.is_some() {
        let days: Vec<u32> = spec
            .backup
            .keep_days()
            .into_iter()
            .filter(|n| !out.backup_rules.contains(n))
            .collect();
        if !days.is_empty() {
            changes.push(Change::BackupLifecycle { days });
        }
    }
    vec![step(
        Role::OutputBucket,
        out.exists.then_some(out.name.as_str()),
        changes,
        vec![],
    )]
}

/// Whether `a` (one of this module's changes) waits for `b`.
pub fn needs(a: &Change, b: &Change) -> bool {
    matches!(
        a,
        Change::SecureOutputBucket | Change::BackupLifecycle { .. }
    ) && matches!(b, Change::CreateOutputBucket { .. })
}

pub(crate) async fn apply(x: &Apply<'_>, change: &Change) -> Result<Made> {
    match change {
        Change::CreateOutputBucket { name } => {
            x.aws.create_output_bucket(name).await?;
            x.write(|d| d.output.exists = true);
            touched(name.clone())
        }
        Change::SecureOutputBucket => {
            let name = x.read(|d| d.output.name.clone());
            x.aws.secure_bucket(&name).await?;
            x.write(|d| {
                d.output.encrypted = true;
                d.output.public_access_blocked = true;
            });
            touched(name)
        }
        Change::BackupLifecycle { days } => {
            let name = x.read(|d| d.output.name.clone());
            // The whole configuration is one document shared by the region's stacks: read it
            // just before, add only what is missing, keep every other rule.
            let mut rules = x.aws.lifecycle_rules(&name).await?;
            let have = backup_rules(&rules);
            for &n in days.iter().filter(|n| !have.contains(n)) {
                rules.push(backup_rule(n)?);
            }
            x.aws.put_lifecycle_rules(&name, rules).await?;
            x.write(|d| d.output.backup_rules.extend(days.iter().copied()));
            touched(name)
        }
        other => unreachable!("not a bucket change: {other}"),
    }
}

/// Deletes the stack's objects (its `<shop>/<env>/` prefix), never the bucket; its backups
/// (`<shop>/<env>/backups/`) only when the teardown does not keep them.
pub(crate) async fn delete(t: &Teardown<'_>, d: &Discovered) {
    let prefix = crate::aws::s3::stack_prefix(t.id);
    let backups = format!("{prefix}backups/");
    let (kept, gone): (Vec<String>, Vec<String>) = d
        .output
        .stack_objects
        .iter()
        .cloned()
        .partition(|k| t.keep_backups && k.starts_with(&backups));
    if !gone.is_empty() {
        t.one(
            format!(
                "delete the stack's objects in s3://{}/{prefix}",
                d.output.name
            ),
            async { t.aws.delete_keys(&d.output.name, &gone).await.map(|_| ()) },
        )
        .await;
    }
    if !kept.is_empty() {
        t.ui.info(format!(
            "kept {} backup object(s) in s3://{}/{backups} (the stack file keeps backups after a teardown; they expire by the bucket's lifecycle rules, `poscloud backup list` still reads them)",
            kept.len(),
            d.output.name
        ));
    }
}
