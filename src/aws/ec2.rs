//! EC2 calls that belong to no resource of the plan: the account's regions, the console output, EBS snapshots of
//! the host (`pos snapshot`). The stack's resources are in resources/.

use super::tags::{self, Role};
use super::Aws;
use crate::error::{Error, Result};
use crate::spec::StackId;
use aws_sdk_ec2::types::ResourceType;

impl Aws {
    /// The regions enabled for this account (DescribeRegions answers them all at once).
    pub async fn regions(&self) -> Result<Vec<String>> {
        let out = self
            .ec2
            .describe_regions()
            .send()
            .await
            .map_err(|e| self.err("DescribeRegions", None, e))?;
        let mut names: Vec<String> = out
            .regions()
            .iter()
            .filter_map(|r| r.region_name().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The instance's console output (cloud-init prints the SSH host keys there).
    pub async fn console_output(&self, instance_id: &str) -> Result<String> {
        let out = self
            .ec2
            .get_console_output()
            .instance_id(instance_id)
            .latest(true)
            .send()
            .await
            .map_err(|e| self.err("GetConsoleOutput", Some(instance_id), e))?;
        let text = out.output().unwrap_or_default();
        let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text)
            .unwrap_or_default();
        Ok(String::from_utf8_lossy(&decoded).into_owned())
    }

    /// Snapshots the instance's root volume (the host and the POS data on it), tagged with
    /// the stack so that teardown finds it. Returns the snapshot ids; they complete later.
    pub async fn snapshot_volumes(
        &self,
        id: &StackId,
        instance_id: &str,
        label: &str,
    ) -> Result<Vec<String>> {
        let d = self.discover(id).await?;
        let volume = d
            .instances
            .iter()
            .find(|i| i.id == instance_id)
            .and_then(|i| i.root_volume.as_ref())
            .ok_or_else(|| {
                Error::failed(format!("{instance_id} has no root volume to snapshot"))
            })?;
        let out = self
            .ec2
            .create_snapshot()
            .volume_id(&volume.id)
            .description(format!("poscloud {id} {label}"))
            .tag_specifications(tags::spec(id, Role::Snapshot, ResourceType::Snapshot))
            .send()
            .await
            .map_err(|e| self.err("CreateSnapshot", Some(&volume.id), e))?;
        let snap = out.snapshot_id().unwrap_or_default().to_string();
        self.wrote("CreateSnapshot", &snap);
        Ok(vec![snap])
    }

    pub async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        self.ec2
            .delete_snapshot()
            .snapshot_id(snapshot_id)
            .send()
            .await
            .map_err(|e| self.err("DeleteSnapshot", Some(snapshot_id), e))?;
        self.wrote("DeleteSnapshot", snapshot_id);
        Ok(())
    }
}
