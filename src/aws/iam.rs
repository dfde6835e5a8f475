//! IAM writes: the host's role and instance profile (names are global in the account).

use super::discover::{iam_name, IamRole, InstanceProfile, IAM_PATH};
use super::retry::Verdict;
use super::tags::{self, Role};
use super::Aws;
use crate::error::{Error, Result};
use crate::spec::StackId;

/// The managed policy that lets the SSM agent register and run commands.
pub const SSM_CORE_POLICY: &str = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";

const EC2_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

fn iam_tags(id: &StackId, role: Role) -> Vec<aws_sdk_iam::types::Tag> {
    tags::pairs(id, role)
        .into_iter()
        .filter_map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .ok()
        })
        .collect()
}

/// Name of the role's inline policy: its own S3 prefix and SSM path, nothing else.
pub const SCOPE_POLICY: &str = "poscloud-stack-scope";

/// What the host may do besides SSM core: write command output under its own prefix of the
/// output bucket, and read its own stack's parameters (VPN keys arrive that way).
pub fn scope_policy(id: &StackId, account: &str, region: &str, bucket: &str) -> serde_json::Value {
    let prefix = crate::aws::s3::stack_prefix(id);
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "SsmOutputOwnPrefix", "Effect": "Allow",
             "Action": ["s3:PutObject"],
             "Resource": format!("arn:aws:s3:::{bucket}/{prefix}*")},
            {"Sid": "SsmOutputBucketEncryption", "Effect": "Allow",
             "Action": ["s3:GetEncryptionConfiguration"],
             "Resource": format!("arn:aws:s3:::{bucket}")},
            {"Sid": "OwnParameters", "Effect": "Allow",
             "Action": ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"],
             "Resource": format!("arn:aws:ssm:{region}:{account}:parameter{}*", id.param_path())},
        ]
    })
}

impl Aws {
    pub async fn put_role_policy(
        &self,
        role: &str,
        name: &str,
        doc: &serde_json::Value,
    ) -> Result<()> {
        self.iam
            .put_role_policy()
            .role_name(role)
            .policy_name(name)
            .policy_document(doc.to_string())
            .send()
            .await
            .map_err(|e| self.err("PutRolePolicy", Some(role), e))?;
        self.wrote("PutRolePolicy", role);
        Ok(())
    }

    /// The inline policy document, parsed; None when the role has no such policy.
    pub async fn role_policy(&self, role: &str, name: &str) -> Result<Option<serde_json::Value>> {
        match self
            .iam
            .get_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
        {
            Ok(o) => {
                // IAM returns the document URL-encoded.
                let raw = o.policy_document();
                let text = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
                Ok(serde_json::from_str(&text).ok())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.err("GetRolePolicy", Some(role), e)),
        }
    }

