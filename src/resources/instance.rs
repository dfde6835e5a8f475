//! The host: one instance with eth0 (made with it) and eth1 (the stack's ENI), its encrypted
//! gp3 root volume, IMDSv2 required, the instance profile, termination protection in prod:
//! what is found, planned, made and removed.

use super::change::{step, Change, Step};
use super::Teardown;
use super::{need, touched, Apply, Made};
use crate::aws::retry::Verdict;
use crate::aws::tags::{self, Role};
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::resources::discover::Discovered;
use crate::spec::{StackId, StackSpec};
use crate::time::{sdk_time, Time};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, BlockDeviceMapping, EbsBlockDevice, HttpTokensState,
    IamInstanceProfileSpecification, InstanceAttributeName, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceType,
    ResourceType, VolumeType,
};
use backon::{ConstantBuilder, Retryable};
use base64::Engine;
use futures_util::future::join_all;
use serde::Serialize;
use std::time::Duration;

/// How long an instance may take to reach `running` or `terminated`.
const INSTANCE_WAIT: Duration = Duration::from_secs(600);

/// A value EC2 names with a word of its own (an SDK enum), as a type of ours: matched
/// exhaustively, shown and serialized as EC2's word; `Other` keeps a word this build does not
/// know.
macro_rules! ec2_words {
    ($(#[$doc:meta])* $name:ident from $sdk:ident { $($v:ident = $word:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $($v,)*
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$v => $word,)*
                    $name::Other(s) => s.as_str(),
                }
            }

            pub fn from_sdk(v: &aws_sdk_ec2::types::$sdk) -> $name {
                match v {
                    $(aws_sdk_ec2::types::$sdk::$v => $name::$v,)*
                    other => $name::Other(other.as_str().to_string()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

ec2_words! {
    /// An instance's state (EC2's `InstanceStateName`).
    InstanceState from InstanceStateName {
        Pending = "pending",
        Running = "running",
        ShuttingDown = "shutting-down",
        Terminated = "terminated",
        Stopping = "stopping",
        Stopped = "stopped",
    }
}

ec2_words! {
    /// An EBS volume's type (EC2's `VolumeType`); stacks use gp3.
    VolumeKind from VolumeType {
        Gp2 = "gp2",
        Gp3 = "gp3",
        Io1 = "io1",
        Io2 = "io2",
        Sc1 = "sc1",
        St1 = "st1",
        Standard = "standard",
    }
}

ec2_words! {
    /// Whether instance metadata needs a session token (`required`: IMDSv2 only).
    HttpTokens from HttpTokensState {
        Optional = "optional",
        Required = "required",
    }
}

impl InstanceState {
    /// Up or on its way up: what a stack's instance should be.
    pub fn is_up(&self) -> bool {
        match self {
            InstanceState::Pending | InstanceState::Running => true,
            InstanceState::ShuttingDown
            | InstanceState::Terminated
            | InstanceState::Stopping
            | InstanceState::Stopped
            | InstanceState::Other(_) => false,
        }
    }

    /// Stopping or stopped (not running, not gone).
    pub fn is_stopped(&self) -> bool {
        matches!(self, InstanceState::Stopping | InstanceState::Stopped)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    pub id: String,
    pub size_gb: i32,
    pub volume_type: VolumeKind,
    pub encrypted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub id: String,
    /// (`Other("")` when EC2's description names none.)
    pub state: InstanceState,
    pub instance_type: String,
    pub image_id: String,
    pub launch_time: Option<Time>,
    /// (device index, ENI id, private IP)
    pub interfaces: Vec<(i32, String, String)>,
    pub profile_arn: Option<String>,
    pub http_tokens: Option<HttpTokens>,
    pub hop_limit: Option<i32>,
    pub root_volume: Option<Volume>,
    pub termination_protection: bool,
}

impl Instance {
    /// What EC2's description of an instance says by itself (its root volume and termination
    /// protection take calls of their own: none and false here).
    pub fn from_sdk(i: &aws_sdk_ec2::types::Instance) -> Instance {
        let mut interfaces: Vec<(i32, String, String)> = i
            .network_interfaces()
            .iter()
            .map(|n| {
                (
                    n.attachment().and_then(|a| a.device_index()).unwrap_or(-1),
                    n.network_interface_id().unwrap_or_default().to_string(),
                    n.private_ip_address().unwrap_or_default().to_string(),
                )
            })
            .collect();
        interfaces.sort();
        Instance {
            id: i.instance_id().unwrap_or_default().to_string(),
            state: i
                .state()
                .and_then(|s| s.name())
                .map(InstanceState::from_sdk)
                .unwrap_or(InstanceState::Other(String::new())),
            instance_type: i
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            image_id: i.image_id().unwrap_or_default().to_string(),
            launch_time: i.launch_time().and_then(sdk_time),
            interfaces,
            profile_arn: i
                .iam_instance_profile()
                .and_then(|p| p.arn().map(str::to_string)),
            http_tokens: i
                .metadata_options()
                .and_then(|m| m.http_tokens())
                .map(HttpTokens::from_sdk),
            hop_limit: i
                .metadata_options()
                .and_then(|m| m.http_put_response_hop_limit()),
            root_volume: None,
            termination_protection: false,
        }
    }

    pub fn eni(&self, device_index: i32) -> Option<&str> {
        self.interfaces
            .iter()
            .find(|(d, _, _)| *d == device_index)
            .map(|(_, id, _)| id.as_str())
    }
}

/// Everything RunInstances needs, resolved by the caller.
pub struct Launch<'a> {
    pub image_id: &'a str,
    pub root_device: &'a str,
    pub instance_type: &'a str,
    pub disk_gb: i32,
    pub subnet_id: &'a str,
    pub host_sg: &'a str,
    pub pos_eni: &'a str,
    pub profile_arn: &'a str,
    pub user_data_b64: String,
    pub termination_protection: bool,
    /// Same for every attempt at this stack generation, so a retried launch cannot duplicate.
    pub client_token: String,
}

impl Aws {
    /// Instances that are not (yet) terminated.
    pub(crate) async fn find_instances(
        &self,
        id: &StackId,
        ids: Option<&[String]>,
    ) -> Result<Vec<Instance>> {
        let mut filters = match ids {
            Some(_) => Vec::new(),
            None => tags::filters(id),
        };
        filters.push(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .set_values(Some(
                    [
                        InstanceState::Pending,
                        InstanceState::Running,
                        InstanceState::Stopping,
                        InstanceState::Stopped,
                        InstanceState::ShuttingDown,
                    ]
                    .map(|s| s.to_string())
                    .to_vec(),
                ))
                .build(),
        );
        let reservations = self
            .ec2
            .describe_instances()
            .set_instance_ids(ids.map(<[String]>::to_vec))
            .set_filters(Some(filters))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.err("DescribeInstances", None, e))?;
        let mut out = Vec::new();
        for i in reservations.iter().flat_map(|r| r.instances()) {
            let iid = i.instance_id().unwrap_or_default().to_string();
            let protection = async {
                Ok(self
                    .ec2
                    .describe_instance_attribute()
                    .instance_id(&iid)
                    .attribute(InstanceAttributeName::DisableApiTermination)
                    .send()
                    .await
                    .map_err(|e| self.err("DescribeInstanceAttribute", Some(&iid), e))?
                    .disable_api_termination()
                    .and_then(|v| v.value())
                    .unwrap_or(false))
            };
            let root_name = i.root_device_name();
            let root_volume_id = i
                .block_device_mappings()
                .iter()
                .find(|b| b.device_name() == root_name)
                .and_then(|b| b.ebs())
                .and_then(|e| e.volume_id())
                .map(str::to_string);
            let root_volume = async {
                match &root_volume_id {
                    Some(vid) => self.describe_volume(vid).await,
                    None => Ok(None),
                }
            };
            let (protection, root_volume) = tokio::try_join!(protection, root_volume)?;
            out.push(Instance {
                root_volume,
                termination_protection: protection,
                ..Instance::from_sdk(i)
            });
        }
        Ok(out)
    }

    async fn describe_volume(&self, volume_id: &str) -> Result<Option<Volume>> {
        let out = self
            .ec2
            .describe_volumes()
            .volume_ids(volume_id)
            .send()
            .await
            .map_err(|e| self.err("DescribeVolumes", Some(volume_id), e))?;
        Ok(out.volumes().first().map(|v| Volume {
            id: volume_id.to_string(),
            size_gb: v.size().unwrap_or(0),
            volume_type: v
                .volume_type()
                .map(VolumeKind::from_sdk)
                .unwrap_or(VolumeKind::Other(String::new())),
            encrypted: v.encrypted().unwrap_or(false),
        }))
    }

    /// Launches the host and returns it as RunInstances described it (`pending`). Retries while a new instance profile is not yet
    /// visible to EC2 (IAM is eventually consistent; this takes seconds after creation).
    pub async fn run_instance(&self, id: &StackId, l: &Launch<'_>) -> Result<Instance> {
        let req = self
            .ec2
            .run_instances()
            .image_id(l.image_id)
            .instance_type(InstanceType::from(l.instance_type))
            .min_count(1)
            .max_count(1)
            .client_token(&l.client_token)
            .user_data(&l.user_data_b64)
            .iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .arn(l.profile_arn)
                    .build(),
            )
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_tokens(HttpTokensState::Required)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(l.root_device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(l.disk_gb)
                            .volume_type(VolumeType::Gp3)
                            .encrypted(true)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(l.subnet_id)
                    .groups(l.host_sg)
                    .delete_on_termination(true)
                    .build(),
            )
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(1)
                    .network_interface_id(l.pos_eni)
                    .build(),
            )
            .disable_api_termination(l.termination_protection)
            .tag_specifications(tags::spec(id, Role::Host, ResourceType::Instance))
            .tag_specifications(tags::spec(id, Role::Volume, ResourceType::Volume))
            .tag_specifications(tags::spec(
                id,
                Role::EniHost,
                ResourceType::NetworkInterface,
            ));
        // The launch's ClientToken makes a repeated RunInstances return the first one's
        // instance on AWS; the tag lookup of `create_once` guards also where the token is
        // not honoured (the emulator) and costs one describe only after a failure.
        let find =
            move || async move { Ok(self.find_instances(id, None).await?.into_iter().next()) };
        let req = &req;
        let create = move |v: Verdict| async move {
            let out = (|| req.clone().customize().config_override(v.ec2()).send())
                // IAM takes seconds (AWS: "usually", no bound) to make a new profile
                // usable by EC2: asked every second, for up to two minutes.
                .retry(
                    ConstantBuilder::default()
                        .with_delay(Duration::from_secs(1))
                        .with_max_times(120),
                )
                .when(|e| {
                    e.as_service_error().is_some_and(|s| {
                        s.code() == Some("InvalidParameterValue")
                            && s.message().is_some_and(|m| {
                                m.to_ascii_lowercase().contains("instance profile")
                            })
                    })
                })
                .notify(|_, _| {
                    self.note(
                        "EC2 RunInstances: the new instance profile is not usable by EC2 yet (IAM propagation); retrying in 1s",
                    )
                })
                .await
                .map_err(|e| self.err("RunInstances", Some(l.subnet_id), e))?;
            let i = out
                .instances()
                .first()
                .ok_or_else(|| Error::failed("RunInstances returned no instance"))?;
            Ok(Instance {
                termination_protection: l.termination_protection,
                ..Instance::from_sdk(i)
            })
        };
        let instance = self
            .create_once(
                "EC2 RunInstances",
                "the stack's instance exists",
                find,
                create,
            )
            .await?;
        self.wrote("RunInstances", &instance.id);
        Ok(instance)
    }

    /// Waits until the instance is `running`: polled every second (the SDK's waiter first
    /// asks after 15 s and then less often, which is slower than a launch takes).
    pub async fn wait_running(&self, instance_id: &str) -> Result<()> {
        use InstanceState as S;
        self.wait_state(instance_id, S::Running, &[S::ShuttingDown, S::Terminated, S::Stopping])
            .await
            .map_err(|e| match e {
                e @ Error::Failed(_) => e.next(
                    "look at the instance in the EC2 console (state reason), then run the same command again",
                ),
                e => e,
            })
    }

    /// Polls an instance's state until it is `want`: a state in `fail` ends the wait with an
    /// error, as does INSTANCE_WAIT passing; NotFound (a new instance EC2 does not show
    /// yet) is waited on like a state on its way.
    async fn wait_state(
        &self,
        instance_id: &str,
        want: InstanceState,
        fail: &[InstanceState],
    ) -> Result<()> {
        enum Poll {
            NotYet(String),
            Stop(Error),
        }
        let poll = || async {
            let out = self
                .ec2
                .describe_instances()
                .instance_ids(instance_id)
                .send()
                .await;
            let state = match out {
                Ok(o) => o
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .find_map(|i| i.state().and_then(|s| s.name()))
                    .map(InstanceState::from_sdk),
                Err(e) if crate::aws::kind_of(&e) == crate::error::Kind::NotFound => None,
                Err(e) => {
                    return Err(Poll::Stop(self.err(
                        "DescribeInstances",
                        Some(instance_id),
                        e,
                    )))
                }
            };
            match state {
                Some(s) if s == want => Ok(()),
                Some(s) if fail.contains(&s) => Err(Poll::Stop(Error::failed(format!(
                    "instance {instance_id} in {} is {s}, not {want}",
                    self.region
                )))),
                Some(s) => Err(Poll::NotYet(s.to_string())),
                None => Err(Poll::NotYet("not visible yet".into())),
            }
        };
        let polls = INSTANCE_WAIT.as_secs() as usize;
        poll.retry(
            ConstantBuilder::default()
                .with_delay(Duration::from_secs(1))
                .with_max_times(polls),
        )
        .when(|p| matches!(p, Poll::NotYet(_)))
        .await
        .map_err(|p| match p {
            Poll::Stop(e) => e,
            Poll::NotYet(state) => Error::failed(format!(
                "instance {instance_id} in {} did not reach `{want}` within {}s (it is {state})",
                self.region,
                INSTANCE_WAIT.as_secs()
            )),
        })
    }

    pub async fn set_termination_protection(&self, instance_id: &str, on: bool) -> Result<()> {
        self.ec2
            .modify_instance_attribute()
            .instance_id(instance_id)
            .disable_api_termination(AttributeBooleanValue::builder().value(on).build())
            .send()
            .await
            .map_err(|e| self.err("ModifyInstanceAttribute", Some(instance_id), e))?;
        self.wrote("ModifyInstanceAttribute", instance_id);
        Ok(())
    }

    /// Metadata answers only with a session token (IMDSv2); the instance keeps running.
    pub async fn require_imdsv2(&self, instance_id: &str) -> Result<()> {
        self.ec2
            .modify_instance_metadata_options()
            .instance_id(instance_id)
            .http_tokens(HttpTokensState::Required)
            .http_endpoint(InstanceMetadataEndpointState::Enabled)
            .send()
            .await
            .map_err(|e| self.err("ModifyInstanceMetadataOptions", Some(instance_id), e))?;
        self.wrote("ModifyInstanceMetadataOptions", instance_id);
        Ok(())
    }

    pub async fn terminate(&self, instance_id: &str) -> Result<()> {
        self.ec2
            .terminate_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| self.err("TerminateInstances", Some(instance_id), e))?;
        self.wrote("TerminateInstances", instance_id);
        Ok(())
    }

    pub async fn wait_terminated(&self, instance_id: &str) -> Result<()> {
        self.wait_state(instance_id, InstanceState::Terminated, &[])
            .await
    }
}

