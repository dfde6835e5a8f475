//! Desired (StackSpec) vs discovered (AWS) → the steps provision takes. Pure: no AWS calls.

use crate::resources::discover::Discovered;
use crate::spec::StackSpec;

// The plan's vocabulary, kept with the resource modules that make its steps.
pub use crate::resources::change::{resource_label, Action, Change, Plan, Step};

/// The plan: each resource module's steps, in the order they are shown (and roughly the
/// order of their dependencies).
pub fn build(spec: &StackSpec, d: &Discovered, region: &str) -> Plan {
    use crate::resources::*;
    let mut steps = Vec::new();
    steps.extend(network::plan(spec, d));
    steps.extend(subnet::plan(spec, d));
    steps.extend(security_groups::plan(spec, d));
    steps.extend(bucket::plan(d));
    steps.extend(iam::plan(spec, d, region));
    steps.extend(eni::plan(spec, d));
    steps.extend(instance::plan(spec, d));
    steps.extend(eips::plan(d));
    Plan { steps }
}
