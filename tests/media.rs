//! The build phase and the region's media cache across two hosts, a restore from an S3
//! archive inside provision, `pos snapshot` and `image list|delete`, through the binary: the
//! emulator for AWS, test hosts with a real container engine for the servers, reached over
//! SSM (the agent stand-in) with the host key from the console.
//!
//! The hosts download and upload media with presigned URLs, so they must reach the emulator:
//! each gets a recording proxy on the root side of its own veth, and poscloud runs with that
//! proxy as its endpoint. Looser than AWS: moto does not check the URLs' signatures or expiry.

mod common;
use common::host::TestHost;
use common::{Proxy, Rig, Run};
use std::process::Command;

const SHOP1: &str = "81000001";
const SHOP2: &str = "81000002";
const BACKUP_BUCKET: &str = "shop-backups";

struct Shop<'a> {
    rig: &'a Rig,
    h: TestHost,
    proxy: Proxy,
    shop: &'static str,
    stack: String,
}

impl<'a> Shop<'a> {
    fn new(rig: &'a Rig, shop: &'static str, name: &str, index: u8) -> Shop<'a> {
        let h = TestHost::up(name, index, true);
        h.boot(rig, shop, "qa");
        let stack = h.media_stack(&rig.home.path().join(format!("{shop}.toml")));
        let proxy = Proxy::start_on(&h.root_side(), rig.emu.port);
        Shop {
            rig,
            h,
            proxy,
            shop,
            stack,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--shop", self.shop, "--env", "qa", "--stack", &self.stack]);
        self.rig
            .poscloud(a)
            .env("AWS_ENDPOINT_URL", self.proxy.url())
            .run()
    }
}

/// A small backup: odd names, binary and empty files, and its sha256sum manifest, packed.
fn backup_archive(dir: &std::path::Path) -> Vec<u8> {
    let data = dir.join("backup");
    std::fs::create_dir_all(data.join("sub dir/ünï")).unwrap();
    for i in 0..40u32 {
        let body: Vec<u8> = (0..i * 97).map(|b| (b * 31 % 251) as u8).collect();
        std::fs::write(data.join(format!("sub dir/ünï/file {i}.dat")), body).unwrap();
    }
    std::fs::write(data.join("empty"), b"").unwrap();
    std::fs::write(data.join("orders.db"), b"\x00\x01binary\xff").unwrap();
    let ok = Command::new("sh")
        .arg("-c")
        .arg("find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum > ../MANIFEST.sha256 && mv ../MANIFEST.sha256 . && tar -czf ../backup.tar.gz .")
        .current_dir(&data)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::read(dir.join("backup.tar.gz")).unwrap()
}

