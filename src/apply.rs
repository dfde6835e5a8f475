//! Carries out a plan's changes, each as soon as the changes it depends on are done: the
//! independent ones at once (IAM beside the network, the Elastic IPs from the start, eth1's
//! address before the instance exists). Each change reads the ids it needs from the shared
//! discovered state when it starts, and writes what it made back, so a change may depend on
//! what an earlier change of the same run created; a resumed run continues where a crashed
//! one stopped. Every created id is recorded in SSM (`id/<role>`) right after its create.

use crate::aws::preflight::Image;
use crate::aws::tags::Role;
use crate::aws::Aws;
use crate::error::{Error, Kind, Result};
use crate::plan::{resource_label, Change, Plan};
use crate::resources::discover::Discovered;
use crate::resources::{Apply, Made};
use crate::spec::StackSpec;
use crate::ui::Ui;
use backon::{ExponentialBuilder, Retryable};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::sync::Mutex;
use std::time::Duration;

/// Whether change `a` must wait for change `b` of the same plan: asked of the module that
/// makes `a`.
fn needs(a: &Change, b: &Change) -> bool {
    use crate::resources::*;
    use Change as C;
    match a {
        C::CreateVpc { .. } | C::CreateIgw | C::AttachIgw => network::needs(a, b),
        C::CreateSubnet { .. }
        | C::CreateRouteTable
        | C::AddDefaultRoute
        | C::AssociateRouteTable => subnet::needs(a, b),
        C::CreateSecurityGroup { .. } | C::Authorize { .. } | C::Revoke { .. } => {
            security_groups::needs(a, b)
        }
        C::CreateOutputBucket { .. } | C::SecureOutputBucket | C::BackupLifecycle { .. } => {
            bucket::needs(a, b)
        }
        C::CreateRole
        | C::PutScopePolicy
        | C::AttachPolicy { .. }
        | C::CreateInstanceProfile
        | C::AddRoleToProfile => iam::needs(a, b),
        C::CreatePosEni { .. } => eni::needs(a, b),
        C::Launch { .. } | C::SetTerminationProtection { .. } | C::RequireImdsv2 => {
            instance::needs(a, b)
        }
        C::AllocateEip { .. } | C::AssociateEip { .. } => eips::needs(a, b),
        C::CreateAlertTopic
        | C::SubscribeAlerts { .. }
        | C::UnsubscribeAlerts { .. }
        | C::PutAlarm { .. } => alarms::needs(a, b),
    }
}

/// How long a write naming a resource made moments ago is retried while EC2 answers that it
/// does not exist (AWS documents eventual consistency for EC2 writes too).
const FRESH_WRITE_RETRIES: usize = 10;

/// Errors that pass by themselves moments after a create or launch: a resource EC2 does not
/// know yet, an instance still pending.
fn settling(e: &Error) -> bool {
    matches!(e.kind(), Kind::NotFound | Kind::InvalidState)
}

fn settling_reason(e: &Error) -> String {
    match e {
        Error::Aws(f) if f.kind == Kind::InvalidState => {
            "the instance is not running yet (IncorrectInstanceState)".into()
        }
        Error::Aws(f) => format!(
            "{} (EC2 may not know a resource made moments ago yet)",
            f.code
        ),
        e => e.to_string(),
    }
}

/// One applied change, for the run's report.
pub struct Applied {
    pub resource: Role,
    pub change: Change,
    pub id: String,
}

/// What happened to a plan: the changes done (in the order they finished), and the first
/// error, after which no new change was started (the ones running were let finish).
pub struct Outcome {
    pub applied: Vec<Applied>,
    pub error: Option<Error>,
}

/// What a scheduled task finished: a change (by its index), or the record of an id.
enum Done {
    Change(usize, Result<(String, Option<Role>)>),
    Record(Result<()>),
}

type Task<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Done> + Send + 'a>>;

