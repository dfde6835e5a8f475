//! `list --all-regions` and `list --profiles`: a fleet spread over regions and accounts as
//! one table, on the emulator.
//!
//! Looser than AWS: moto keeps one account for any access key (both profiles of the test see
//! the same stacks, told apart by the profile column), and every region moto knows is
//! "enabled" (DescribeRegions lists them all, opt-in regions included).

mod common;
use common::Rig;

const A: &str = "12345678";
const B: &str = "23456789";

fn stacks(doc: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = doc["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["profile"].as_str().unwrap_or("-").to_string(),
                s["region"].as_str().unwrap().to_string(),
                s["shop"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn all_regions_show_each_stack_once_where_it_lives() {
    let rig = Rig::new();
    rig.provision_infra(A, "qa").ok();
    rig.poscloud(common::infra_args(B, "qa"))
        .args(["--region", "eu-west-1"])
        .run()
        .ok();
    // Only the home region: B is not there (its IAM role, global, does not make it so).
    let home = rig.run(&["list", "--output", "json"]).ok().json();
    let shops: Vec<&str> = home["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["shop"].as_str().unwrap())
        .collect();
    assert!(shops.contains(&A), "{home}");

    let r = rig
        .run(&["list", "--all-regions", "--output", "json"])
        .ok()
        .no_aws_write();
    let doc = r.json();
    assert_eq!(
        stacks(&doc),
        [
            ("-".into(), "eu-west-1".into(), B.into()),
            ("-".into(), "us-east-1".into(), A.into()),
        ],
        "{doc}"
    );
    let places = doc["places"].as_array().unwrap();
    assert!(places.len() > 10, "every region: {doc}");
    assert!(places.iter().all(|p| p["ok"] == true), "{doc}");
    assert!(r.calls.iter().any(|c| c.action == "DescribeRegions"));

    let text = rig.run(&["list", "--all-regions"]).ok().stdout;
    let row = |shop: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(3) == Some(shop))
            .unwrap_or_else(|| panic!("no row of {shop}:\n{text}"))
            .split_whitespace()
            .take(4)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row(A), format!("- 123456789012 us-east-1 {A}"), "{text}");
    assert_eq!(row(B), format!("- 123456789012 eu-west-1 {B}"), "{text}");
}

#[test]
fn several_profiles_are_one_table_and_a_failing_one_is_named() {
    let rig = Rig::new();
    rig.provision_infra(A, "qa").ok();
    let config = rig.home.path().join("aws-config");
    let credentials = rig.home.path().join("aws-credentials");
    std::fs::write(
        &config,
        "[profile florist-a]\nregion = us-east-1\n[profile florist-b]\nregion = us-east-1\n\
         [profile expired]\nregion = us-east-1\ncredential_process = /bin/false\n",
    )
    .unwrap();
    std::fs::write(
        &credentials,
        "[florist-a]\naws_access_key_id = testing\naws_secret_access_key = testing\n\
         [florist-b]\naws_access_key_id = testing2\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        rig.poscloud(args)
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .run()
    };
    let doc = run(&[
        "list",
        "--profiles",
        "florist-a,florist-b",
        "--output",
        "json",
    ])
    .ok()
    .json();
    assert_eq!(
        stacks(&doc),
        [
            ("florist-a".into(), "us-east-1".into(), A.into()),
            ("florist-b".into(), "us-east-1".into(), A.into()),
        ],
        "{doc}"
    );

    // One account's credentials fail: it is named, the others still listed, exit 1.
    let r = run(&[
        "list",
        "--profiles",
        "florist-a,expired",
        "--profiles",
        "florist-b",
    ])
    .status(1);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("florist-a ") && l.contains(A)),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("florist-b ") && l.contains(A)),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("FAILED profile expired"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );

    // Typos and doubles are bad input: exit 2, no AWS call.
    run(&["list", "--profiles", "florist-a,florist-c"])
        .status(2)
        .stderr_has("AWS profile `florist-c` is not in")
        .no_aws_call();
    run(&["list", "--profiles", "florist-a,florist-a"])
        .status(2)
        .stderr_has("names florist-a twice")
        .no_aws_call();
    run(&["list", "--all-regions", "--profile", "florist-x"])
        .status(2)
        .stderr_has("AWS profile `florist-x` is not in")
        .no_aws_call();
    // One account whose credentials fail is the run's error, as for every command.
    run(&["list", "--profiles", "expired"])
        .status(2)
        .stderr_has("no usable AWS credentials")
        .no_aws_call();
    run(&["list", "--profile", "florist-a", "--profiles", "florist-b"])
        .status(2)
        .stderr_has("name every account in --profiles")
        .no_aws_call();
}