/// The instance: launched when missing; its protection and IMDSv2 set as the stack says
/// (both in place); everything else that differs is drift (it needs a person: resize,
/// re-encrypt, start).
pub fn plan(spec: &StackSpec, d: &Discovered) -> Vec<Step> {
    let inst = d.instance();
    let mut changes = Vec::new();
    let mut drift = Vec::new();
    match inst {
        None => changes.push(Change::Launch {
            instance_type: spec.instance_type.clone(),
            disk_gb: spec.disk_gb,
        }),
        Some(i) => {
            if i.termination_protection != spec.termination_protection {
                changes.push(Change::SetTerminationProtection {
                    on: spec.termination_protection,
                });
            }
            if !i.state.is_up() {
                drift.push(format!("instance is {}", i.state));
            }
            if i.instance_type != spec.instance_type {
                drift.push(format!(
                    "instance type is {}, stack says {}",
                    i.instance_type, spec.instance_type
                ));
            }
            if i.http_tokens != Some(HttpTokens::Required) {
                changes.push(Change::RequireImdsv2);
            }
            match &i.root_volume {
                Some(v) => {
                    if !v.encrypted {
                        drift.push(format!("root volume {} is not encrypted", v.id));
                    }
                    if v.volume_type != VolumeKind::Gp3 {
                        drift.push(format!("root volume is {}, not gp3", v.volume_type));
                    }
                    if v.size_gb < spec.disk_gb {
                        drift.push(format!(
                            "root volume is {} GB, stack says {} GB",
                            v.size_gb, spec.disk_gb
                        ));
                    }
                }
                None => drift.push("root volume not found".into()),
            }
            if i.profile_arn.is_none() {
                drift.push("no instance profile attached".into());
            }
            if let (Some(e), Some(eth1)) = (d.eni_pos(), i.eni(1)) {
                if e.id != eth1 {
                    drift.push(format!("eth1 is {eth1}, not the stack's {}", e.id));
                }
            }
        }
    }
    vec![step(
        Role::Host,
        inst.map(|i| i.id.as_str()),
        changes,
        drift,
    )]
}