/// Runs every change of `plan` in dependency order, independent ones at once.
pub async fn run(
    aws: &Aws,
    ui: &Ui,
    spec: &StackSpec,
    image: Option<&Image>,
    d: &mut Discovered,
    plan: &Plan,
) -> Outcome {
    let items: Vec<(Role, Change)> = plan
        .steps
        .iter()
        .flat_map(|st| st.changes.iter().map(|c| (st.resource, c.clone())))
        .collect();
    let deps: Vec<Vec<usize>> = items
        .iter()
        .enumerate()
        .map(|(i, (_, a))| {
            (0..items.len())
                .filter(|j| *j != i && needs(a, &items[*j].1))
                .collect()
        })
        .collect();
    let state = Mutex::new(std::mem::take(d));
    let x = Apply {
        aws,
        spec,
        image,
        state: &state,
    };
    let (x, items, deps) = (&x, &items, &deps);
    let mut started = vec![false; items.len()];
    let mut done = vec![false; items.len()];
    let mut running = FuturesUnordered::new();
    let mut out = Outcome {
        applied: Vec::new(),
        error: None,
    };
    loop {
        if out.error.is_none() {
            for i in 0..items.len() {
                if !started[i] && deps[i].iter().all(|j| done[*j]) {
                    started[i] = true;
                    let (role, change) = &items[i];
                    running.push(Box::pin(async move {
                        let step = ui.step_plain(format!("{}: {change}", resource_label(*role)));
                        let r = (|| one(x, change))
                            .retry(
                                ExponentialBuilder::default()
                                    .with_min_delay(Duration::from_millis(250))
                                    .with_max_delay(Duration::from_secs(2))
                                    .with_max_times(FRESH_WRITE_RETRIES),
                            )
                            .when(settling)
                            .notify(|e, wait| {
                                aws.note(format!(
                                    "{change}: {}; retrying in {:.1}s",
                                    settling_reason(e),
                                    wait.as_secs_f64()
                                ))
                            })
                            .await;
                        match &r {
                            Ok((rid, _)) => step.done(rid),
                            Err(_) => step.failed(),
                        }
                        Done::Change(i, r)
                    }) as Task<'_>);
                }
            }
        }
        let Some(next) = running.next().await else {
            break;
        };
        match next {
            Done::Change(i, Ok((id, created))) => {
                done[i] = true;
                // Right after a create its id is recorded (beside the changes that can
                // start now): the next run finds it by id while AWS's tag-filtered lists
                // may still leave it out.
                if let Some(role) = created {
                    let rid = id.clone();
                    running.push(Box::pin(
                        async move { Done::Record(x.record(role, &rid).await) },
                    ));
                }
                out.applied.push(Applied {
                    resource: items[i].0,
                    change: items[i].1.clone(),
                    id,
                });
            }
            Done::Change(_, Err(e)) | Done::Record(Err(e)) => {
                if out.error.is_none() {
                    out.error = Some(e);
                }
            }
            Done::Record(Ok(())) => {}
        }
    }
    *d = take(&state);
    out
}

fn take(state: &Mutex<Discovered>) -> Discovered {
    std::mem::take(&mut *state.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Does one change, in the module of its resource.
async fn one(x: &Apply<'_>, change: &Change) -> Result<Made> {
    use crate::resources::*;
    use Change as C;
    match change {
        C::CreateVpc { .. } | C::CreateIgw | C::AttachIgw => network::apply(x, change).await,
        C::CreateSubnet { .. }
        | C::CreateRouteTable
        | C::AddDefaultRoute
        | C::AssociateRouteTable => subnet::apply(x, change).await,
        C::CreateSecurityGroup { .. } | C::Authorize { .. } | C::Revoke { .. } => {
            security_groups::apply(x, change).await
        }
        C::CreateOutputBucket { .. } | C::SecureOutputBucket | C::BackupLifecycle { .. } => {
            bucket::apply(x, change).await
        }
        C::CreateRole
        | C::PutScopePolicy
        | C::AttachPolicy { .. }
        | C::CreateInstanceProfile
        | C::AddRoleToProfile => iam::apply(x, change).await,
        C::CreatePosEni { .. } => eni::apply(x, change).await,
        C::Launch { .. } | C::SetTerminationProtection { .. } | C::RequireImdsv2 => {
            instance::apply(x, change).await
        }
        C::AllocateEip { .. } | C::AssociateEip { .. } => eips::apply(x, change).await,
        C::CreateAlertTopic
        | C::SubscribeAlerts { .. }
        | C::UnsubscribeAlerts { .. }
        // Boxed: its SDK futures are large, and a batch runs many provisions in one task.
        | C::PutAlarm { .. } => Box::pin(alarms::apply(x, change)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::needs;
    use crate::plan::Change;

    /// Every change depends only on changes that come earlier in a plan's order or have
    /// no dependencies themselves: the scheduler can never wait in a circle.
    #[test]
    fn dependencies_have_no_cycle() {
        use crate::aws::tags::Role;
        let all = [
            Change::CreateVpc { cidr: "x".into() },
            Change::CreateIgw,
            Change::AttachIgw,
            Change::CreateSubnet { cidr: "x".into() },
            Change::CreateRouteTable,
            Change::AddDefaultRoute,
            Change::AssociateRouteTable,
            Change::CreateSecurityGroup { role: Role::SgHost },
            Change::CreateSecurityGroup { role: Role::SgPos },
            Change::CreateOutputBucket { name: "b".into() },
            Change::SecureOutputBucket,
            Change::CreateRole,
            Change::PutScopePolicy,
            Change::AttachPolicy { arn: "a".into() },
            Change::CreateInstanceProfile,
            Change::AddRoleToProfile,
            Change::CreatePosEni { ip: "i".into() },
            Change::Launch {
                instance_type: "t".into(),
                disk_gb: 1,
            },
            Change::SetTerminationProtection { on: true },
            Change::AllocateEip {
                role: Role::EipHost,
            },
            Change::AllocateEip { role: Role::EipPos },
            Change::AssociateEip {
                role: Role::EipHost,
            },
            Change::AssociateEip { role: Role::EipPos },
            Change::RequireImdsv2,
            Change::CreateAlertTopic,
            Change::SubscribeAlerts { email: "e".into() },
            Change::UnsubscribeAlerts { email: "o".into() },
            Change::PutAlarm {
                role: Role::AlarmSystem,
                why: String::new(),
            },
            Change::PutAlarm {
                role: Role::AlarmInstance,
                why: String::new(),
            },
        ];
        // Depth-first: a change reachable from itself would be a cycle.
        fn reaches(all: &[Change], from: usize, to: usize, seen: &mut Vec<usize>) -> bool {
            (0..all.len()).any(|j| {
                needs(&all[from], &all[j])
                    && (j == to
                        || (!seen.contains(&j) && {
                            seen.push(j);
                            reaches(all, j, to, seen)
                        }))
            })
        }
        for i in 0..all.len() {
            assert!(
                !reaches(&all, i, i, &mut Vec::new()),
                "{} waits for itself",
                all[i]
            );
        }
        // The order the issue asks for: IAM overlaps the network, eth1's address needs no
        // instance, the launch waits for the role's policies.
        assert!(!needs(&all[11], &all[0]));
        assert!(!needs(&all[22], &all[17]));
        assert!(needs(&all[17], &all[13]));
    }
}
