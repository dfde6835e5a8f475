//! Removes everything of a stack in dependency order. Each failure is recorded and the rest
//! goes on; then the stack is discovered again and anything left is reported.

use crate::aws::ssm::lock_name;
use crate::resources::discover::{record_prefix, Discovered};
use futures_util::future::join_all;

// The context each resource module's deletes work in, kept with them.
pub use crate::resources::{in_use, Teardown};

impl Teardown<'_> {
    /// Deletes everything in `d`, independent deletes at once (each resource's module knows
    /// how; the order is here): the addresses, the instance's termination, the route tables,
    /// snapshots and command output start together; the interfaces, groups and subnet follow
    /// the termination, the gateway follows the addresses, the VPC comes last, then the
    /// stack's parameters (its records among them, kept until here so that a run killed
    /// midway still finds every id). The lock parameter is left for the caller to release.
    pub async fn run(self, d: &Discovered) -> Vec<String> {
        use crate::resources::*;
        let aws = self.aws;
        let t = &self;
        let addresses = async {
            eips::delete(t, d).await;
            // A gateway detaches only when no address of its VPC is mapped.
            network::delete_gateways(t, d).await;
        };
        let hosts = async {
            instance::delete(t, d).await;
            let network = async {
                eni::delete(t, d).await;
                tokio::join!(security_groups::delete(t, d), subnet::delete_subnets(t, d));
            };
            // The instance no longer uses its role once terminated.
            tokio::join!(network, iam::delete(t, d));
        };
        let snapshots = join_all(d.snapshots.iter().map(|snap| {
            t.one(
                format!("delete EBS snapshot {snap}"),
                aws.delete_snapshot(snap),
            )
        }));
        tokio::join!(
            addresses,
            hosts,
            subnet::delete_route_tables(t, d),
            snapshots,
            bucket::delete(t, d)
        );
        network::delete_vpcs(t, d).await;
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