fn tree(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn media_are_built_once_per_region_and_a_second_host_restores_from_s3() {
    let rig = Rig::new();
    let one = Shop::new(&rig, SHOP1, "med1", 25);
    let two = Shop::new(&rig, SHOP2, "med2", 26);

    // Host 1 builds the media from the kickstart and stores them in the region's cache.
    let out = one.run(&["--output", "json", "provision"]).ok();
    let phases = &out.json()["summary"]["phases"];
    let build = &phases["build"]["result"];
    assert_eq!(build["source"], "built", "{build}");
    assert_eq!(build["uploaded"], true, "{build}");
    let image = build["image"].as_str().unwrap().to_string();
    assert!(image.starts_with("poscloud/rti:1.0-test-"), "{image}");
    for p in ["bootstrap", "stage", "ready"] {
        assert!(phases[p]["done_at"].is_string(), "{p} done: {phases}");
    }
    let objects = rig.block(async {
        let account = "123456789012";
        rig.s3
            .list_objects_v2()
            .bucket(format!("poscloud-ssm-output-{account}-{}", common::REGION))
            .prefix("media/rti/1.0-test/")
            .send()
            .await
            .unwrap()
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect::<Vec<_>>()
    });
    assert_eq!(objects.len(), 2, "the tarball and its record: {objects:?}");
    // The POS runs on the built media: the kickstart's chrooted %post wrote this file.
    let (ok, media) = one.h.docker(&["exec", "pos", "cat", "/etc/poscloud-media"]);
    assert!(ok && media.contains("test media"), "{media}");

    // Host 2 (another shop, same media) loads them from the cache and builds nothing; its
    // data comes from an S3 archive, verified, before its POS starts.
    let archive = backup_archive(rig.home.path());
    rig.block(async {
        rig.s3
            .create_bucket()
            .bucket(BACKUP_BUCKET)
            .send()
            .await
            .unwrap();
        rig.s3
            .put_object()
            .bucket(BACKUP_BUCKET)
            .key("tfrsync/81000002.tar.gz")
            .body(archive.into())
            .send()
            .await
            .unwrap();
    });
    let src = format!("s3://{BACKUP_BUCKET}/tfrsync/81000002.tar.gz");
    let out = two
        .run(&["--output", "json", "provision", "--restore-from", &src])
        .ok();
    let phases = &out.json()["summary"]["phases"];
    assert_eq!(phases["build"]["result"]["source"], "cache", "{phases}");
    assert_eq!(phases["build"]["result"]["image"], image.as_str());
    let key = phases["build"]["result"]["key"].as_str().unwrap();
    assert!(
        !two.h
            .root
            .join(format!("var/lib/poscloud/build/{key}/rootfs"))
            .exists(),
        "nothing was built on host 2"
    );
    assert_eq!(phases["restore"]["result"]["source"], src.as_str());
    let restored = two.h.root.join("var/lib/poscloud/data/rti");
    assert_eq!(
        tree(&restored),
        tree(&rig.home.path().join("backup")),
        "the data arrived byte-identical"
    );
    // The restore ran before stage: the POS started on the restored data.
    assert!(phases["restore"]["done_at"].as_str() <= phases["stage"]["done_at"].as_str());
    let (ok, _) = two
        .h
        .docker(&["exec", "pos", "test", "-f", "/usr2/orders.db"]);
    assert!(ok, "the POS sees the restored data at /usr2");
    // The presigned URLs are capabilities: never printed, never journaled.
    let journal = std::fs::read_to_string(rig.journal()).unwrap();
    for text in [&out.stdout, &out.stderr, &journal] {
        assert!(!text.contains("X-Amz-Signature"), "a presigned URL leaked");
    }

    // A completed provision does no remote work when run again; --redo stage redoes stage
    // (and the readiness check after it) only.
    let logins = one.h.accepted_logins();
    let again = one.run(&["provision"]).ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert_eq!(one.h.accepted_logins(), logins);
    let redo = one.run(&["provision", "--redo", "stage"]).ok();
    for skipped in ["bootstrap: done at", "build: done at"] {
        assert!(redo.stderr.contains(skipped), "{}", redo.stderr);
    }
    assert!(
        redo.stderr.contains("stage: POS container from"),
        "{}",
        redo.stderr
    );

    // image list shows the media in use; deleting them is refused while the POS runs.
    let list = one.run(&["--output", "json", "image", "list"]).ok().json();
    let media_entry = list["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["tags"].to_string().contains(&image))
        .unwrap_or_else(|| panic!("{image} not listed: {list}"))
        .clone();
    assert!(
        media_entry["used_by"].to_string().contains("pos"),
        "{media_entry}"
    );
    let refused = one.run(&["image", "delete", "--image", &image]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("in use"), "{}", refused.stderr);
    assert!(one.h.docker(&["image", "inspect", &image]).0, "still there");

    // pos snapshot: a committed image on the host and an EBS snapshot tagged with the stack.
    let snap = one
        .run(&["--output", "json", "pos", "snapshot"])
        .ok()
        .json();
    let tag = snap["image"]["image"].as_str().unwrap().to_string();
    assert!(tag.starts_with("poscloud/rti-snapshot:81000001-"), "{tag}");
    assert!(one.h.docker(&["image", "inspect", &tag]).0);
    assert_eq!(snap["ebs_snapshots"].as_array().unwrap().len(), 1, "{snap}");
    assert_eq!(rig.count(SHOP1, "qa", "snapshot"), 1);
    // An unused snapshot image can be deleted; the data directory is untouched.
    let data = one.h.root.join("var/lib/poscloud/data/rti");
    let before = tree(&data);
    one.run(&["image", "delete", "--image", &tag]).ok();
    assert!(!one.h.docker(&["image", "inspect", &tag]).0, "deleted");
    assert_eq!(tree(&data), before);

    // Teardown removes the snapshot with the rest; the cached media stay for the region.
    for s in [&one, &two] {
        s.run(&["teardown", "--yes"]).ok();
        assert_eq!(rig.tagged(s.shop, "qa"), Vec::<String>::new());
    }
    assert_eq!(rig.count(SHOP1, "qa", "snapshot"), 0);
}

/// The shipped kickstarts, read on the operator's side as provision reads them, get through
/// build.sh's input checks under CentOS 7's bash (4.2, where "${a[@]}" of an empty array is
/// fatal under `set -u`): with no container engine answering, the first thing after the
/// checks, the run must stop there and nowhere earlier. yum itself cannot run here, so the
/// install is not exercised.
#[test]
fn the_shipped_kickstarts_are_read_under_centos7_bash() {
    for app in ["rti", "daisy"] {
        let ks =
            std::fs::read_to_string(common::repo().join(format!("bootstrap/kickstart/{app}.ks")))
                .unwrap();
        let ks = poscloud::spec::kickstart::parse(&ks).unwrap();
        let root = tempfile::tempdir().unwrap();
        let out = Command::new(common::host_bash())
            .arg(common::repo().join("bootstrap/build.sh"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("POSCLOUD_ROOT", root.path())
            .env("DOCKER_HOST", "unix:///nonexistent.sock")
            .env("APP", app)
            .env("VERSION", "10.1")
            .env("KEY", "0".repeat(64))
            .env("IMAGE", format!("poscloud/{app}:10.1-000000000000"))
            .envs(ks.inputs())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{app}: {err}");
        assert!(
            err.contains("the container engine does not answer") && !err.contains("unbound"),
            "{app}.ks: {err}"
        );
    }
}
