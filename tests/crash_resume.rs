//! Crash at every write of a fresh provision (SIGKILL right after the write reached the
//! emulator, before poscloud saw the answer), then run the same command again: the stale
//! lock is reported, `--break-lock` resumes, and the stack converges with no duplicate.
//!
//! Emulator limit: moto does not honour RunInstances ClientToken (a second call makes a
//! second instance), so these tests prove that tag discovery alone prevents duplicates; the
//! client token is the extra guard on AWS for a launch whose answer was lost in flight.

mod common;
use common::Rig;

const SHOP: &str = "23456789";
const UP: &[&str] = &[
    "provision",
    "--shop",
    SHOP,
    "--env",
    "qa",
    "--until",
    "infra",
];
const BUCKET: &str = "poscloud-ssm-output-123456789012-us-east-1";
const DOWN: &[&str] = &["teardown", "--shop", SHOP, "--env", "qa", "--yes"];

fn assert_converged(rig: &Rig, k: usize) {
    rig.assert_one_stack(SHOP, "qa", &format!("after a crash at write {k}"));
    // The shared bucket was finished too: encrypted and closed to the public.
    rig.block(async {
        let enc = rig.s3.get_bucket_encryption().bucket(BUCKET).send().await;
        assert!(enc.is_ok(), "crash at {k}: bucket not encrypted");
        let pab = rig.s3.get_public_access_block().bucket(BUCKET).send().await;
        assert!(pab.is_ok(), "crash at {k}: public access not blocked");
    });
    rig.proxy.reset();
    let again = rig.run(UP).ok();
    assert!(
        again.stdout.contains("nothing to do"),
        "crash at {k}: {}",
        again.stdout
    );
    assert_eq!(rig.proxy.writes(), Vec::<String>::new(), "crash at {k}");
}

#[test]
fn provision_resumes_after_a_crash_at_every_write() {
    let rig = Rig::new();
    // Learn the writes of a clean run, so the matrix covers each of them.
    rig.run(UP).ok();
    let writes = rig.proxy.writes();
    assert_eq!(writes.first().map(String::as_str), Some("PutParameter"));
    assert_eq!(writes.last().map(String::as_str), Some("DeleteParameter"));
    for k in 1..=writes.len() {
        // Start each round from nothing. (moto's reset API cannot be used: it fails to
        // reload AMIs that carry a creation date.)
        rig.run(DOWN).ok();
        assert_eq!(rig.tagged(SHOP, "qa"), Vec::<String>::new());
        // The shared output bucket outlives stacks; remove it so every round creates it.
        rig.block(rig.s3.delete_bucket().bucket(BUCKET).send())
            .unwrap();
        rig.proxy.reset();
        let crashed = rig.run_killed_after_write(UP, k);
        assert_eq!(
            crashed.code,
            128 + 9,
            "write {k} ({}) should have been the last",
            writes[k - 1]
        );

        if k == writes.len() {
            // Killed after releasing its lock: nothing stale, the re-run finds it all done.
            let again = rig.run(UP).ok();
            assert!(!again.stderr.contains("stale"), "{}", again.stderr);
            assert_converged(&rig, k);
            continue;
        }
        // The lock the dead run left is reported as stale, with its holder. With work left
        // the run stops (exit 3); after the last change there is nothing to do but warn.
        let locked = rig.run(UP);
        let expected = if k == writes.len() - 1 { 0 } else { 3 };
        assert_eq!(locked.code, expected, "crash at {k}: {locked:?}");
        assert!(
            locked.stderr.contains("tester@") && locked.stderr.contains("stale"),
            "{}",
            locked.stderr
        );

        let resumed = rig.run(&[UP, &["--break-lock"]].concat()).ok();
        assert!(
            resumed.stderr.contains("breaking the lock"),
            "{}",
            resumed.stderr
        );
        assert_converged(&rig, k);
    }
}

#[test]
fn teardown_resumes_after_a_crash() {
    let rig = Rig::new();
    let before = rig.inventory();
    rig.run(UP).ok();
    rig.proxy.reset();
    rig.run(DOWN).ok();
    let n = rig.proxy.writes().len();
    assert!(n > 15, "{:?}", rig.proxy.writes());
    for k in 1..=n {
        rig.run(UP).ok();
        let crashed = rig.run_killed_after_write(DOWN, k);
        assert_eq!(crashed.code, 128 + 9, "teardown crash at {k}");
        let again = rig.run(&[DOWN, &["--break-lock"]].concat()).ok();
        // Killed after its last write (the lock's release), nothing is left to find.
        let done = if k == n {
            "does not exist"
        } else {
            "nothing tagged remains"
        };
        assert!(
            again.stdout.contains(done) || again.stderr.contains(done),
            "crash at {k}: {again:?}"
        );
        assert_eq!(
            rig.tagged(SHOP, "qa"),
            Vec::<String>::new(),
            "teardown crash at {k}"
        );
        assert_eq!(rig.inventory(), before, "teardown crash at {k}: leftovers");
    }
}
