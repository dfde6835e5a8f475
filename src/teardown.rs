//! Removes everything of a stack in dependency order. Each failure is recorded and the rest
//! goes on; then the stack is discovered again and anything left is reported.

use crate::aws::discover::Discovered;
use crate::aws::ssm::lock_name;
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::spec::StackId;
use crate::ui::Ui;
use backon::{ExponentialBuilder, Retryable};
use std::future::Future;
use std::time::Duration;

/// Retries a delete while AWS still sees a dependency that is going away (an ENI detaching
/// after termination, an SG still referenced for a few seconds).
async fn settle<F, Fut>(f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    f.retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(2))
            .with_max_delay(Duration::from_secs(15))
            .with_max_times(8),
    )
    .when(in_use)
    .await
}

/// AWS's ways of saying "still used by something that is going away": DependencyViolation,
/// `*.InUse`, and InvalidParameterValue "Network interface 'eni-…' is currently in use".
pub fn in_use(e: &Error) -> bool {
    matches!(e, Error::Aws(f) if f.code == "DependencyViolation"
        || f.code.ends_with(".InUse")
        || (f.code == "InvalidParameterValue" && f.message.contains("in use")))
}

pub struct Teardown<'a> {
    pub aws: &'a Aws,
    pub ui: &'a Ui,
    pub id: &'a StackId,
    failures: Vec<String>,
}

impl<'a> Teardown<'a> {
    pub fn new(aws: &'a Aws, ui: &'a Ui, id: &'a StackId) -> Self {
        Teardown {
            aws,
            ui,
            id,
            failures: Vec::new(),
        }
    }

    async fn one(&mut self, label: String, fut: impl Future<Output = Result<()>>) {
        let step = self.ui.step(label.clone());
        match fut.await {
            Ok(()) => step.done(""),
            // Deletes are idempotent: what is already gone counts as removed.
            Err(Error::Aws(f)) if f.code.ends_with(".NotFound") || f.code == "NoSuchEntity" => {
                step.done("already gone")
            }
            Err(e) => {
                step.failed();
                self.ui.warn(format!("{label}: {e}"));
                self.failures.push(format!("{label}: {e}"));
            }
        }
    }

    /// Deletes everything in `d`. The lock parameter is left for the caller to release.
    pub async fn run(mut self, d: &Discovered) -> Vec<String> {
        let aws = self.aws;
        for e in &d.eips {
            if let Some(assoc) = &e.association_id {
                self.one(
                    format!("disassociate Elastic IP {}", e.public_ip),
                    aws.disassociate_eip(assoc),
                )
                .await;
            }
            self.one(
                format!("release Elastic IP {} ({})", e.public_ip, e.allocation_id),
                aws.release_eip(&e.allocation_id),
            )
            .await;
        }
        for i in &d.instances {
            if i.termination_protection {
                self.one(
                    format!("lift termination protection of {}", i.id),
                    aws.set_termination_protection(&i.id, false),
                )
                .await;
            }
            let id = i.id.clone();
            self.one(format!("terminate instance {id}"), async {
                aws.terminate(&id).await?;
                aws.wait_terminated(&id).await
            })
            .await;
        }
        for e in &d.enis {
            self.one(
                format!("delete network interface {}", e.id),
                settle(|| aws.delete_eni(&e.id)),
            )
            .await;
        }
        for g in &d.security_groups {
            self.one(
                format!("delete security group {} {}", g.role.as_str(), g.id),
                settle(|| aws.delete_security_group(&g.id)),
            )
            .await;
        }
        for t in &d.route_tables {
            let t = t.clone();
            self.one(format!("delete route table {}", t.id), async {
                for (assoc, _) in &t.associations {
                    aws.disassociate_route_table(assoc).await?;
                }
                aws.delete_route_table(&t.id).await
            })
            .await;
        }
        for s in &d.subnets {
            self.one(
                format!("delete subnet {}", s.id),
                settle(|| aws.delete_subnet(&s.id)),
            )
            .await;
        }
        for g in &d.igws {
            let g = g.clone();
            self.one(format!("delete internet gateway {}", g.id), async {
                if let Some(vpc) = &g.attached_vpc {
                    aws.detach_igw(&g.id, vpc).await?;
                }
                aws.delete_igw(&g.id).await
            })
            .await;
        }
        for v in &d.vpcs {
            self.one(
                format!("delete VPC {}", v.id),
                settle(|| aws.delete_vpc(&v.id)),
            )
            .await;
        }
        if let Some(p) = &d.instance_profile {
            self.one(
                format!("delete instance profile {}", p.name),
                aws.delete_instance_profile(p),
            )
            .await;
        }
        if let Some(r) = &d.iam_role {
            self.one(format!("delete IAM role {}", r.name), aws.delete_role(r))
                .await;
        }
        for snap in &d.snapshots {
            self.one(
                format!("delete EBS snapshot {snap}"),
                aws.delete_snapshot(snap),
            )
            .await;
        }
        if !d.output.stack_objects.is_empty() {
            let prefix = crate::aws::s3::stack_prefix(self.id);
            self.one(
                format!("delete command output s3://{}/{prefix}", d.output.name),
                async { aws.delete_prefix(&d.output.name, &prefix).await.map(|_| ()) },
            )
            .await;
        }
        let lock = lock_name(self.id);
        for p in d.parameters.iter().filter(|p| **p != lock) {
            self.one(format!("delete SSM parameter {p}"), aws.delete_parameter(p))
                .await;
        }
        self.failures
    }
}
