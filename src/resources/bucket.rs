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
}

impl Aws {
    pub(crate) async fn find_output(&self, id: &StackId) -> Result<(String, OutputBucket)> {
        let account = self.account_id().await?;
        let name = crate::aws::s3::output_bucket_name(&account, &self.region);
        // All at once: the settings and keys of a bucket that does not exist read as none.
        let prefix = crate::aws::s3::stack_prefix(id);
        let (exists, (encrypted, public_access_blocked), stack_objects) = tokio::try_join!(
            self.bucket_exists(&name),
            self.bucket_security(&name),
            self.list_keys(&name, &prefix, 1000)
        )?;
        Ok((
            account,
            OutputBucket {
                name,
                exists,
                encrypted: exists && encrypted,
                public_access_blocked: exists && public_access_blocked,
                stack_objects: if exists { stack_objects } else { Vec::new() },
            },
        ))
    }
}

/// The bucket, encrypted and closed to the public.
pub fn plan(d: &Discovered) -> Vec<Step> {
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
    vec![step(
        Role::OutputBucket,
        out.exists.then_some(out.name.as_str()),
        changes,
        vec![],
    )]
}

/// Whether `a` (one of this module's changes) waits for `b`.
pub fn needs(a: &Change, b: &Change) -> bool {
    matches!(a, Change::SecureOutputBucket) && matches!(b, Change::CreateOutputBucket { .. })
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
        other => unreachable!("not a bucket change: {other}"),
    }
}

/// Deletes the stack's objects (its `<shop>/<env>/` prefix), never the bucket.
pub(crate) async fn delete(t: &Teardown<'_>, d: &Discovered) {
    if !d.output.stack_objects.is_empty() {
        let prefix = crate::aws::s3::stack_prefix(t.id);
        t.one(
            format!("delete command output s3://{}/{prefix}", d.output.name),
            async {
                t.aws
                    .delete_prefix(&d.output.name, &prefix)
                    .await
                    .map(|_| ())
            },
        )
        .await;
    }
}
