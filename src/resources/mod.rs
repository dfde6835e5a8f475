//! One module per kind of resource of a stack, each owning what is known of it: its type as
//! discovered, how it is found (by tags, by recorded id), what the plan says about it, how
//! each of its changes is made, and how it is removed. `discover`, `plan::build`,
//! `apply::run` and `teardown` only put them together and in order. Part of the AWS layer:
//! the SDK calls for a resource are in its module.

pub mod alarms;
pub mod bucket;
pub mod change;
pub mod discover;
pub mod eips;
pub mod eni;
pub mod iam;
pub mod instance;
pub mod network;
pub mod records;
pub mod security_groups;
pub mod subnet;

use crate::aws::preflight::Image;
use crate::aws::tags::Role;
use crate::aws::Aws;
use crate::error::{Error, Kind, Result};
use crate::spec::{StackId, StackSpec};
use crate::ui::Ui;
use backon::{ExponentialBuilder, Retryable};
use discover::{Discovered, Record};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

// The contexts each module's changes (`apply`) and deletes (`delete`) work in; `apply::run`
// and `teardown` drive them.

/// What a change made: the id of the resource it touched, and the role to record it under
/// when the change created it.
pub(crate) type Made = (String, Option<Role>);

pub(crate) fn created(rid: String, role: Role) -> Result<Made> {
    Ok((rid, Some(role)))
}

pub(crate) fn touched(rid: String) -> Result<Made> {
    Ok((rid, None))
}

pub(crate) fn need(what: &str, v: Option<String>) -> Result<String> {
    v.ok_or_else(|| Error::failed(format!("{what} is missing; run the same command again")))
}

/// What a change is made with: the clients, the stack, the image, and the shared state of
/// the stack (read when a change starts, written when it made something; never locked
/// across an AWS call).
pub(crate) struct Apply<'a> {
    pub aws: &'a Aws,
    pub spec: &'a StackSpec,
    pub image: Option<&'a Image>,
    pub(crate) state: &'a Mutex<Discovered>,
}

impl Apply<'_> {
    pub fn id(&self) -> &StackId {
        &self.spec.id
    }

    pub fn read<T>(&self, f: impl FnOnce(&Discovered) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn write<T>(&self, f: impl FnOnce(&mut Discovered) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The stack's VPC id (every network change needs it).
    pub fn vpc(&self) -> Result<String> {
        need("VPC", self.read(|d| d.vpc().map(|v| v.id.clone())))
    }

    /// Records a created resource's id in SSM, and in the state (so it is not written again).
    pub async fn record(&self, role: Role, rid: &str) -> Result<()> {
        self.aws.record(self.id(), role, rid).await?;
        self.write(|d| {
            d.records.retain(|r| r.role != role);
            d.records.push(Record {
                role,
                id: rid.to_string(),
                written: Some(std::time::SystemTime::now()),
            });
        });
        Ok(())
    }
}

/// Retries a delete while AWS still sees a dependency that is going away (an ENI detaching
/// after termination, an SG still referenced for a few seconds).
pub(crate) async fn settle<F, Fut>(f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    f.retry(
        // From half a second (an interface detaches a moment after its instance ended),
        // growing slowly to 5 s: about 80 s in all.
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_factor(1.5)
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(20),
    )
    .when(in_use)
    .await
}

/// "Still used by something that is going away" (see `aws::classify` for AWS's ways of
/// saying it).
pub fn in_use(e: &Error) -> bool {
    e.kind() == Kind::InUse
}

pub struct Teardown<'a> {
    pub aws: &'a Aws,
    pub ui: &'a Ui,
    pub id: &'a StackId,
    /// Leave the stack's backups in the bucket (the stack file's `backup.keep_after_teardown`).
    pub keep_backups: bool,
    pub(crate) failures: Mutex<Vec<String>>,
}

impl<'a> Teardown<'a> {
    pub fn new(aws: &'a Aws, ui: &'a Ui, id: &'a StackId) -> Self {
        Teardown {
            aws,
            ui,
            id,
            keep_backups: false,
            failures: Mutex::new(Vec::new()),
        }
    }

    /// One delete (or a short chain of them), shown as one step; false when it failed.
    pub(crate) async fn one(&self, label: String, fut: impl Future<Output = Result<()>>) -> bool {
        let step = self.ui.step_plain(label.clone());
        match fut.await {
            Ok(()) => step.done(""),
            // Deletes are idempotent: what is already gone counts as removed.
            Err(e) if e.kind() == Kind::NotFound => step.done("already gone"),
            Err(e) => {
                step.failed();
                self.ui.warn(format!("{label}: {e}"));
                self.failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{label}: {e}"));
                return false;
            }
        }
        true
    }
}
