//! Removes everything of a stack in dependency order. Each failure is recorded and the rest
//! goes on; then the stack is discovered again and anything left is reported.

use crate::aws::discover::{record_prefix, Discovered};
use crate::aws::ssm::lock_name;
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::spec::StackId;
use crate::ui::Ui;
use backon::{ExponentialBuilder, Retryable};
use futures_util::future::join_all;
use std::future::Future;
use std::sync::Mutex;
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
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(14),
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
    failures: Mutex<Vec<String>>,
}

impl<'a> Teardown<'a> {
    pub fn new(aws: &'a Aws, ui: &'a Ui, id: &'a StackId) -> Self {
        Teardown {
            aws,
            ui,
            id,
            failures: Mutex::new(Vec::new()),
        }
    }

    /// One delete (or a short chain of them), shown as one step; false when it failed.
    async fn one(&self, label: String, fut: impl Future<Output = Result<()>>) -> bool {
        let step = self.ui.step_plain(label.clone());
        match fut.await {
            Ok(()) => step.done(""),
            // Deletes are idempotent: what is already gone counts as removed.
            Err(Error::Aws(f)) if f.code.ends_with(".NotFound") || f.code == "NoSuchEntity" => {
                step.done("already gone")
            }
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

    /// Deletes everything in `d`, independent deletes at once: the addresses, the instance's
    /// termination, the route tables, snapshots and command output start together; the
    /// interfaces, groups and subnet follow the termination, the gateway follows the
    /// addresses, the VPC comes last, then the stack's parameters (its records among them,
    /// kept until here so that a run killed midway still finds every id). The lock
    /// parameter is left for the caller to release.
    pub async fn run(self, d: &Discovered) -> Vec<String> {
        let aws = self.aws;
        let me = &self;
        let addresses = async {
            join_all(d.eips.iter().map(|e| async move {
                if let Some(assoc) = &e.association_id {
                    me.one(
                        format!("disassociate Elastic IP {}", e.public_ip),
                        aws.disassociate_eip(assoc),
                    )
                    .await;
                }
                me.one(
                    format!("release Elastic IP {} ({})", e.public_ip, e.allocation_id),
                    settle(|| aws.release_eip(&e.allocation_id)),
                )
                .await;
            }))
            .await;
            // A gateway detaches only when no address of its VPC is mapped.
            join_all(d.igws.iter().map(|g| async move {
                me.one(format!("delete internet gateway {}", g.id), async {
                    if let Some(vpc) = &g.attached_vpc {
                        settle(|| aws.detach_igw(&g.id, vpc)).await?;
                    }
                    aws.delete_igw(&g.id).await
                })
                .await;
            }))
            .await;
        };
        let hosts = async {
            join_all(d.instances.iter().map(|i| async move {
                if i.termination_protection {
                    me.one(
                        format!("lift termination protection of {}", i.id),
                        aws.set_termination_protection(&i.id, false),
                    )
                    .await;
                }
                me.one(format!("terminate instance {}", i.id), async {
                    aws.terminate(&i.id).await?;
                    aws.wait_terminated(&i.id).await
                })
                .await;
            }))
            .await;
            let network = async {
                join_all(d.enis.iter().map(|e| {
                    me.one(
                        format!("delete network interface {}", e.id),
                        settle(|| aws.delete_eni(&e.id)),
                    )
                }))
                .await;
                let groups = join_all(d.security_groups.iter().map(|g| {
                    me.one(
                        format!("delete security group {} {}", g.role.as_str(), g.id),
                        settle(|| aws.delete_security_group(&g.id)),
                    )
                }));
                let subnets = join_all(d.subnets.iter().map(|s| {
                    me.one(
                        format!("delete subnet {}", s.id),
                        settle(|| aws.delete_subnet(&s.id)),
                    )
                }));
                tokio::join!(groups, subnets);
            };
            // The instance no longer uses its role once terminated.
            let iam = async {
                if let Some(p) = &d.instance_profile {
                    me.one(
                        format!("delete instance profile {}", p.name),
                        aws.delete_instance_profile(p),
                    )
                    .await;
                }
                if let Some(r) = &d.iam_role {
                    me.one(format!("delete IAM role {}", r.name), aws.delete_role(r))
                        .await;
                }
            };
            tokio::join!(network, iam);
        };
        let route_tables = join_all(d.route_tables.iter().map(|t| async move {
            me.one(format!("delete route table {}", t.id), async {
                for (assoc, _) in &t.associations {
                    aws.disassociate_route_table(assoc).await?;
                }
                aws.delete_route_table(&t.id).await
            })
            .await;
        }));
        let snapshots = join_all(d.snapshots.iter().map(|snap| {
            me.one(
                format!("delete EBS snapshot {snap}"),
                aws.delete_snapshot(snap),
            )
        }));
        let output = async {
            if !d.output.stack_objects.is_empty() {
                let prefix = crate::aws::s3::stack_prefix(me.id);
                me.one(
                    format!("delete command output s3://{}/{prefix}", d.output.name),
                    async { aws.delete_prefix(&d.output.name, &prefix).await.map(|_| ()) },
                )
                .await;
            }
        };
        tokio::join!(addresses, hosts, route_tables, snapshots, output);
        join_all(d.vpcs.iter().map(|v| {
            me.one(
                format!("delete VPC {}", v.id),
                settle(|| aws.delete_vpc(&v.id)),
            )
        }))
        .await;
        // The records go only once everything they name is gone.
        let lock = lock_name(self.id);
        let failed = !self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        let params = d
            .parameters
            .iter()
            .filter(|p| **p != lock)
            .filter(|p| !(failed && p.starts_with(&record_prefix(self.id))));
        join_all(
            params.map(|p| self.one(format!("delete SSM parameter {p}"), aws.delete_parameter(p))),
        )
        .await;
        self.failures
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
    }
}
