//! IAM writes: the host's role and instance profile (names are global in the account).

use super::discover::{iam_name, IamRole, InstanceProfile, IAM_PATH};
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

impl Aws {
    pub async fn create_role(&self, id: &StackId) -> Result<IamRole> {
        let name = iam_name(id);
        self.iam
            .create_role()
            .role_name(&name)
            .path(IAM_PATH)
            .description(format!("poscloud host of {id}"))
            .assume_role_policy_document(EC2_TRUST)
            .set_tags(Some(iam_tags(id, Role::IamRole)))
            .send()
            .await
            .map_err(|e| self.err("CreateRole", Some(&name), e))?;
        self.wrote("CreateRole", &name);
        Ok(IamRole {
            name,
            policies: Vec::new(),
        })
    }

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

    pub async fn create_instance_profile(&self, id: &StackId) -> Result<InstanceProfile> {
        let name = iam_name(id);
        let out = self
            .iam
            .create_instance_profile()
            .instance_profile_name(&name)
            .path(IAM_PATH)
            .set_tags(Some(iam_tags(id, Role::InstanceProfile)))
            .send()
            .await
            .map_err(|e| self.err("CreateInstanceProfile", Some(&name), e))?;
        self.wrote("CreateInstanceProfile", &name);
        let arn = out
            .instance_profile()
            .map(|p| p.arn().to_string())
            .ok_or_else(|| Error::failed("CreateInstanceProfile returned no profile"))?;
        Ok(InstanceProfile {
            name,
            arn,
            roles: Vec::new(),
        })
    }

    pub async fn add_role_to_profile(&self, profile: &str, role: &str) -> Result<()> {
        self.iam
            .add_role_to_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .map_err(|e| self.err("AddRoleToInstanceProfile", Some(profile), e))?;
        self.wrote("AddRoleToInstanceProfile", profile);
        Ok(())
    }

    /// Removes the profile (after taking its roles out of it).
    pub async fn delete_instance_profile(&self, p: &InstanceProfile) -> Result<()> {
        for role in &p.roles {
            self.iam
                .remove_role_from_instance_profile()
                .instance_profile_name(&p.name)
                .role_name(role)
                .send()
                .await
                .map_err(|e| self.err("RemoveRoleFromInstanceProfile", Some(&p.name), e))?;
            self.wrote("RemoveRoleFromInstanceProfile", &p.name);
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

    /// Removes the role after detaching its managed policies and deleting inline ones.
    pub async fn delete_role(&self, r: &IamRole) -> Result<()> {
        for arn in &r.policies {
            self.iam
                .detach_role_policy()
                .role_name(&r.name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| self.err("DetachRolePolicy", Some(&r.name), e))?;
            self.wrote("DetachRolePolicy", &r.name);
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
            self.iam
                .delete_role_policy()
                .role_name(&r.name)
                .policy_name(&policy)
                .send()
                .await
                .map_err(|e| self.err("DeleteRolePolicy", Some(&r.name), e))?;
            self.wrote("DeleteRolePolicy", &r.name);
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
