//! The shop+env lock: one run changes a stack at a time, across operators and machines.

use crate::aws::retry::LIST_LAG;
use crate::aws::ssm::{lock_name, LockHolder};
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::journal::{local_host, local_user, now};
use crate::spec::StackId;
use crate::ui::Ui;
use serde_json::json;

pub fn me(command: &str) -> LockHolder {
    LockHolder {
        user: local_user(),
        host: local_host(),
        pid: std::process::id(),
        command: command.to_string(),
        since: now().to_string(),
    }
}

/// A holder on this machine whose process is gone left a stale lock.
pub fn stale_note(h: &LockHolder) -> String {
    if h.host == local_host() && !std::path::Path::new(&format!("/proc/{}", h.pid)).exists() {
        "\n  that process no longer runs on this machine: the lock is stale".into()
    } else {
        String::new()
    }
}

/// Removes whatever lock the stack has, saying whose it was (`--break-lock`).
pub async fn break_lock(aws: &Aws, ui: &Ui, id: &StackId) -> Result<()> {
    if let Some(h) = aws.lock_holder(id).await? {
        ui.warn(format!("breaking the lock of {id} held by {h}"));
        aws.journal()
            .event("lock-broken", json!({"stack": id.name(), "holder": h}));
        aws.delete_parameter(&lock_name(id)).await?;
        // The run that held it may have created resources it could not record before it
        // died, and AWS's lists may leave them out for a moment: wait that moment out so
        // that the discovery after this finds them instead of making second ones.
        ui.info(format!(
            "waiting {}s so that AWS lists whatever that run created last",
            LIST_LAG.as_secs()
        ));
        tokio::time::sleep(LIST_LAG).await;
    }
    Ok(())
}

pub async fn acquire(
    aws: &Aws,
    ui: &Ui,
    id: &StackId,
    command: &str,
    break_lock: bool,
) -> Result<()> {
    if break_lock {
        self::break_lock(aws, ui, id).await?;
    }
    match aws.try_lock(id, &me(command)).await? {
        None => Ok(()),
        Some(h) => Err(Error::Locked {
            stack: id.to_string(),
            stale: stale_note(&h),
            holder: h.to_string(),
        }),
    }
}

/// Releases the lock if this process still holds it (it may have been broken by someone).
pub async fn release(aws: &Aws, id: &StackId) -> Result<()> {
    match aws.lock_holder(id).await? {
        Some(h) if h.pid == std::process::id() && h.host == local_host() => {
            aws.delete_parameter(&lock_name(id)).await
        }
        _ => Ok(()),
    }
}

/// The lock as a discovery read it (with the stack's parameters), described, if held.
pub fn holder_in(
    d: &crate::resources::discover::Discovered,
    id: &StackId,
) -> Result<Option<String>> {
    let name = lock_name(id);
    let Some(value) = d.value(&name) else {
        return Ok(None);
    };
    let h = LockHolder::parse(&name, value)?;
    Ok(Some(format!("{h}{}", stale_note(&h))))
}
