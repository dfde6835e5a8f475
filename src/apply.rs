//! Carries out a plan's changes, each as soon as the changes it depends on are done: the
//! independent ones at once (IAM beside the network, the Elastic IPs from the start, eth1's
//! address before the instance exists). Each change reads the ids it needs from the shared
//! discovered state when it starts, and writes what it made back, so a change may depend on
//! what an earlier change of the same run created; a resumed run continues where a crashed
//! one stopped. Every created id is recorded in SSM (`id/<role>`) right after its create.

use crate::aws::discover::{Discovered, Record};
use crate::aws::ec2::Launch;
use crate::aws::preflight::Image;
use crate::aws::tags::Role;
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::plan::{resource_label, Change, Plan};
use crate::spec::StackSpec;
use crate::ui::Ui;
use backon::{ExponentialBuilder, Retryable};
use base64::Engine;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::sync::Mutex;
use std::time::Duration;

fn need(what: &str, v: Option<String>) -> Result<String> {
    v.ok_or_else(|| Error::failed(format!("{what} is missing; run the same command again")))
}

/// Whether change `a` must wait for change `b` of the same plan.
fn needs(a: &Change, b: &Change) -> bool {
    use Change as C;
    let sg = |r: &Role| matches!(b, C::CreateSecurityGroup { role } if role == r);
    match a {
        C::AttachIgw => matches!(b, C::CreateIgw | C::CreateVpc { .. }),
        C::CreateSubnet { .. } | C::CreateRouteTable | C::CreateSecurityGroup { .. } => {
            matches!(b, C::CreateVpc { .. })
        }
        // A route to a gateway needs the gateway attached to the route table's VPC.
        C::AddDefaultRoute => matches!(b, C::CreateRouteTable | C::CreateIgw | C::AttachIgw),
        C::AssociateRouteTable => matches!(b, C::CreateRouteTable | C::CreateSubnet { .. }),
        C::Authorize { role, .. } | C::Revoke { role, .. } => sg(role),
        C::SecureOutputBucket => matches!(b, C::CreateOutputBucket { .. }),
        C::PutScopePolicy | C::AttachPolicy { .. } => matches!(b, C::CreateRole),
        C::AddRoleToProfile => matches!(b, C::CreateRole | C::CreateInstanceProfile),
        C::CreatePosEni { .. } => matches!(b, C::CreateSubnet { .. }) || sg(&Role::SgPos),
        // The host boots into a finished network (user-data installs packages at first
        // boot) with its role's policies in place (the SSM agent registers with them).
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
            ) || sg(&Role::SgHost)
                || matches!(b, C::Authorize { role: Role::SgHost, .. })
                // EC2 refuses to map an address to an interface of a pending instance:
                // eth1 gets its address before the instance exists.
                || matches!(b, C::AssociateEip { role: Role::EipPos })
        }
        C::SetTerminationProtection { .. } => matches!(b, C::Launch { .. }),
        // An address can be mapped only in a VPC with an internet gateway attached.
        C::AssociateEip {
            role: Role::EipHost,
        } => {
            matches!(b, C::Launch { .. } | C::AttachIgw)
                || matches!(
                    b,
                    C::AllocateEip {
                        role: Role::EipHost
                    }
                )
        }
        C::AssociateEip { .. } => {
            matches!(b, C::CreatePosEni { .. } | C::AttachIgw)
                || matches!(b, C::AllocateEip { role: Role::EipPos })
        }
        C::CreateVpc { .. }
        | C::CreateIgw
        | C::CreateOutputBucket { .. }
        | C::CreateRole
        | C::CreateInstanceProfile
        | C::AllocateEip { .. } => false,
    }
}

/// How long a write naming a resource made moments ago is retried while EC2 answers that it
/// does not exist (AWS documents eventual consistency for EC2 writes too).
const FRESH_WRITE_RETRIES: usize = 10;

/// Errors that pass by themselves moments after a create or launch: a resource EC2 does not
/// know yet, an instance still pending.
fn settling(e: &Error) -> bool {
    matches!(e, Error::Aws(f) if f.code.ends_with(".NotFound") || f.code == "IncorrectInstanceState")
}

