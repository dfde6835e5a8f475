//! poscloud: provisions, operates and removes a florist's POS server on AWS.
//! Layers: cli → commands → (spec, plan, apply, teardown, lock) → aws (the only SDK user).

pub mod apply;
pub mod aws;
pub mod cli;
pub mod commands;
pub mod error;
pub mod journal;
pub mod lock;
pub mod ops;
pub mod phases;
pub mod plan;
pub mod remote;
pub mod report;
pub mod resources;
pub mod spec;
pub mod teardown;
pub mod ui;
pub mod userdata;
