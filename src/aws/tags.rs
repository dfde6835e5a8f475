//! The one way poscloud tags and finds its resources.

use crate::spec::StackId;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

pub const SHOP: &str = "poscloud:shop";
pub const ENV: &str = "poscloud:env";
pub const ROLE: &str = "poscloud:role";
/// On the VPC only: when the stack was created (RFC 3339), for `teardown --older-than`.
pub const CREATED: &str = "poscloud:created";

/// What a resource is for within its stack (the `poscloud:role` tag value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Vpc,
    Igw,
    Subnet,
    RouteTable,
    SgHost,
    SgPos,
    IamRole,
    InstanceProfile,
    EniPos,
    EniHost,
    Host,
    Volume,
    EipHost,
    EipPos,
    Parameter,
    OutputBucket,
    Snapshot,
    /// The stack's SNS topic for its alarms (with the stack's alert e-mail subscribed).
    AlertTopic,
    /// CloudWatch alarm on StatusCheckFailed_System: recovers the instance, tells the topic.
    AlarmSystem,
    /// CloudWatch alarm on StatusCheckFailed_Instance: tells the topic.
    AlarmInstance,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Vpc => "vpc",
            Role::Igw => "igw",
            Role::Subnet => "subnet",
            Role::RouteTable => "route-table",
            Role::SgHost => "sg-host",
            Role::SgPos => "sg-pos",
            Role::IamRole => "iam-role",
            Role::InstanceProfile => "instance-profile",
            Role::EniPos => "eni-pos",
            Role::EniHost => "eni-host",
            Role::Host => "host",
            Role::Volume => "volume",
            Role::EipHost => "eip-host",
            Role::EipPos => "eip-pos",
            Role::Parameter => "parameter",
            Role::OutputBucket => "output-bucket",
            Role::Snapshot => "snapshot",
            Role::AlertTopic => "alerts",
            Role::AlarmSystem => "alarm-system",
            Role::AlarmInstance => "alarm-instance",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        ALL_ROLES.iter().copied().find(|r| r.as_str() == s)
    }
}

const ALL_ROLES: [Role; 20] = [
    Role::Vpc,
    Role::Igw,
    Role::Subnet,
    Role::RouteTable,
    Role::SgHost,
    Role::SgPos,
    Role::IamRole,
    Role::InstanceProfile,
    Role::EniPos,
    Role::EniHost,
    Role::Host,
    Role::Volume,
    Role::EipHost,
    Role::EipPos,
    Role::Parameter,
    Role::OutputBucket,
    Role::Snapshot,
    Role::AlertTopic,
    Role::AlarmSystem,
    Role::AlarmInstance,
];

/// `Name` tag value: poscloud-<shop>-<env>-<role>.
pub fn name(id: &StackId, role: Role) -> String {
    format!("{}-{}", id.name(), role.as_str())
}

/// The four tags, as (key, value) pairs, for any service's tag type.
pub fn pairs(id: &StackId, role: Role) -> [(&'static str, String); 4] {
    [
        (SHOP, id.shop.to_string()),
        (ENV, id.env.to_string()),
        (ROLE, role.as_str().to_string()),
        ("Name", name(id, role)),
    ]
}

/// Tags applied atomically at creation, so no resource ever exists untagged.
pub fn spec(id: &StackId, role: Role, kind: ResourceType) -> TagSpecification {
    spec_with(id, role, kind, None)
}

/// `spec` plus one more tag (the VPC's creation time).
pub fn spec_with(
    id: &StackId,
    role: Role,
    kind: ResourceType,
    extra: Option<(&str, String)>,
) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(kind);
    for (k, v) in pairs(id, role).into_iter().chain(extra) {
        b = b.tags(Tag::builder().key(k).value(v).build());
    }
    b.build()
}

/// Filters that select one stack's resources.
pub fn filters(id: &StackId) -> Vec<Filter> {
    vec![
        filter(&format!("tag:{SHOP}"), id.shop.as_str()),
        filter(&format!("tag:{ENV}"), id.env.as_str()),
    ]
}

/// Filter that selects every poscloud resource.
pub fn any_stack() -> Filter {
    Filter::builder().name("tag-key").values(SHOP).build()
}

pub fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

pub fn get<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// The stack and role named by a resource's tags, if it is poscloud's.
pub fn stack_of(tags: &[Tag]) -> Option<(StackId, Option<Role>)> {
    let shop = get(tags, SHOP)?.parse().ok()?;
    let env = get(tags, ENV)?.parse().ok()?;
    Some((StackId { shop, env }, get(tags, ROLE).and_then(Role::parse)))
}

/// Filters for one stack's resource of one role (what `create_once` looks for).
pub fn role_filters(id: &StackId, role: Role) -> Vec<Filter> {
    let mut f = filters(id);
    f.push(filter(&format!("tag:{ROLE}"), role.as_str()));
    f
}
