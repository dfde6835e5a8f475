//! Bad input gets a clear error and the usage exit code, and changes nothing: no AWS call at
//! all (the recording proxy of an offline rig sees none). Each case is a test of its own, so
//! that every failing case reports.

mod common;
use common::Rig;

const P: &str = "provision";
const S: &str = "12345678";

/// The input files of the cases, written into the rig's scratch dir when asked for.
struct Files<'r>(&'r Rig);

impl Files<'_> {
    /// stacks/qa.toml with `from` replaced by `to`, at [`Files::stack_path`].
    fn stack(&self, from: &str, to: &str) -> String {
        self.0.stack_file("stack.toml", from, to)
    }

    fn stack_path(&self) -> String {
        self.0.home.path().join("stack.toml").display().to_string()
    }

    /// A stack with a POS.
    fn pos_stack(&self) -> String {
        self.stack("termination_protection = false", &Self::pos(""))
    }

    /// A stack with a POS and a cutover data_dir outside /usr2.
    fn cut_stack(&self) -> String {
        self.stack(
            "termination_protection = false",
            &Self::pos("[cutover]\ndata_dir = \"/usr2/../etc\"\n"),
        )
    }

    fn pos(more: &str) -> String {
        format!(
            "termination_protection = false\n[pos]\napp = \"rti\"\nversion = \"1.0\"\nartifact_url = \"https://a.example/r.tar\"\nartifact_sha256 = \"{}\"\n{more}",
            "0".repeat(64)
        )
    }

    /// A stack whose POS media come from a kickstart beside it that never ends its
    /// %packages section.
    fn kickstart_stack(&self) -> String {
        std::fs::write(self.0.home.path().join("bad.ks"), "%packages\nbash\n").unwrap();
        self.stack(
            "termination_protection = false",
            &Self::pos("kickstart = \"bad.ks\"\n"),
        )
    }

    /// A TOML type error (disk_gb a string).
    fn bad4(&self) -> String {
        self.0
            .stack_file("bad4.toml", "disk_gb = 100", "disk_gb = \"100\"")
    }

    /// What `bad4` is refused with: line, column and key path, not a byte offset.
    fn bad4_error(&self) -> String {
        format!(
            "{}:3:11: disk_gb: invalid type: string \"100\", expected i64",
            self.bad4()
        )
    }

    /// A public host key file, for --target and --from cases.
    fn host_key(&self) -> String {
        let hk = self.0.home.path().join("host.pub");
        std::fs::write(
            &hk,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIx5OTVkxcwfrtp9ibVqL7gTTxNyUsbTZDK2uHxFpmDT host\n",
        )
        .unwrap();
        hk.to_string_lossy().into_owned()
    }
}