fn settling_reason(e: &Error) -> String {
    match e {
        Error::Aws(f) if f.code == "IncorrectInstanceState" => {
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
    let (state, items, deps) = (&state, &items, &deps);
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
                        let r = (|| one(aws, spec, image, state, change))
                            .retry(
                                ExponentialBuilder::default()
                                    .with_min_delay(Duration::from_millis(250))
                                    .with_max_delay(Duration::from_secs(2))
                                    .with_max_times(FRESH_WRITE_RETRIES),
                            )
                            .when(settling)
                            .notify(|e, wait| {
                                crate::ui::note(format!(
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
                    running.push(Box::pin(async move {
                        Done::Record(record(aws, state, role, &rid).await)
                    }));
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
    *d = take(state);
    out
}

fn take(state: &Mutex<Discovered>) -> Discovered {
    std::mem::take(&mut *state.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Records a created resource's id in SSM, and in the state (so it is not written again).
async fn record(aws: &Aws, state: &Mutex<Discovered>, role: Role, rid: &str) -> Result<()> {
    let id = read(state, |d| d.id.clone()).expect("discovered state names its stack");
    aws.record(&id, role, rid).await?;
    write(state, |d| {
        d.records.retain(|r| r.role != role);
        d.records.push(Record {
            role,
            id: rid.to_string(),
            written: Some(std::time::SystemTime::now()),
        });
    });
    Ok(())
}

/// Reads from the shared state (the lock is never held across an AWS call).
fn read<T>(state: &Mutex<Discovered>, f: impl FnOnce(&Discovered) -> T) -> T {
    f(&state.lock().unwrap_or_else(|e| e.into_inner()))
}

fn write<T>(state: &Mutex<Discovered>, f: impl FnOnce(&mut Discovered) -> T) -> T {
    f(&mut state.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Does one change; returns the id of the resource it touched, and the role to record it
/// under when the change created it.
async fn one(
    aws: &Aws,
    spec: &StackSpec,
    image: Option<&Image>,
    state: &Mutex<Discovered>,
    change: &Change,
) -> Result<(String, Option<Role>)> {
    let id = &spec.id;
    let vpc = || need("VPC", read(state, |d| d.vpc().map(|v| v.id.clone())));
    let created = |rid: String, role: Role| Ok((rid, Some(role)));
    let touched = |rid: String| Ok((rid, None));
    match change {
        Change::CreateVpc { cidr } => {
            let v = aws.create_vpc(id, cidr).await?;
            let rid = v.id.clone();
            write(state, |d| d.vpcs.push(v));
            created(rid, Role::Vpc)
        }
        Change::CreateIgw => {
            let g = aws.create_igw(id).await?;
            let rid = g.id.clone();
            write(state, |d| d.igws.push(g));
            created(rid, Role::Igw)
        }
        Change::AttachIgw => {
            let vpc = vpc()?;
            let igw = need(
                "internet gateway",
                read(state, |d| d.igw().map(|g| g.id.clone())),
            )?;
            aws.attach_igw(&igw, &vpc).await?;
            write(state, |d| {
                if let Some(g) = d.igws.iter_mut().find(|g| g.id == igw) {
                    g.attached_vpc = Some(vpc);
                }
            });
            touched(igw)
        }
        Change::CreateSubnet { cidr } => {
            let s = aws.create_subnet(id, &vpc()?, cidr).await?;
            let rid = s.id.clone();
            write(state, |d| d.subnets.push(s));
            created(rid, Role::Subnet)
        }
        Change::CreateRouteTable => {
            let t = aws.create_route_table(id, &vpc()?).await?;
            let rid = t.id.clone();
            write(state, |d| d.route_tables.push(t));
            created(rid, Role::RouteTable)
        }
        Change::AddDefaultRoute => {
            let igw = need(
                "internet gateway",
                read(state, |d| d.igw().map(|g| g.id.clone())),
            )?;
            let rtb = need(
                "route table",
                read(state, |d| d.route_table().map(|t| t.id.clone())),
            )?;
            aws.create_default_route(&rtb, &igw).await?;
            write(state, |d| {
                if let Some(t) = d.route_tables.iter_mut().find(|t| t.id == rtb) {
                    t.default_gateway = Some(igw);
                }
            });
            touched(rtb)
        }
        Change::AssociateRouteTable => {
            let subnet = need("subnet", read(state, |d| d.subnet().map(|s| s.id.clone())))?;
            let rtb = need(
                "route table",
                read(state, |d| d.route_table().map(|t| t.id.clone())),
            )?;
            let assoc = aws.associate_route_table(&rtb, &subnet).await?;
            write(state, |d| {
                if let Some(t) = d.route_tables.iter_mut().find(|t| t.id == rtb) {
                    t.associations.push((assoc, subnet));
                }
            });
            touched(rtb)
        }
        Change::CreateSecurityGroup { role } => {
            let description = match role {
                Role::SgHost => "poscloud Docker host (eth0): SSH from admin CIDRs only",
                _ => "poscloud POS container (eth1): no inbound",
            };
            let g = aws
                .create_security_group(id, *role, &vpc()?, description)
                .await?;
            let rid = g.id.clone();
            write(state, |d| d.security_groups.push(g));
            created(rid, *role)
        }
        Change::Authorize {
            role,
            ingress,
            rules,
        }
        | Change::Revoke {
            role,
            ingress,
            rules,
        } => {
            let sg = need(
                &format!("security group {}", role.as_str()),
                read(state, |d| d.sg(*role).map(|g| g.id.clone())),
            )?;
            let add = matches!(change, Change::Authorize { .. });
            match (add, *ingress) {
                (true, true) => aws.authorize_ingress(&sg, rules).await?,
                (true, false) => aws.authorize_egress(&sg, rules).await?,
                (false, true) => aws.revoke_ingress(&sg, rules).await?,
                (false, false) => aws.revoke_egress(&sg, rules).await?,
            }
            write(state, |d| {
                if let Some(g) = d.security_groups.iter_mut().find(|g| g.id == sg) {
                    let list = if *ingress {
                        &mut g.ingress
                    } else {
                        &mut g.egress
                    };
                    if add {
                        list.extend(rules.iter().cloned());
                    } else {
                        list.retain(|r| !rules.contains(r));
                    }
                }
            });
            touched(sg)
        }
        Change::CreateOutputBucket { name } => {
            aws.create_output_bucket(name).await?;
            write(state, |d| d.output.exists = true);
            touched(name.clone())
        }
        Change::SecureOutputBucket => {
            let name = read(state, |d| d.output.name.clone());
            aws.secure_bucket(&name).await?;
            write(state, |d| {
                d.output.encrypted = true;
                d.output.public_access_blocked = true;
            });
            touched(name)
        }
        Change::PutScopePolicy => {
            let (account, bucket) = read(state, |d| (d.account.clone(), d.output.name.clone()));
            let doc = crate::aws::iam::scope_policy(id, &account, &aws.region, &bucket);
            let role = need(
                "IAM role",
                read(state, |d| d.iam_role.as_ref().map(|r| r.name.clone())),
            )?;
            aws.put_role_policy(&role, crate::aws::iam::SCOPE_POLICY, &doc)
                .await?;
            write(state, |d| {
                if let Some(r) = d.iam_role.as_mut() {
                    r.scope_policy = Some(doc);
                }
            });
            touched(role)
        }
        Change::CreateRole => {
            let r = aws.create_role(id).await?;
            let rid = r.name.clone();
            write(state, |d| d.iam_role = Some(r));
            touched(rid)
        }
        Change::AttachPolicy { arn } => {
            let role = need(
                "IAM role",
                read(state, |d| d.iam_role.as_ref().map(|r| r.name.clone())),
            )?;
            aws.attach_role_policy(&role, arn).await?;
            write(state, |d| {
                if let Some(r) = d.iam_role.as_mut() {
                    r.policies.push(arn.clone());
                }
            });
            touched(role)
        }
        Change::CreateInstanceProfile => {
            let p = aws.create_instance_profile(id).await?;
            let rid = p.name.clone();
            write(state, |d| d.instance_profile = Some(p));
            touched(rid)
        }
        Change::AddRoleToProfile => {
            let role = need(
                "IAM role",
                read(state, |d| d.iam_role.as_ref().map(|r| r.name.clone())),
            )?;
            let profile = need(
                "instance profile",
                read(state, |d| {
                    d.instance_profile.as_ref().map(|p| p.name.clone())
                }),
            )?;
            aws.add_role_to_profile(&profile, &role).await?;
            write(state, |d| {
                if let Some(p) = d.instance_profile.as_mut() {
                    p.roles.push(role);
                }
            });
            touched(profile)
        }
        Change::CreatePosEni { ip } => {
            let subnet = need("subnet", read(state, |d| d.subnet().map(|s| s.id.clone())))?;
            let sg = need(
                "security group pos",
                read(state, |d| d.sg(Role::SgPos).map(|g| g.id.clone())),
            )?;
            let e = aws.create_pos_eni(id, &subnet, ip, &sg).await?;
            let rid = e.id.clone();
            write(state, |d| d.enis.push(e));
            created(rid, Role::EniPos)
        }
        Change::Launch {
            instance_type,
            disk_gb,
        } => {
            let image = image.ok_or_else(|| Error::failed("no AMI resolved for the launch"))?;
            let vpc = vpc()?;
            let (subnet, host_sg, pos_eni, profile) = read(state, |d| {
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
            write(state, |d| {
                d.instances.retain(|i| i.id != instance_id);
                d.instances.push(instance);
            });
            tokio::try_join!(
                record(aws, state, Role::Host, &instance_id),
                aws.wait_running(&instance_id)
            )?;
            write(state, |d| {
                if let Some(i) = d.instances.iter_mut().find(|i| i.id == instance_id) {
                    i.state = "running".into();
                }
            });
            touched(instance_id)
        }
        Change::SetTerminationProtection { on } => {
            let iid = need(
                "instance",
                read(state, |d| d.instance().map(|i| i.id.clone())),
            )?;
            aws.set_termination_protection(&iid, *on).await?;
            write(state, |d| {
                if let Some(i) = d.instances.iter_mut().find(|i| i.id == iid) {
                    i.termination_protection = *on;
                }
            });
            touched(iid)
        }
        Change::AllocateEip { role } => {
            let e = aws.allocate_eip(id, *role).await?;
            let rid = e.allocation_id.clone();
            write(state, |d| d.eips.push(e));
            created(rid, *role)
        }
        Change::AssociateEip { role } => {
            let eni = match role {
                Role::EipHost => need(
                    "eth0",
                    read(state, |d| {
                        d.instance().and_then(|i| i.eni(0)).map(str::to_string)
                    }),
                )?,
                _ => need("eth1", read(state, |d| d.eni_pos().map(|e| e.id.clone())))?,
            };
            let alloc = need(
                "Elastic IP",
                read(state, |d| d.eip(*role).map(|e| e.allocation_id.clone())),
            )?;
            let assoc = aws.associate_eip(&alloc, &eni).await?;
            write(state, |d| {
                if let Some(e) = d.eips.iter_mut().find(|e| e.allocation_id == alloc) {
                    e.association_id = Some(assoc);
                    e.eni_id = Some(eni);
                }
            });
            touched(alloc)
        }
    }
}

/// The records a discovered stack should have: one per created resource found.
pub fn missing_records(d: &Discovered) -> Vec<Record> {
    let mut out = Vec::new();
    let mut want = |role: Role, id: Option<&str>| {
        if let Some(id) = id {
            if !d.records.iter().any(|r| r.role == role && r.id == id) {
                out.push(Record {
                    role,
                    id: id.to_string(),
                    written: None,
                });
            }
        }
    };
    want(Role::Vpc, d.vpc().map(|v| v.id.as_str()));
    want(Role::Igw, d.igw().map(|v| v.id.as_str()));
    want(Role::Subnet, d.subnet().map(|v| v.id.as_str()));
    want(Role::RouteTable, d.route_table().map(|v| v.id.as_str()));
    want(Role::SgHost, d.sg(Role::SgHost).map(|v| v.id.as_str()));
    want(Role::SgPos, d.sg(Role::SgPos).map(|v| v.id.as_str()));
    want(Role::EniPos, d.eni_pos().map(|v| v.id.as_str()));
    want(Role::Host, d.instance().map(|v| v.id.as_str()));
    want(
        Role::EipHost,
        d.eip(Role::EipHost).map(|v| v.allocation_id.as_str()),
    );
    want(
        Role::EipPos,
        d.eip(Role::EipPos).map(|v| v.allocation_id.as_str()),
    );
    out
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