    /// IAM names are unique in the account, so when the SDK retries a CreateRole whose
    /// answer was lost, the retry meets the role the first attempt made (EntityAlreadyExists).
    /// Provision only creates a role that discovery did not find a moment before, under the
    /// stack's lock: that role is ours.
    pub async fn create_role(&self, id: &StackId) -> Result<IamRole> {
        let name = iam_name(id);
        match self
            .iam
            .create_role()
            .role_name(&name)
            .path(IAM_PATH)
            .description(format!("poscloud host of {id}"))
            .assume_role_policy_document(EC2_TRUST)
            .set_tags(Some(iam_tags(id, Role::IamRole)))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_already_exists_exception()) =>
            {
                crate::ui::note(format!(
                    "IAM CreateRole: role {name} exists (made by the attempt whose answer was lost)"
                ));
            }
            Err(e) => return Err(self.err("CreateRole", Some(&name), e)),
        }
        self.wrote("CreateRole", &name);
        Ok(IamRole {
            name,
            policies: Vec::new(),
            scope_policy: None,
        })
    }

    /// The instance profile as IAM has it (None: there is none). Discovery reads it too.
    pub(crate) async fn instance_profile(&self, name: &str) -> Result<Option<InstanceProfile>> {
        match self
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
        {
            Ok(out) => Ok(out.instance_profile().map(|p| InstanceProfile {
                name: name.to_string(),
                arn: p.arn().to_string(),
                roles: p
                    .roles()
                    .iter()
                    .map(|r| r.role_name().to_string())
                    .collect(),
            })),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.err("GetInstanceProfile", Some(name), e)),
        }
    }

    /// Attaching a managed policy twice changes nothing, so a retry is harmless.
    pub async fn attach_role_policy(&self, role: &str, policy_arn: &str) -> Result<()> {
        self.iam
            .attach_role_policy()
            .role_name(role)
            .policy_arn(policy_arn)
            .send()
            .await
            .map_err(|e| self.err("AttachRolePolicy", Some(role), e))?;
        self.wrote("AttachRolePolicy", role);
        Ok(())
    }

    /// Like `create_role`: a retry that meets the profile its lost first attempt made
    /// (EntityAlreadyExists) takes that profile.
    pub async fn create_instance_profile(&self, id: &StackId) -> Result<InstanceProfile> {
        let name = iam_name(id);
        match self
            .iam
            .create_instance_profile()
            .instance_profile_name(&name)
            .path(IAM_PATH)
            .set_tags(Some(iam_tags(id, Role::InstanceProfile)))
            .send()
            .await
        {
            Ok(out) => {
                let arn = out
                    .instance_profile()
                    .map(|p| p.arn().to_string())
                    .ok_or_else(|| Error::failed("CreateInstanceProfile returned no profile"))?;
                self.wrote("CreateInstanceProfile", &name);
                Ok(InstanceProfile {
                    name,
                    arn,
                    roles: Vec::new(),
                })
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_already_exists_exception()) =>
            {
                crate::ui::note(format!(
                    "IAM CreateInstanceProfile: profile {name} exists (made by the attempt whose answer was lost)"
                ));
                let p = self.instance_profile(&name).await?.ok_or_else(|| {
                    Error::failed(format!(
                        "instance profile {name} exists and does not: IAM is settling; run the same command again"
                    ))
                })?;
                self.wrote("CreateInstanceProfile", &name);
                Ok(p)
            }
            Err(e) => Err(self.err("CreateInstanceProfile", Some(&name), e)),
        }
    }

    /// A profile holds one role: a retried add whose first answer was lost is refused
    /// (LimitExceeded); fine when the role in the profile is this one.
    pub async fn add_role_to_profile(&self, profile: &str, role: &str) -> Result<()> {
        let sent = self
            .iam
            .add_role_to_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await;
        if let Err(e) = sent {
            let maybe_done = e.as_service_error().is_some_and(|s| {
                s.is_limit_exceeded_exception() || s.is_entity_already_exists_exception()
            });
            let done = maybe_done
                && self
                    .instance_profile(profile)
                    .await?
                    .is_some_and(|p| p.roles.iter().any(|r| r == role));
            if !done {
                return Err(self.err("AddRoleToInstanceProfile", Some(profile), e));
            }
        }
        self.wrote("AddRoleToInstanceProfile", profile);
        Ok(())
    }

    /// Removes the profile (after taking its roles out of it). A role already out of it (a
    /// retried call whose first answer was lost) is fine, and the profile still goes.
    pub async fn delete_instance_profile(&self, p: &InstanceProfile) -> Result<()> {
        for role in &p.roles {
            let profile = p.name.as_str();
            // Done when the role is out of the profile. Checked before a retry rather than
            // retried blindly: the emulator answers a second removal with a bare HTTP 500
            // where AWS says NoSuchEntity.
            let find = move || async move {
                Ok(match self.instance_profile(profile).await? {
                    Some(p) if p.roles.iter().any(|r| r == role) => None,
                    _ => Some(false),
                })
            };
            let remove = move |v: Verdict| async move {
                match self
                    .iam
                    .remove_role_from_instance_profile()
                    .instance_profile_name(profile)
                    .role_name(role)
                    .customize()
                    .config_override(v.iam())
                    .send()
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_no_such_entity_exception()) =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(self.err("RemoveRoleFromInstanceProfile", Some(profile), e)),
                }
            };
            let removed = self
                .create_once(
                    "IAM RemoveRoleFromInstanceProfile",
                    "the role is out of the profile",
                    find,
                    remove,
                )
                .await?;
            if removed {
                self.wrote("RemoveRoleFromInstanceProfile", profile);
            }
        }
        self.iam
            .delete_instance_profile()
            .instance_profile_name(&p.name)
            .send()
            .await
            .map_err(|e| self.err("DeleteInstanceProfile", Some(&p.name), e))?;
        self.wrote("DeleteInstanceProfile", &p.name);
        Ok(())
    }

    /// Removes the role after detaching its managed policies and deleting inline ones. What
    /// is already detached or deleted (a retried call whose first answer was lost) is fine.
    pub async fn delete_role(&self, r: &IamRole) -> Result<()> {
        for arn in &r.policies {
            match self
                .iam
                .detach_role_policy()
                .role_name(&r.name)
                .policy_arn(arn)
                .send()
                .await
            {
                Ok(_) => self.wrote("DetachRolePolicy", &r.name),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_no_such_entity_exception()) => {}
                Err(e) => return Err(self.err("DetachRolePolicy", Some(&r.name), e)),
            }
        }
        let inline = self
            .iam
            .list_role_policies()
            .role_name(&r.name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("ListRolePolicies", Some(&r.name), e))?;
        for policy in inline {
            match self
                .iam
                .delete_role_policy()
                .role_name(&r.name)
                .policy_name(&policy)
                .send()
                .await
            {
                Ok(_) => self.wrote("DeleteRolePolicy", &r.name),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_no_such_entity_exception()) => {}
                Err(e) => return Err(self.err("DeleteRolePolicy", Some(&r.name), e)),
            }
        }
        self.iam
            .delete_role()
            .role_name(&r.name)
            .send()
            .await
            .map_err(|e| self.err("DeleteRole", Some(&r.name), e))?;
        self.wrote("DeleteRole", &r.name);
        Ok(())
    }
}
