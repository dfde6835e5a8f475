//! One module per kind of resource of a stack, each owning what is known of it: its type as
//! discovered, how it is found (by tags, by recorded id), what the plan says about it, how
//! each of its changes is made, and how it is removed. `aws::discover`, `plan::build`,
//! `apply::run` and `teardown` only put them together and in order. Part of the AWS layer:
//! the SDK calls for a resource are in its module.

pub mod bucket;
pub mod eips;
pub mod eni;
pub mod iam;
pub mod instance;
pub mod network;
pub mod records;
pub mod security_groups;
pub mod subnet;
