//! Crash at the writes of a fresh provision (SIGKILL right after the write reached the
//! emulator, before poscloud saw the answer), then run the same command again: the stale
//! lock is reported, `--break-lock` resumes, and the stack converges with no duplicate.
//!
//! Against the AWS model (tests/rig/aws_model.py): tag-filtered lists leave out for a
//! moment what was just made, so a killed run's last creates are found by their records or,
//! when it died before recording them, once `--break-lock` has waited out that moment. The
//! model honours RunInstances' ClientToken as AWS does (the same token returns the first
//! instance), which is the extra guard for a launch whose answer was lost in flight.

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
    let writes = rig.proxy.ok_writes();
    assert_eq!(writes.first().map(String::as_str), Some("PutParameter"));
    assert_eq!(writes.last().map(String::as_str), Some("DeleteParameter"));
    // Changes run at once where they can, so the order of writes varies a little from run
    // to run; every third write and the last two are the crash points (a round costs ~12 s,
    // LIST_LAG included, and all of them would take ~9 min).
    let n = writes.len();
    let points: Vec<usize> = (1..=n).filter(|k| k % 3 == 1 || *k >= n - 1).collect();
    for k in points {
        // Start each round from nothing. (moto's reset API cannot be used: it fails to
        // reload AMIs that carry a creation date.)
        rig.run(DOWN).ok();
        assert_eq!(rig.tagged(SHOP, "qa"), Vec::<String>::new());
        // The shared output bucket outlives stacks; remove it so every round creates it.
        rig.block(rig.s3.delete_bucket().bucket(BUCKET).send())
            .unwrap();
        rig.proxy.reset();
        let crashed = rig.poscloud(UP).run_killed_after_write(k);
        assert_eq!(
            crashed.code,
            128 + 9,
            "write {k} ({}) should have been the last",
            writes.get(k - 1).map(String::as_str).unwrap_or("?")
        );

        if k == n {
            // Killed after releasing its lock: nothing stale, the re-run finds it all done.
            let again = rig.run(UP).ok();
            assert!(!again.stderr.contains("stale"), "{}", again.stderr);
            assert_converged(&rig, k);
            continue;
        }
        // The lock the dead run left is reported as stale, with its holder. With work left
        // the run stops (exit 3); after the last change there is nothing to do but warn.
        let locked = rig.run(UP);
        let expected = if locked.stdout.contains("nothing to do") {
            0
        } else {
            3
        };
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
    let n = rig.proxy.ok_writes().len();
    assert!(n > 15, "{:?}", rig.proxy.ok_writes());
    // Deletes run at once where they can: every third write and the last two, as above.
    for k in (1..=n).filter(|k| k % 3 == 1 || *k >= n - 1) {
        rig.run(UP).ok();
        let crashed = rig.poscloud(DOWN).run_killed_after_write(k);
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
