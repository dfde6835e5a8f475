//! The host's IAM role (the SSM core policy and a scope policy for its own S3 prefix and SSM
//! path) and its instance profile: what is found, planned, made and removed. IAM names are
//! global in the account: `poscloud-<shop>-<env>` under the path `/poscloud/`.

use super::change::{step, Change, Step};
use super::Teardown;
use super::{need, touched, Apply, Made};
use crate::aws::retry::Verdict;
use crate::aws::tags::{self, Role};
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::resources::discover::Discovered;
use crate::spec::StackId;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct IamRole {
    pub name: String,
    pub policies: Vec<String>,
    /// The inline scope policy (own S3 prefix, own SSM path), if attached.
    pub scope_policy: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceProfile {
    pub name: String,
    pub arn: String,
    pub roles: Vec<String>,
}

/// IAM names are global per account: one role and one instance profile per stack.
pub fn iam_name(id: &StackId) -> String {
    id.name()
}
pub const IAM_PATH: &str = "/poscloud/";

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

/// What the host may do besides SSM core: write command output and its backups (tagged with
/// their retention: PutObject with tags needs PutObjectTagging too) under its own prefix of
/// the output bucket, and read its own stack's parameters (VPN keys arrive that way).
pub fn scope_policy(id: &StackId, account: &str, region: &str, bucket: &str) -> serde_json::Value {
    let prefix = crate::aws::s3::stack_prefix(id);
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "SsmOutputOwnPrefix", "Effect": "Allow",
             "Action": ["s3:PutObject", "s3:PutObjectTagging"],
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
                self.note(format!(
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
                self.note(format!(
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

impl Aws {
    pub(crate) async fn find_iam(
        &self,
        id: &StackId,
    ) -> Result<(Option<IamRole>, Option<InstanceProfile>)> {
        let name = iam_name(id);
        let name = name.as_str();
        let role = async {
            match self.iam.get_role().role_name(name).send().await {
                Ok(_) => {
                    let attached = async {
                        self.iam
                            .list_attached_role_policies()
                            .role_name(name)
                            .into_paginator()
                            .items()
                            .send()
                            .try_collect()
                            .await
                            .map_err(|e| self.err("ListAttachedRolePolicies", Some(name), e))
                    };
                    let (attached, scope_policy) =
                        tokio::try_join!(attached, self.role_policy(name, SCOPE_POLICY))?;
                    Ok(Some(IamRole {
                        name: name.to_string(),
                        policies: attached
                            .into_iter()
                            .filter_map(|p| p.policy_arn().map(str::to_string))
                            .collect(),
                        scope_policy,
                    }))
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_no_such_entity_exception()) =>
                {
                    Ok(None)
                }
                Err(e) => Err(self.err("GetRole", Some(name), e)),
            }
        };
        tokio::try_join!(role, self.instance_profile(name))
    }
}

/// The role with its two policies, and the profile that hands it to the instance.
pub fn plan(spec: &crate::spec::StackSpec, d: &Discovered, region: &str) -> Vec<Step> {
    let role = d.iam_role.as_ref();
    let mut changes = Vec::new();
    if role.is_none() {
        changes.push(Change::CreateRole);
    }
    if !role.is_some_and(|r| r.policies.iter().any(|p| p == SSM_CORE_POLICY)) {
        changes.push(Change::AttachPolicy {
            arn: SSM_CORE_POLICY.into(),
        });
    }
    let scope = scope_policy(&spec.id, &d.account, region, &d.output.name);
    if role.and_then(|r| r.scope_policy.as_ref()) != Some(&scope) {
        changes.push(Change::PutScopePolicy);
    }
    let drift = role
        .map(|r| {
            r.policies
                .iter()
                .filter(|p| *p != SSM_CORE_POLICY)
                .map(|p| format!("extra policy attached: {p}"))
                .collect()
        })
        .unwrap_or_default();
    let mut steps = vec![step(
        Role::IamRole,
        role.map(|r| r.name.as_str()),
        changes,
        drift,
    )];

    let profile = d.instance_profile.as_ref();
    let mut changes = Vec::new();
    if profile.is_none() {
        changes.push(Change::CreateInstanceProfile);
    }
    if profile.is_none_or(|p| p.roles.is_empty()) {
        changes.push(Change::AddRoleToProfile);
    }
    steps.push(step(
        Role::InstanceProfile,
        profile.map(|p| p.name.as_str()),
        changes,
        vec![],
    ));
    steps
}

/// Whether `a` (one of this module's changes) waits for `b`.
pub fn needs(a: &Change, b: &Change) -> bool {
    match a {
        Change::PutScopePolicy | Change::AttachPolicy { .. } => matches!(b, Change::CreateRole),
        Change::AddRoleToProfile => {
            matches!(b, Change::CreateRole | Change::CreateInstanceProfile)
        }
        _ => false,
    }
}

pub(crate) async fn apply(x: &Apply<'_>, change: &Change) -> Result<Made> {
    let role_name = || {
        need(
            "IAM role",
            x.read(|d| d.iam_role.as_ref().map(|r| r.name.clone())),
        )
    };
    match change {
        Change::CreateRole => {
            let r = x.aws.create_role(x.id()).await?;
            let rid = r.name.clone();
            x.write(|d| d.iam_role = Some(r));
            touched(rid)
        }
        Change::PutScopePolicy => {
            let (account, bucket) = x.read(|d| (d.account.clone(), d.output.name.clone()));
            let doc = scope_policy(x.id(), &account, &x.aws.region, &bucket);
            let role = role_name()?;
            x.aws.put_role_policy(&role, SCOPE_POLICY, &doc).await?;
            x.write(|d| {
                if let Some(r) = d.iam_role.as_mut() {
                    r.scope_policy = Some(doc);
                }
            });
            touched(role)
        }
        Change::AttachPolicy { arn } => {
            let role = role_name()?;
            x.aws.attach_role_policy(&role, arn).await?;
            x.write(|d| {
                if let Some(r) = d.iam_role.as_mut() {
                    r.policies.push(arn.clone());
                }
            });
            touched(role)
        }
        Change::CreateInstanceProfile => {
            let p = x.aws.create_instance_profile(x.id()).await?;
            let rid = p.name.clone();
            x.write(|d| d.instance_profile = Some(p));
            touched(rid)
        }
        Change::AddRoleToProfile => {
            let role = role_name()?;
            let profile = need(
                "instance profile",
                x.read(|d| d.instance_profile.as_ref().map(|p| p.name.clone())),
            )?;
            x.aws.add_role_to_profile(&profile, &role).await?;
            x.write(|d| {
                if let Some(p) = d.instance_profile.as_mut() {
                    p.roles.push(role);
                }
            });
            touched(profile)
        }
        other => unreachable!("not an IAM change: {other}"),
    }
}

/// Deletes the instance profile, then the role (once the instance no longer uses them).
pub(crate) async fn delete(t: &Teardown<'_>, d: &Discovered) {
    if let Some(p) = &d.instance_profile {
        t.one(
            format!("delete instance profile {}", p.name),
            t.aws.delete_instance_profile(p),
        )
        .await;
    }
    if let Some(r) = &d.iam_role {
        t.one(format!("delete IAM role {}", r.name), t.aws.delete_role(r))
            .await;
    }
}
