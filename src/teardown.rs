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
    /// snapshots, command output, alarms and alert topic start together; the interfaces, groups and subnet follow
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
            bucket::delete(t, d),
            Box::pin(alarms::delete(t, d))
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

/// What a delete waits out and what it does not, on fixture errors.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{AwsFailure, Error, Resource};
    use crate::resources::settle;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn aws_error(code: &str, message: &str) -> Error {
        Error::Aws(Box::new(AwsFailure {
            op: "DeleteSecurityGroup",
            region: "us-east-1".into(),
            resource: Resource(Some("sg-1".into())),
            code: code.into(),
            message: message.into(),
            // Classified as the AWS layer does every error it turns into ours.
            kind: crate::aws::classify(code, message),
        }))
    }

    #[test]
    fn a_dependency_going_away_is_in_use_and_other_errors_are_not() {
        for (code, message) in [
            (
                "DependencyViolation",
                "resource sg-1 has a dependent object",
            ),
            ("InvalidNetworkInterface.InUse", "eni-1 is in use"),
            ("InvalidIPAddress.InUse", "address in use"),
            (
                "InvalidParameterValue",
                "Network interface 'eni-1' is currently in use.",
            ),
        ] {
            assert!(in_use(&aws_error(code, message)), "{code}");
        }
        for (code, message) in [
            ("InvalidParameterValue", "Invalid id: \"sg-x\""),
            (
                "InvalidGroup.NotFound",
                "The security group 'sg-1' does not exist",
            ),
            ("UnauthorizedOperation", "You are not authorized"),
        ] {
            assert!(!in_use(&aws_error(code, message)), "{code}");
        }
        assert!(!in_use(&Error::failed("in use")));
    }

    #[tokio::test]
    async fn a_delete_waits_while_its_dependency_goes_away() {
        let tries = AtomicUsize::new(0);
        let r = settle(|| async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0 => Err(aws_error("DependencyViolation", "still attached")),
                _ => Ok(()),
            }
        })
        .await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(tries.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_delete_that_cannot_heal_fails_at_once() {
        let tries = AtomicUsize::new(0);
        let r = settle(|| async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(aws_error("UnauthorizedOperation", "You are not authorized"))
        })
        .await;
        assert!(matches!(r, Err(Error::Aws(f)) if f.code == "UnauthorizedOperation"));
        assert_eq!(tries.load(Ordering::SeqCst), 1, "not retried");
    }
}