/// Whether `a` (one of this module's changes) waits for `b`. The host boots into a finished
/// network (user-data installs packages at first boot) with its role's policies in place
/// (the SSM agent registers with them), and eth1 has its address already: EC2 refuses to
/// map one to an interface of a pending instance.
pub fn needs(a: &Change, b: &Change) -> bool {
    use Change as C;
    match a {
        C::Launch { .. } => {
            matches!(
                b,
                C::CreateSubnet { .. }
                    | C::CreatePosEni { .. }
                    | C::AttachIgw
                    | C::AddDefaultRoute
                    | C::AssociateRouteTable
                    | C::CreateRole
                    | C::PutScopePolicy
                    | C::AttachPolicy { .. }
                    | C::CreateInstanceProfile
                    | C::AddRoleToProfile
                    | C::CreateSecurityGroup { role: Role::SgHost }
                    | C::Authorize {
                        role: Role::SgHost,
                        ..
                    }
                    | C::AssociateEip { role: Role::EipPos }
            )
        }
        C::SetTerminationProtection { .. } | C::RequireImdsv2 => matches!(b, C::Launch { .. }),
        _ => false,
    }
}

pub(crate) async fn apply(x: &Apply<'_>, change: &Change) -> Result<Made> {
    let (aws, spec, id) = (x.aws, x.spec, x.id());
    match change {
        Change::Launch {
            instance_type,
            disk_gb,
        } => {
            let image = x
                .image
                .ok_or_else(|| Error::failed("no AMI resolved for the launch"))?;
            let vpc = x.vpc()?;
            let (subnet, host_sg, pos_eni, profile) = x.read(|d| {
                (
                    d.subnet().map(|s| s.id.clone()),
                    d.sg(Role::SgHost).map(|g| g.id.clone()),
                    d.eni_pos().map(|e| e.id.clone()),
                    d.instance_profile.as_ref().map(|p| p.arn.clone()),
                )
            });
            let (subnet, host_sg) = (
                need("subnet", subnet)?,
                need("security group host", host_sg)?,
            );
            let (pos_eni, profile) = (need("eth1", pos_eni)?, need("instance profile", profile)?);
            let launch = Launch {
                image_id: &image.id,
                root_device: &image.root_device,
                instance_type,
                disk_gb: *disk_gb,
                subnet_id: &subnet,
                host_sg: &host_sg,
                pos_eni: &pos_eni,
                profile_arn: &profile,
                user_data_b64: base64::engine::general_purpose::STANDARD
                    .encode(crate::userdata::encode(spec, &aws.region)?),
                termination_protection: spec.termination_protection,
                // The VPC id makes the token unique per stack generation: a re-run after a
                // crash reuses it (AWS returns the same instance), a new stack never does.
                client_token: format!("{}-{vpc}", id.name()),
            };
            let instance = aws.run_instance(id, &launch).await?;
            let instance_id = instance.id.clone();
            // In the state at once: what RunInstances said is all the changes after it need
            // (eth0's id for its address). Recorded beside the wait: a run killed during the
            // wait must find this instance by its id.
            x.write(|d| {
                d.instances.retain(|i| i.id != instance_id);
                d.instances.push(instance);
            });
            tokio::try_join!(
                x.record(Role::Host, &instance_id),
                aws.wait_running(&instance_id)
            )?;
            x.write(|d| {
                if let Some(i) = d.instances.iter_mut().find(|i| i.id == instance_id) {
                    i.state = InstanceState::Running;
                }
            });
            touched(instance_id)
        }
        Change::SetTerminationProtection { on } => {
            let iid = need("instance", x.read(|d| d.instance().map(|i| i.id.clone())))?;
            aws.set_termination_protection(&iid, *on).await?;
            x.write(|d| {
                if let Some(i) = d.instances.iter_mut().find(|i| i.id == iid) {
                    i.termination_protection = *on;
                }
            });
            touched(iid)
        }
        Change::RequireImdsv2 => {
            let iid = need("instance", x.read(|d| d.instance().map(|i| i.id.clone())))?;
            aws.require_imdsv2(&iid).await?;
            x.write(|d| {
                if let Some(i) = d.instances.iter_mut().find(|i| i.id == iid) {
                    i.http_tokens = Some(HttpTokens::Required);
                }
            });
            touched(iid)
        }
        other => unreachable!("not an instance change: {other}"),
    }
}

