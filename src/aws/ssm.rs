//! SSM parameters of a stack, and the shop+env lock built on PutParameter without overwrite.

use super::tags::{self, Role};
use super::Aws;
use crate::error::{Error, Result};
use crate::spec::StackId;
use aws_sdk_ssm::types::ParameterType;
use serde::{Deserialize, Serialize};

/// Who holds a lock, stored as the lock parameter's JSON value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockHolder {
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub since: String,
}

impl LockHolder {
    /// The same run of poscloud: same machine, process and start of the lock attempt.
    pub fn is_same_run(&self, other: &LockHolder) -> bool {
        self.host == other.host
            && self.pid == other.pid
            && self.since == other.since
            && self.command == other.command
    }
}

impl LockHolder {
    /// The holder stored in the lock parameter `name`.
    pub fn parse(name: &str, value: &str) -> Result<LockHolder> {
        serde_json::from_str(value)
            .map_err(|e| Error::failed(format!("lock {name} holds unreadable value: {e}")))
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} (pid {}, `{}`, since {})",
            self.user, self.host, self.pid, self.command, self.since
        )
    }
}

pub fn lock_name(id: &StackId) -> String {
    format!("{}lock", id.param_path())
}

impl Aws {
    /// Takes the lock: a create-if-absent, so of two racing runs exactly one wins.
    /// Returns the current holder when someone else has it.
    pub async fn try_lock(&self, id: &StackId, me: &LockHolder) -> Result<Option<LockHolder>> {
        let name = lock_name(id);
        let value = serde_json::to_string(me).expect("lock holder serialises");
        let ssm_tags = tags::pairs(id, Role::Parameter)
            .into_iter()
            .filter_map(|(k, v)| {
                aws_sdk_ssm::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .ok()
            })
            .collect();
        match self
            .ssm
            .put_parameter()
            .name(&name)
            .value(value)
            .r#type(ParameterType::String)
            .description("poscloud lock: the run that is changing this stack")
            .set_tags(Some(ssm_tags))
            .send()
            .await
        {
            Ok(_) => {
                self.wrote("PutParameter", &name);
                Ok(None)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_parameter_already_exists()) =>
            {
                let holder = self.lock_holder(id).await?;
                // The SDK retried a PutParameter whose first answer was lost: the lock it
                // meets is the one that attempt took, for this very run.
                if holder.as_ref().is_some_and(|h| h.is_same_run(me)) {
                    self.wrote("PutParameter", &name);
                    return Ok(None);
                }
                Ok(Some(holder.unwrap_or(LockHolder {
                    user: "?".into(),
                    host: "?".into(),
                    pid: 0,
                    command: "?".into(),
                    since: "just now".into(),
                })))
            }
            Err(e) => Err(self.err("PutParameter", Some(&name), e)),
        }
    }

    pub async fn lock_holder(&self, id: &StackId) -> Result<Option<LockHolder>> {
        let name = lock_name(id);
        self.get_param(&name)
            .await?
            .map(|value| LockHolder::parse(&name, &value))
            .transpose()
    }

    /// Deletes a parameter; one that is already gone is fine.
    pub async fn delete_parameter(&self, name: &str) -> Result<()> {
        match self.ssm.delete_parameter().name(name).send().await {
            Ok(_) => {
                self.wrote("DeleteParameter", name);
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_parameter_not_found()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.err("DeleteParameter", Some(name), e)),
        }
    }
}

/// Phase state and the pinned host key live next to the lock, under the stack's path.
pub fn phase_name(id: &StackId, phase: &str) -> String {
    format!("{}phase/{phase}", id.param_path())
}

pub fn host_key_name(id: &StackId) -> String {
    format!("{}host-key", id.param_path())
}

impl Aws {
    /// Reads a plain String parameter; None when it does not exist.
    pub async fn get_param(&self, name: &str) -> Result<Option<String>> {
        self.read_param(name, false).await
    }

    async fn read_param(&self, name: &str, decrypt: bool) -> Result<Option<String>> {
        match self
            .ssm
            .get_parameter()
            .name(name)
            .with_decryption(decrypt)
            .send()
            .await
        {
            Ok(out) => Ok(out.parameter().and_then(|p| p.value()).map(str::to_string)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_parameter_not_found()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.err("GetParameter", Some(name), e)),
        }
    }

    /// Writes a plain String parameter (not for secrets), replacing any value.
    pub async fn put_param(&self, name: &str, value: &str) -> Result<()> {
        self.write_param(name, value, ParameterType::String).await
    }

    /// Writes a SecureString (encrypted with the account's aws/ssm key), replacing any value.
    /// The value is never logged: the journal records the name only.
    pub async fn put_secret(&self, name: &str, value: &str) -> Result<()> {
        self.write_param(name, value, ParameterType::SecureString)
            .await
    }

    async fn write_param(&self, name: &str, value: &str, kind: ParameterType) -> Result<()> {
        self.ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(kind)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| self.err("PutParameter", Some(name), e))?;
        self.wrote("PutParameter", name);
        Ok(())
    }

    /// Reads a SecureString, decrypted; None when it does not exist.
    pub async fn get_secret(&self, name: &str) -> Result<Option<String>> {
        self.read_param(name, true).await
    }

    /// Every plain parameter directly under `path` (name, value).
    pub async fn params_under(&self, path: &str) -> Result<Vec<(String, String)>> {
        let pages = self
            .ssm
            .get_parameters_by_path()
            .path(path)
            .recursive(false)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("GetParametersByPath", Some(path), e))?;
        Ok(pages
            .iter()
            .flat_map(|p| p.parameters())
            .filter_map(|p| Some((p.name()?.to_string(), p.value()?.to_string())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::LockHolder;

    #[test]
    fn a_lock_is_this_runs_only_with_the_same_host_pid_start_and_command() {
        let me = LockHolder {
            user: "ann".into(),
            host: "laptop".into(),
            pid: 42,
            command: "provision 12345678 qa".into(),
            since: "2026-11-23T18:00:00Z".into(),
        };
        assert!(me.is_same_run(&me.clone()));
        for other in [
            LockHolder {
                pid: 43,
                ..me.clone()
            },
            LockHolder {
                host: "desk".into(),
                ..me.clone()
            },
            LockHolder {
                since: "2026-11-23T18:00:01Z".into(),
                ..me.clone()
            },
            LockHolder {
                command: "teardown 12345678 qa".into(),
                ..me.clone()
            },
        ] {
            assert!(!me.is_same_run(&other), "{other}");
        }
    }
}