/// `name(f): [args…] => "text";` makes a test: poscloud with these arguments (`f`, the
/// case's [`Files`]) exits 2, says the text on stderr and makes no AWS call at all.
macro_rules! refused {
    ($($(#[doc = $doc:literal])* $name:ident($f:ident): [$($arg:expr),+ $(,)?] => $want:expr;)+) => {$(
        $(#[doc = $doc])*
        #[test]
        fn $name() {
            let rig = Rig::offline();
            let $f = Files(&rig);
            let _ = &$f;
            let args: Vec<String> = vec![$(String::from($arg)),+];
            let want = String::from($want);
            rig.poscloud(&args)
                .run()
                .status(2)
                .stderr_has(&want)
                .no_aws_call();
        }
    )+};
}

refused! {
    a_shop_code_of_7_digits(f): [P, "--shop", "1234567"] => "exactly 8 digits";
    a_shop_code_of_9_digits(f): [P, "--shop", "123456789"] => "exactly 8 digits";
    a_shop_code_with_a_shell_command(f): [P, "--shop", "12345678; rm -rf /"] => "exactly 8 digits";
    a_shop_code_of_letters(f): [P, "--shop", "abcdefgh"] => "exactly 8 digits";
    an_unknown_env(f): [P, "--shop", S, "--env", "staging"] => "invalid value 'staging'";
    a_stack_file_that_cannot_be_read(f): [P, "--shop", S, "--stack", "/nonexistent/x.toml"] => "cannot read stack file";
    an_unknown_stack_name(f): [P, "--shop", S, "--stack", "huge"] => "unknown stack \"huge\"";
    a_network_that_is_no_cidr(f): [P, "--shop", S, "--stack",
        f.stack("network = \"192.168.222.0/24\"", "network = \"192.168.222.0/33\"")] => "`network`";
    a_pos_ip_outside_the_network(f): [P, "--shop", S, "--stack",
        f.stack("pos_ip = \"192.168.222.233\"", "pos_ip = \"10.1.2.233\"")] => "outside the network";
    a_pos_ip_on_the_gateway(f): [P, "--shop", S, "--stack",
        f.stack("pos_ip = \"192.168.222.233\"", "pos_ip = \"192.168.222.1\"")] => "reserved by AWS";
    a_pos_ip_on_the_broadcast_address(f): [P, "--shop", S, "--stack",
        f.stack("pos_ip = \"192.168.222.233\"", "pos_ip = \"192.168.222.255\"")] => "reserved by AWS";
    a_disk_too_small(f): [P, "--shop", S, "--stack", f.stack("disk_gb = 100", "disk_gb = 8")]
        => "`disk_gb`: 8 GB is outside";
    an_instance_type_that_is_no_type(f): [P, "--shop", S, "--stack",
        f.stack("small = \"t3.large\"", "small = \"t3large\"")] => "`sizes.small`";
    admin_access_from_the_whole_internet(f): [P, "--shop", S, "--stack",
        f.stack("admin_cidrs = []", "admin_cidrs = [\"0.0.0.0/0\"]")] => "whole internet";
    an_admin_cidr_with_host_bits(f): [P, "--shop", S, "--stack",
        f.stack("admin_cidrs = []", "admin_cidrs = [\"203.0.113.5/24\"]")] => "did you mean 203.0.113.0/24";
    an_unknown_stack_field(f): [P, "--shop", S, "--stack",
        f.stack("disk_gb = 100", "disk_gb = 100\nflavour = \"large\"")] => "unknown field `flavour`";
    an_ami_owner_that_is_no_account(f): [P, "--shop", S, "--stack",
        f.stack("owner = \"125523088429\"", "owner = \"centos\"")] => "`ami.owner`";
    a_public_network(f): [P, "--shop", S, "--stack",
        f.stack("network = \"192.168.222.0/24\"", "network = \"8.8.8.0/24\"")] => "not a private";
    /// TOML type errors and a missing field: line, column and key path, not a byte offset.
    a_stack_value_of_the_wrong_type(f): [P, "--shop", S, "--stack", f.bad4()] => f.bad4_error();
    a_pos_without_its_artifact_url(f): [P, "--shop", S, "--stack", f.stack(
            "termination_protection = false",
            "termination_protection = false\n[pos]\napp = \"rti\"\nversion = \"1.0\"\n",
        )] => format!("{}:13:1: [pos]: missing field `artifact_url`", f.stack_path());
    /// A kickstart is read when the stack loads, not on the host after the infrastructure.
    a_kickstart_with_an_unended_section(f): [P, "--shop", S, "--stack", f.kickstart_stack()]
        => "`pos.kickstart`";
    an_unknown_size(f): [P, "--shop", S, "--size", "huge"] => "invalid value 'huge'";
    an_unknown_output_format(f): [P, "--shop", S, "--output", "yaml"] => "invalid value 'yaml'";
    a_region_that_is_no_region(f): [P, "--shop", S, "--region", "moon-base"] => "not an AWS region";
    an_endpoint_that_is_not_http(f): [P, "--shop", S, "--endpoint-url", "ftp://example"] => "must start with http";
    a_journal_that_cannot_be_written(f): [P, "--shop", S, "--env", "qa", "--journal", "/proc/1/nope/journal.jsonl"]
        => "journal";
    teardown_of_a_short_shop_code(f): ["teardown", "--shop", "1234"] => "exactly 8 digits";
    status_of_a_bad_stack(f): ["status", "--shop", S, "--stack", f.stack("disk_gb = 100", "disk_gb = 8")]
        => "disk_gb";
    plan_of_an_unknown_env(f): ["plan", "--shop", S, "--env", "test"] => "invalid value 'test'";
    a_target_that_is_no_ssh_url(f): [P, "--shop", S, "--target", "http://10.0.0.1"] => "use ssh://user@host";
    a_target_without_its_host_key(f): [P, "--shop", S, "--target", "ssh://root@10.0.0.1"]
        => "--target needs --host-key-file";
    a_restore_into_a_stack_without_a_pos(f): [P, "--shop", S, "--env", "qa", "--restore-from", "file:///srv/b/"]
        => "has no [pos] section";
    a_restore_from_an_s3_object_of_no_backup_kind(f): [P, "--shop", S, "--stack", f.pos_stack(),
        "--restore-from", "s3://b/x.zip"] => "an s3 source is s3://bucket/key";
    a_restore_from_a_bad_bucket_name(f): [P, "--shop", S, "--stack", f.pos_stack(),
        "--restore-from", "s3://Bad_Bucket/x.tar.gz"] => "an s3 source is s3://bucket/key";
    a_restore_from_s3_onto_a_target_host(f): [P, "--shop", S, "--stack", f.pos_stack(),
        "--restore-from", "s3://backups/x.tar.gz", "--target", "ssh://root@10.0.0.1",
        "--host-key-file", f.host_key()] => "needs AWS";
    an_image_reference_with_a_space(f): ["image", "delete", "--shop", S, "--stack", f.pos_stack(),
        "--image", "Bad Image"] => "not an image reference";
    an_image_build_without_a_pos_version(f): ["image", "build", "--shop", S, "--env", "qa"]
        => "has no `version`";
    a_vpn_location_with_a_space(f): ["vpn", "create", "--shop", S, "--location", "Main Store",
        "--peer-ip", "5.6.7.8", "--peer-net", "10.50.0.0/24"] => "--location";
    a_vpn_peer_at_a_private_address(f): ["vpn", "create", "--shop", S, "--location", "main",
        "--peer-ip", "10.1.1.1", "--peer-net", "10.50.0.0/24"] => "not a public unicast address";
    a_vpn_peer_net_overlapping_the_pos_network(f): ["vpn", "create", "--shop", S, "--location", "main",
        "--peer-ip", "5.6.7.8", "--peer-net", "192.168.222.0/25"] => "overlaps the POS network";
    vpn_peer_nets_overlapping_each_other(f): ["vpn", "create", "--shop", S, "--location", "main",
        "--peer-ip", "5.6.7.8", "--peer-net", "10.50.0.0/24,10.50.0.0/16"] => "overlaps 10.50.0.0/24";
    a_weak_vpn_proposal(f): ["vpn", "create", "--shop", S, "--location", "main",
        "--peer-ip", "5.6.7.8", "--peer-net", "10.50.0.0/24", "--ike-version", "1",
        "--proposal", "aes128-sha1-modp1024"] => "is weak";
    a_vpn_on_a_target_host(f): ["vpn", "create", "--shop", S, "--location", "main",
        "--peer-ip", "5.6.7.8", "--peer-net", "10.50.0.0/24", "--target", "ssh://root@10.0.0.1",
        "--host-key-file", f.host_key()] => "--target is not supported";
    a_revealed_vpn_sheet_into_a_pipe(f): ["vpn", "sheet", "--shop", S, "--location", "main", "--reveal"]
        => "only to a terminal";
    a_vpn_location_that_climbs_out(f): ["vpn", "stop", "--shop", S, "--location", "../x"] => "--location";
    a_cutover_source_that_is_no_url(f): ["cutover", "run", "--shop", S, "--stack", f.pos_stack(),
        "--from", "root@10.5.0.9", "--from-host-key-file", f.host_key()] => "use ssh://user@host[:port]";
    a_cutover_source_with_a_path(f): ["cutover", "run", "--shop", S, "--stack", f.pos_stack(),
        "--from", "ssh://root@10.5.0.9/usr2", "--from-host-key-file", f.host_key()] => "no path here";
    a_cutover_source_without_its_host_key(f): ["cutover", "plan", "--shop", S, "--stack", f.pos_stack(),
        "--from", "ssh://root@10.5.0.9"] => "--from-host-key-file";
    a_cutover_source_by_name_without_its_lan_address(f): ["cutover", "run", "--shop", S, "--stack",
        f.pos_stack(), "--from", "ssh://root@shop-server", "--from-host-key-file", f.host_key()]
        => "give --from-lan";
    a_cutover_lan_address_that_is_no_address(f): ["cutover", "run", "--shop", S, "--stack", f.pos_stack(),
        "--from", "ssh://root@10.5.0.9", "--from-host-key-file", f.host_key(), "--from-lan", "10.5.0.300"]
        => "--from-lan \"10.5.0.300\"";
    a_cutover_of_another_app(f): ["cutover", "run", "--shop", S, "--stack", f.pos_stack(),
        "--from", "ssh://root@10.5.0.9", "--from-host-key-file", f.host_key(), "--app", "daisy"]
        => "but the stack's POS is rti";
    a_cutover_into_a_stack_without_a_pos(f): ["cutover", "run", "--shop", S, "--env", "qa",
        "--from", "ssh://root@10.5.0.9", "--from-host-key-file", f.host_key()] => "no [pos] section";
    a_cutover_data_dir_that_climbs_out(f): ["cutover", "run", "--shop", S, "--stack", f.cut_stack(),
        "--from", "ssh://root@10.5.0.9", "--from-host-key-file", f.host_key()] => "`cutover.data_dir`";
    a_cutover_until_an_unknown_step(f): ["cutover", "run", "--shop", S, "--stack", f.pos_stack(),
        "--from", "ssh://root@10.5.0.9", "--from-host-key-file", f.host_key(), "--until", "lunch"]
        => "invalid value 'lunch'";
    a_cutover_rollback_on_a_target_host(f): ["cutover", "rollback", "--shop", S, "--stack", f.pos_stack(),
        "--from", "ssh://root@10.5.0.9", "--from-host-key-file", f.host_key(),
        "--target", "ssh://root@10.0.0.1", "--host-key-file", f.host_key()] => "--target is not supported";
    a_backup_schedule_centos_7_cannot_read(f): [P, "--shop", S, "--stack", f.stack(
            "termination_protection = false",
            "termination_protection = false\n[backup]\nschedule = \"*-*-* 02:30 UTC\"",
        )] => "`backup.schedule`";
    a_backup_kept_no_day(f): [P, "--shop", S, "--stack", f.stack(
            "termination_protection = false",
            "termination_protection = false\n[backup]\ndaily_days = 0",
        )] => "`backup.daily_days`";
    too_many_monthly_backups(f): [P, "--shop", S, "--stack", f.stack(
            "termination_protection = false",
            "termination_protection = false\n[backup]\nmonthly = 500",
        )] => "`backup.monthly`";
    an_unknown_backup_setting(f): [P, "--shop", S, "--stack", f.stack(
            "termination_protection = false",
            "termination_protection = false\n[backup]\nkeep = 3",
        )] => "unknown field `keep`";
    a_restore_from_a_backup_time_that_is_no_time(f): ["pos", "restore", "--shop", S, "--stack", f.pos_stack(),
        "--from", "backup:yesterday"] => "backup:TIME takes the time";
    a_provision_restoring_the_stacks_own_backup(f): [P, "--shop", S, "--stack", f.pos_stack(),
        "--restore-from", "latest"] => "poscloud pos restore --from latest";
    a_backup_verify_of_a_time_that_is_no_time(f): ["backup", "verify", "--shop", S, "--backup", "noon"]
        => "--backup \"noon\"";
    a_backup_run_on_a_target_host(f): ["backup", "run", "--shop", S, "--stack", f.pos_stack(),
        "--target", "ssh://root@10.0.0.1", "--host-key-file", f.host_key()] => "not for --target hosts";
    a_billing_month_that_is_no_month(f): ["report", "billing", "--month", "2026-13"] => "use YYYY-MM";
    a_billing_month_to_come(f): ["report", "billing", "--month", "2999-01"] => "has not begun";
    billing_of_a_bad_stack(f): ["report", "billing", "--stack",
        f.stack("small = \"t3.large\"", "small = \"t3large\"")] => "t3large";
    a_psk_age_that_is_no_duration(f): ["report", "compliance", "--max-psk-age", "a year"] => "--max-psk-age";
    compliance_of_a_short_shop_code(f): ["report", "compliance", "--shop", "1234"] => "exactly 8 digits";
    compliance_of_a_stack_open_to_the_world(f): ["report", "compliance", "--stack",
        f.stack("admin_cidrs = []", "admin_cidrs = [\"0.0.0.0/0\"]")] => "0.0.0.0/0";
    /// A stack file from before the quotas were read from Service Quotas: what to change.
    a_stack_file_with_a_quotas_section(f): [P, "--shop", S, "--stack",
        f.stack("[sizes]", "[quotas]\nvpcs_per_region = 5\n[sizes]")] => "delete the [quotas] section";
    a_quota_request_of_nothing(f): ["quota", "request"] => "--vpcs <N>";
    a_quota_request_of_zero_vpcs(f): ["quota", "request", "--vpcs", "0"] => "0 is not in 1..=100000";
    a_quota_request_of_words(f): ["quota", "request", "--vpcs", "ten"] => "invalid value 'ten'";
    a_quota_request_of_negative_eips(f): ["quota", "request", "--eips", "-3"] => "'-3'";
    a_quota_request_past_any_quota(f): ["quota", "request", "--eips", "100001"] => "100001 is not in 1..=100000";
    an_alert_email_that_is_no_address(f): [P, "--shop", S, "--stack", f.stack("termination_protection = false",
        "termination_protection = false\nalert_email = \"Ops <ops@example.com>\"")] => "`alert_email`";
    a_performance_month_that_is_no_month(f): ["report", "performance", "--month", "2026-1"] => "use YYYY-MM";
    a_performance_month_to_come(f): ["report", "performance", "--month", "2999-01"] => "has not begun";
}

#[test]
fn no_credentials_are_refused_before_any_call() {
    let rig = Rig::offline();
    rig.poscloud([P, "--shop", S, "--env", "qa"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .run()
        .status(2)
        .stderr_has("no usable AWS credentials")
        .no_aws_call();
}

#[test]
fn no_region_is_refused_before_any_call() {
    let rig = Rig::offline();
    rig.poscloud([P, "--shop", S, "--env", "qa"])
        .env_remove("AWS_REGION")
        .run()
        .status(2)
        .stderr_has("no AWS region")
        .no_aws_call();
}

#[test]
fn a_shops_file_names_every_bad_row() {
    // Two bad rows (one of them by its stack file): both named.
    let rig = Rig::offline();
    let f = Files(&rig);
    let shops = rig.home.path().join("shops.csv");
    std::fs::write(
        &shops,
        format!(
            "shop,env,stack\n12345678,qa\n1234567x,qa\n23456789,qa,{}\n",
            f.bad4()
        ),
    )
    .unwrap();
    let shops = shops.to_string_lossy().into_owned();
    let r = rig
        .run(&[P, "--shops-file", &shops])
        .status(2)
        .no_aws_call();
    let lines: Vec<&str> = r.stderr.lines().collect();
    let want = [
        format!("{shops}:4: {}", f.bad4_error()),
        "(2 bad rows; nothing was changed)".to_string(),
    ];
    if lines.len() < 3
        || !lines[0].starts_with(&format!("error: {shops}:3: shop \"1234567x\""))
        || lines[1..3] != want
    {
        r.fail(format_args!("not the two bad rows (3, 4) and the count"));
    }
}

#[test]
fn teardown_without_a_terminal_needs_yes() {
    let rig = Rig::new();
    rig.provision_infra(S, "dev").ok();
    rig.run(&["teardown", "--shop", S, "--env", "dev"])
        .status(2)
        .stderr_has("pass --yes")
        .no_aws_write();
}

#[test]
fn json_errors_are_one_document() {
    let rig = Rig::offline();
    let r = rig
        .run(&[
            "status", "--shop", S, "--env", "qa", "--output", "json", "--region", "nowhere",
        ])
        .status(2)
        .no_aws_call();
    assert_eq!(r.json()["exit_code"], 2, "{r:?}");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("not an AWS region"),
        "{r:?}"
    );
}