/// Lifts termination protection, terminates, and waits until `terminated`.
pub(crate) async fn delete(t: &Teardown<'_>, d: &Discovered) {
    let aws = t.aws;
    join_all(d.instances.iter().map(|i| async move {
        if i.termination_protection {
            t.one(
                format!("lift termination protection of {}", i.id),
                aws.set_termination_protection(&i.id, false),
            )
            .await;
        }
        t.one(format!("terminate instance {}", i.id), async {
            aws.terminate(&i.id).await?;
            aws.wait_terminated(&i.id).await
        })
        .await;
    }))
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{InstanceStateName, VolumeType};

    #[test]
    fn ec2_words_are_read_into_types_and_shown_as_ec2_says_them() {
        let s = InstanceState::from_sdk(&InstanceStateName::ShuttingDown);
        assert_eq!(s, InstanceState::ShuttingDown);
        assert_eq!(s.to_string(), "shutting-down");
        assert_eq!(serde_json::to_value(&s).unwrap(), "shutting-down");
        // A word this build does not know is kept, not guessed.
        let new = InstanceState::from_sdk(&InstanceStateName::from("hibernating"));
        assert_eq!(new, InstanceState::Other("hibernating".into()));
        assert!(!new.is_up());
        assert!(InstanceState::Pending.is_up() && InstanceState::Running.is_up());
        assert!(InstanceState::Stopped.is_stopped() && !InstanceState::Running.is_stopped());
        assert_eq!(VolumeKind::from_sdk(&VolumeType::Gp3), VolumeKind::Gp3);
        assert_eq!(VolumeKind::from_sdk(&VolumeType::Gp2).as_str(), "gp2");
        assert_eq!(
            HttpTokens::from_sdk(&HttpTokensState::Required),
            HttpTokens::Required
        );
    }
}
