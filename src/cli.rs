//! Command-line definitions only (clap). Parsing validates shop codes, envs and regions.

use crate::spec::{Env, ShopCode, Size};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "poscloud",
    version,
    about = "Provision, operate and remove a florist's point-of-sale server on AWS",
    long_about = "poscloud builds a shop's whole POS server on AWS from one command, discovers it again by its tags, \
                  and removes it without leftovers. AWS is the state: no local state file is kept."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The heading of the options every command takes, shown apart from the command's own.
pub const GLOBAL: &str = "Global options";

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// AWS region (default: the profile's or AWS_REGION)
    #[arg(long, global = true, env = "AWS_REGION", help_heading = GLOBAL)]
    pub region: Option<String>,
    /// AWS named profile from ~/.aws/config
    #[arg(long, global = true, env = "AWS_PROFILE", help_heading = GLOBAL)]
    pub profile: Option<String>,
    /// Send every AWS call to this endpoint (an emulator, a VPC endpoint)
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", help_heading = GLOBAL)]
    pub endpoint_url: Option<String>,
    /// Output format: human text (progress on stderr) or one JSON document on stdout
    #[arg(long, global = true, value_enum, default_value_t = Output::Text, help_heading = GLOBAL)]
    pub output: Output,
    /// Run journal (JSON lines); default: $XDG_STATE_HOME/poscloud/journal.jsonl
    #[arg(long, global = true, env = "POSCLOUD_JOURNAL", help_heading = GLOBAL)]
    pub journal: Option<PathBuf>,
    /// More detail (-v: AWS calls, -vv: SDK internals)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    /// Only errors and the final result
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create what is missing of a shop's stack (resumable, idempotent)
    Provision(ProvisionArgs),
    /// Show what provision would do and the monthly cost; changes nothing
    Plan(PlanArgs),
    /// Every resource of a stack, its state, and any drift
    Status(StatusArgs),
    /// Every shop and env found in the region (or in every region and several accounts)
    List(ListArgs),
    /// Remove everything of a stack, then verify nothing is left
    Teardown(TeardownArgs),
    /// Operate the POS on a shop's host
    Pos {
        #[command(subcommand)]
        command: PosCommand,
    },
    /// The POS data's off-host backups: run one now, list them, verify one
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// The shop's Docker host itself: a shell on it
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// The POS images on a shop's host: OS media and snapshots
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Site-to-site IPsec tunnels from the POS to the florist's locations
    Vpn {
        #[command(subcommand)]
        command: VpnCommand,
    },
    /// Move a shop's physical POS server to its cloud host (cutover night)
    Cutover {
        #[command(subcommand)]
        command: CutoverCommand,
    },
    /// Fleet reports: billing for a month, compliance of every stack
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// The region's VPC and Elastic IP quotas (Service Quotas), and raising them
    Quota {
        #[command(subcommand)]
        command: QuotaCommand,
    },
    /// Print the host's rendered user-data (cloud-config) for a stack; no AWS call
    #[command(name = "userdata")]
    UserData(StackArgs),
    /// Print shell completions to stdout
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of poscloud or of one command, or write them all (--out)
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print, e.g. `provision` or `pos restore` (default: poscloud's)
    #[arg(value_name = "COMMAND", conflicts_with = "out")]
    pub command: Vec<String>,
    /// Write poscloud.1 and a poscloud-<command>.1 for every command into this directory
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// A shell on the host over an SSM session (`aws ssm start-session`; no inbound port)
    Connect(HostConnectArgs),
}

#[derive(Debug, Args)]
pub struct HostConnectArgs {
    /// Shop code: exactly 8 digits
    #[arg(long)]
    pub shop: ShopCode,
    /// Environment [default: prod]
    #[arg(long, value_enum)]
    pub env: Option<Env>,
    /// Print the `aws ssm start-session` command instead of running it
    #[arg(long)]
    pub print: bool,
}

/// Prod is never changed by omission (the default env is prod): a command that changes a
/// prod stack shows what it will do and asks for the shop code typed back, unless --yes.
#[derive(Debug, Clone, Default, Args)]
pub struct Confirm {
    /// Change a prod stack without typing the shop code back (scripts; no terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// Shop code: exactly 8 digits
    #[arg(long)]
    pub shop: ShopCode,
    /// Environment [default: prod]
    #[arg(long, value_enum)]
    pub env: Option<Env>,
    /// Stack profile: prod, qa, dev or a path to a .toml file (default: the env's name)
    #[arg(long, value_name = "NAME|FILE")]
    pub stack: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Server size from the stack profile (default: the profile's `size`)
    #[arg(long, value_enum)]
    pub size: Option<Size>,
    /// Exit 0 when there is nothing to do, 2 when there are changes or drift, 1 on any error
    /// (bad input included), as Terraform's -detailed-exitcode: for cron and CI
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Exit 0 when there is no drift, 2 when a resource is drifted, missing or duplicated,
    /// 1 on any error (bad input included), as Terraform's -detailed-exitcode: for cron and CI
    #[arg(long)]
    pub detailed_exitcode: bool,
}

impl Command {
    /// Whether the command was asked for Terraform-style exit codes (`--detailed-exitcode`).
    pub fn detailed_exitcode(&self) -> bool {
        match self {
            Command::Plan(a) => a.detailed_exitcode,
            Command::Status(a) => a.detailed_exitcode,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Until {
    /// Stop after the AWS resources
    Infra,
    /// Stop after the host is reachable and checked (Docker, strongSwan answer)
    Bootstrap,
    /// Stop after the OS media image is on the host
    Build,
    /// Stop after the POS container runs on eth1 with the application installed
    Stage,
    /// Everything: the POS is checked healthy on its address
    Ready,
}

/// Remote phases that can be run again with --redo (all but vpn).
pub use crate::phases::Phase;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// SSM Run Command (needs no inbound port)
    Ssm,
    /// SSH to the host's Elastic IP as `centos` (needs tcp/22 from an admin CIDR)
    Ssh,
}

/// How poscloud reaches the host for remote phases.
#[derive(Debug, Clone, Args)]
pub struct ReachArgs {
    /// Transport for remote phases
    #[arg(long, value_enum, default_value_t = Transport::Ssm)]
    pub transport: Transport,
    /// Reach the host over SSH at this address instead (sandboxes, edge hosts)
    #[arg(long, value_name = "USER@HOST[:PORT]")]
    pub ssh: Option<String>,
    /// Private key file for SSH (default: your ssh-agent)
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// The host's public SSH key, checked out of band; pinned on first use
    #[arg(long, value_name = "FILE")]
    pub host_key_file: Option<PathBuf>,
    /// Do not wait for the SSM agent to be online before sending commands (they then wait for
    /// delivery, up to 10 minutes each)
    #[arg(long)]
    pub no_ssm_online_check: bool,
    /// A host poscloud did not create (physical, edge): run the phases there over SSH, with
    /// records and lock on the host; no AWS call at all. Needs --host-key-file
    #[arg(long, value_name = "ssh://USER@HOST[:PORT]", conflicts_with_all = ["ssh", "transport"])]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ProvisionArgs {
    /// Shop code: exactly 8 digits
    #[arg(
        long,
        required_unless_present = "shops_file",
        conflicts_with = "shops_file"
    )]
    pub shop: Option<ShopCode>,
    /// Environment [default: prod]
    #[arg(long, value_enum)]
    pub env: Option<Env>,
    /// Stack profile: prod, qa, dev or a path to a .toml file (default: the env's name)
    #[arg(long, value_name = "NAME|FILE")]
    pub stack: Option<String>,
    /// Provision every shop of a CSV file: one `shop,env[,stack]` a line (a header line
    /// starting with `shop`, blank lines and `#` comments are skipped)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["env", "stack", "target", "from"])]
    pub shops_file: Option<PathBuf>,
    /// With --shops-file: how many shops at once (1-32)
    #[arg(long, default_value_t = 4, requires = "shops_file", value_parser = clap::value_parser!(u16).range(1..=32))]
    pub parallel: u16,
    /// Server size from the stack profile (default: the profile's `size`)
    #[arg(long, value_enum)]
    pub size: Option<Size>,
    /// Stop after this phase
    #[arg(long, value_enum, default_value_t = Until::Ready)]
    pub until: Until,
    /// Run a phase again even though it is recorded as done
    #[arg(long, value_enum, value_name = "PHASE")]
    pub redo: Vec<Phase>,
    #[command(flatten)]
    pub reach: ReachArgs,
    #[command(flatten)]
    pub restore: RestoreSourceArgs,
    /// Print the plan and the cost; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Remove a lock left by a run that is gone (prints whose it was)
    #[arg(long)]
    pub break_lock: bool,
    #[command(flatten)]
    pub approve: Confirm,
}

/// Where restored data comes from (provision --restore-from).
#[derive(Debug, Clone, Args)]
pub struct RestoreSourceArgs {
    /// Restore customer data before the POS starts: ssh://user@host[:port]/path/ (rsync over
    /// SSH), s3://bucket/key.tar.gz (an archive) or file:///path/ on the host
    #[arg(long = "restore-from", value_name = "SOURCE")]
    pub from: Option<String>,
    #[command(flatten)]
    pub auth: SourceArgs,
}

/// How to read a restore source (provision --restore-from, pos restore --from).
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// For ssh:// sources: path ON THE HOST of the key that logs in to the backup server
    #[arg(long, value_name = "PATH")]
    pub source_key_file: Option<String>,
    /// For ssh:// sources: the backup server's public host key, checked out of band
    #[arg(long, value_name = "FILE")]
    pub source_host_key_file: Option<PathBuf>,
    /// The manifest (sha256sum format) inside the source
    #[arg(long, default_value = "MANIFEST.sha256")]
    pub manifest: String,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Running hours and cost per shop and env for one month (journal + EC2 state)
    Billing(BillingArgs),
    /// Check every stack's security controls; exits 1 when any stack fails a rule
    Compliance(ComplianceArgs),
    /// CPU (average, p95), network and status-check failures per shop for one month (CloudWatch)
    Performance(PerformanceArgs),
}

#[derive(Debug, Args)]
pub struct PerformanceArgs {
    /// The month, YYYY-MM (UTC) [default: this month, up to now]
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// Print CSV instead of the table (--output json for JSON)
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub struct BillingArgs {
    /// The month, YYYY-MM (UTC) [default: this month, up to now]
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// Print CSV instead of the table, data rows only (--output json for JSON)
    #[arg(long)]
    pub csv: bool,
    /// With --csv: after the data, a `subtotal` row per env and a `total` row
    #[arg(long, requires = "csv")]
    pub totals: bool,
    /// Also write the report as one HTML page: cost per month and env since the journal
    /// began, and the month's bill
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Prices from this stack profile for every stack (default: each env's own profile)
    #[arg(long, value_name = "NAME|FILE")]
    pub stack: Option<String>,
}

#[derive(Debug, Args)]
pub struct ComplianceArgs {
    /// Only this shop
    #[arg(long)]
    pub shop: Option<ShopCode>,
    /// Only this env
    #[arg(long, value_enum)]
    pub env: Option<Env>,
    /// Admin CIDRs from this stack profile for every stack (default: each env's own profile)
    #[arg(long, value_name = "NAME|FILE")]
    pub stack: Option<String>,
    /// Print CSV instead: one row per stack and rule (shop,env,rule,status,detail,fix)
    #[arg(long)]
    pub csv: bool,
    /// Also write the report as one HTML page: the stacks × rules grid and each failure's fix
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Flag VPN keys older than this
    #[arg(long, value_name = "AGE", default_value = "365d")]
    pub max_psk_age: humantime::Duration,
    /// Flag hosts whose OS was last updated longer ago than this (PCI DSS: critical patches within a month)
    #[arg(long, value_name = "AGE", default_value = "30d")]
    pub max_patch_age: humantime::Duration,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Every region the account has enabled (EC2 DescribeRegions), not only --region
    #[arg(long)]
    pub all_regions: bool,
    /// These AWS profiles, one per customer account, as one table (comma-separated or
    /// repeated; instead of --profile, which names one)
    #[arg(long, value_name = "PROFILE,...", value_delimiter = ',')]
    pub profiles: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Each quota's value (applied or AWS's default), its use, and its increase requests
    Show,
    /// Ask AWS to raise a quota (one open request a quota: an open one is shown instead)
    Request(QuotaRequestArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("quota").required(true).multiple(true).args(["vpcs", "eips"])))]
pub struct QuotaRequestArgs {
    /// The VPCs per Region wanted (one a stack); more than the current value
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub vpcs: Option<u32>,
    /// The EC2-VPC Elastic IPs wanted (two a stack); more than the current value
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub eips: Option<u32>,
}

#[derive(Debug, Args)]
pub struct TeardownArgs {
    /// Shop code: exactly 8 digits
    #[arg(
        long,
        required_unless_present = "older_than",
        conflicts_with = "older_than"
    )]
    pub shop: Option<ShopCode>,
    /// Environment (no default for teardown: name the one you mean)
    #[arg(long, value_enum)]
    pub env: Option<Env>,
    /// Stack profile: prod, qa, dev or a path to a .toml file (default: the env's name)
    #[arg(long, value_name = "NAME|FILE")]
    pub stack: Option<String>,
    /// Every stack of --env (qa or dev, never prod) created longer ago than this (7d, 36h…)
    #[arg(long, value_name = "AGE", requires = "env")]
    pub older_than: Option<humantime::Duration>,
    /// With --older-than: how many stacks to remove at once (1-32)
    #[arg(long, default_value_t = 4, requires = "older_than", value_parser = clap::value_parser!(u16).range(1..=32))]
    pub parallel: u16,
    /// List what would be removed; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// With --yes: allow removing a prod stack without typing the shop code back
    #[arg(long)]
    pub allow_prod: bool,
    /// Remove a lock left by a run that is gone (prints whose it was)
    #[arg(long)]
    pub break_lock: bool,
}

#[derive(Debug, Subcommand)]
pub enum PosCommand {
    /// The POS container's state, health and POS address
    Status(PosArgs),
    /// Start the POS container (re-applies stage: eth1 handed over, app installed)
    Start(PosArgs),
    /// Stop the POS container; eth1 goes back to the host, the data stays
    Stop(PosChangeArgs),
    /// Stop, then start
    Restart(PosChangeArgs),
    /// Bring customer data in from a backup source; every file is verified against the
    /// source's manifest before the data directory is replaced
    Restore(PosRestoreArgs),
    /// Open a shell in the POS container (SSH + docker exec, or an SSM session)
    Connect(PosArgs),
    /// EBS snapshot of the host's volume and the container committed to a tagged image
    Snapshot(PosArgs),
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back the POS data up now, as the host's daily timer does (the POS is held for the copy)
    Run(PosArgs),
    /// The stack's backups in S3: time, kind, files, size, result (no host needed)
    List(PosArgs),
    /// Download a backup and check every file against its manifest (no host needed)
    Verify(BackupVerifyArgs),
}

#[derive(Debug, Args)]
pub struct BackupVerifyArgs {
    #[command(flatten)]
    pub pos: PosArgs,
    /// Which backup: its time as `backup list` shows it (2026-12-02T02:30:00Z) [default: the newest good one]
    #[arg(long, value_name = "TIME")]
    pub backup: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// POS images on the host (OS media and snapshots) and the containers using them
    List(PosArgs),
    /// Build (or load from the region's cache) the stack's OS media on the host
    Build(ImageBuildArgs),
    /// Delete an image from the host; refused while a container uses it; data is never touched
    Delete(ImageDeleteArgs),
}

#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    #[command(flatten)]
    pub pos: PosArgs,
    /// Build from the kickstart even if the host or the region's cache has the media
    /// (and replace the cached copy)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ImageDeleteArgs {
    #[command(flatten)]
    pub pos: PosArgs,
    /// The image to delete (name:tag or id, as `image list` shows)
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
}

#[derive(Debug, Args)]
pub struct PosArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub reach: ReachArgs,
    /// Remove a lock left by a run that is gone (prints whose it was)
    #[arg(long)]
    pub break_lock: bool,
}

/// A POS command that interrupts the shop's POS: confirmed in prod.
#[derive(Debug, Args)]
pub struct PosChangeArgs {
    #[command(flatten)]
    pub pos: PosArgs,
    #[command(flatten)]
    pub approve: Confirm,
}

#[derive(Debug, Args)]
pub struct PosRestoreArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Backup source: latest or backup:TIME (the stack's own backups, `backup list`),
    /// ssh://user@host[:port]/path/ (rsync over SSH), s3://bucket/key.tar.gz (an archive
    /// holding the data and its manifest) or file:///path/ on the host
    #[arg(long, value_name = "SOURCE")]
    pub from: String,
    /// POS application whose data this is (one of the stack's apps: rti, daisy, or an
    /// apps/NAME.toml beside the stack file)
    #[arg(long, value_name = "APP", default_value = "rti")]
    pub app: String,
    /// Data directory on the host [default: /var/lib/poscloud/data/<app>]
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<String>,
    #[command(flatten)]
    pub auth: SourceArgs,
    #[command(flatten)]
    pub reach: ReachArgs,
    /// Remove a lock left by a run that is gone (prints whose it was)
    #[arg(long)]
    pub break_lock: bool,
    #[command(flatten)]
    pub approve: Confirm,
}

#[derive(Debug, Subcommand)]
pub enum VpnCommand {
    /// Create (or update) a location's tunnel: key made and kept in SSM, tunnel brought up
    Create(VpnCreateArgs),
    /// The shop's locations as recorded in SSM
    List(PosArgs),
    /// Each tunnel as strongSwan on the host sees it (IKE/CHILD SA, bytes, rekey)
    Status(VpnArgs),
    /// Remove a location: its tunnel, its files on the host, its key and settings in SSM
    Delete(VpnLocationArgs),
    /// What the florist's router admin needs; the key only with --reveal
    Sheet(VpnSheetArgs),
    /// A new key: kept aside until --confirm (the router has it), or in use at once (--now)
    Rotate(VpnRotateArgs),
    /// Tunnels up again from the host's files: every one, or --location (stopped alone)
    Start(VpnArgs),
    /// Tunnels down, settings and keys kept: every one (strongSwan stopped), or --location
    /// alone (it stays down until `vpn start --location`, the others keep running)
    Stop(VpnArgs),
}

#[derive(Debug, Args)]
pub struct VpnRotateArgs {
    #[command(flatten)]
    pub pos: PosArgs,
    /// The location's name
    #[arg(long)]
    pub location: String,
    /// The router has the new key: put it in use, forget the old one
    #[arg(long, conflicts_with = "now")]
    pub confirm: bool,
    /// Put a new key in use at once (the tunnel is down until the router has it)
    #[arg(long)]
    pub now: bool,
    #[command(flatten)]
    pub approve: Confirm,
}

#[derive(Debug, Args)]
pub struct VpnArgs {
    #[command(flatten)]
    pub pos: PosArgs,
    /// One location (default: all)
    #[arg(long)]
    pub location: Option<String>,
}

#[derive(Debug, Args)]
pub struct VpnLocationArgs {
    #[command(flatten)]
    pub pos: PosArgs,
    /// The location's name
    #[arg(long)]
    pub location: String,
    #[command(flatten)]
    pub approve: Confirm,
}

#[derive(Debug, Args)]
pub struct VpnCreateArgs {
    #[command(flatten)]
    pub pos: PosArgs,
    /// The location's name (a-z, 0-9, '-'; starts with a letter)
    #[arg(long)]
    pub location: String,
    /// The florist router's public IPv4 address
    #[arg(long, value_name = "A.B.C.D")]
    pub peer_ip: String,
    /// The florist's LAN(s) behind the router
    #[arg(long, value_name = "CIDR[,CIDR]")]
    pub peer_net: String,
    /// IKE version: 2, or 1 for legacy routers only
    #[arg(long, default_value_t = 2)]
    pub ike_version: u8,
    /// IKE proposals (strongSwan syntax) instead of the strong defaults
    #[arg(long)]
    pub proposal: Option<String>,
    /// ESP proposals (strongSwan syntax) instead of the strong defaults
    #[arg(long)]
    pub esp_proposal: Option<String>,
    /// Accept weak algorithms (SHA-1, MODP-1024, 3DES…) for a router that can do no better
    #[arg(long)]
    pub allow_weak: bool,
}

#[derive(Debug, Args)]
pub struct VpnSheetArgs {
    #[command(flatten)]
    pub pos: PosArgs,
    /// The location's name
    #[arg(long)]
    pub location: String,
    /// Include the pre-shared key: printed only to a terminal, else written to --psk-file
    #[arg(long)]
    pub reveal: bool,
    /// With --reveal: write the key to this new file (mode 600) instead of the terminal
    #[arg(long, value_name = "FILE")]
    pub psk_file: Option<PathBuf>,
    /// Show the new key of a pending rotation instead of the one in use
    #[arg(long)]
    pub next: bool,
}

#[derive(Debug, Subcommand)]
pub enum CutoverCommand {
    /// The preflight checks and the steps with the estimated downtime; changes nothing
    Plan(CutoverArgs),
    /// Run the steps, from where the last run stopped (any engineer, any laptop)
    Run(CutoverRunArgs),
    /// The cutover's progress as recorded in SSM
    Status(PosArgs),
    /// After the freeze: stop the cloud POS, start the physical POS again and check it
    Rollback(CutoverArgs),
}

#[derive(Debug, Args)]
pub struct CutoverArgs {
    #[command(flatten)]
    pub pos: PosArgs,
    /// The physical POS server, as this machine reaches it over SSH
    #[arg(long, value_name = "ssh://USER@HOST[:PORT]")]
    pub from: String,
    /// Its public host key (one `.pub` / known_hosts line, checked out of band): pinned
    #[arg(long, value_name = "FILE")]
    pub from_host_key_file: Option<PathBuf>,
    /// The private key to log in to it with (default: the ssh-agent)
    #[arg(long, value_name = "FILE")]
    pub from_key: Option<PathBuf>,
    /// Its IPv4 address as the cloud host reaches it through the VPN (default: the
    /// --from host, when that is an IPv4 address)
    #[arg(long, value_name = "A.B.C.D")]
    pub from_lan: Option<String>,
    /// The POS application (default: the stack's [pos] app; one of the stack's apps, see
    /// docs/apps.md)
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
}

#[derive(Debug, Args)]
pub struct CutoverRunArgs {
    #[command(flatten)]
    pub cutover: CutoverArgs,
    /// Limit both syncs to this many KiB/s (spare the shop's uplink while it is open)
    #[arg(long, value_name = "KIBPS", default_value_t = 0)]
    pub bwlimit: u32,
    /// Stop after this step
    #[arg(long, value_enum)]
    pub until: Option<crate::phases::cutover::CutoverStep>,
    #[command(flatten)]
    pub approve: Confirm,
}

impl ProvisionArgs {
    /// The one stack of a run without --shops-file (clap requires --shop then).
    pub fn stack_args(&self) -> StackArgs {
        StackArgs {
            shop: self
                .shop
                .clone()
                .expect("clap requires --shop without --shops-file"),
            env: self.env,
            stack: self.stack.clone(),
        }
    }
}

impl TeardownArgs {
    /// The one stack of a run without --older-than (clap requires --shop then).
    pub fn stack_args(&self) -> StackArgs {
        StackArgs {
            shop: self
                .shop
                .clone()
                .expect("clap requires --shop without --older-than"),
            env: self.env,
            stack: self.stack.clone(),
        }
    }
}

/// The command line as poscloud parses it: the derived definitions plus each command's
/// examples (shown after `--help`, and as EXAMPLES in the man pages).
pub fn command() -> clap::Command {
    fn attach(mut cmd: clap::Command, path: &str) -> clap::Command {
        if let Some(lines) = shown_examples(path) {
            let body: String = lines.iter().map(|l| format!("  {l}\n")).collect();
            cmd = cmd.after_help(format!("Examples:\n{body}"));
        }
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        for name in names {
            let sub = format!("{path} {name}").trim_start().to_string();
            cmd = cmd.mut_subcommand(&name, |s| attach(s, &sub));
        }
        cmd
    }
    use clap::CommandFactory;
    attach(Cli::command(), "")
}

/// The examples of a command (`""` is poscloud itself, `"pos restore"` a nested one): lines
/// that are either a `# comment` or a whole `poscloud …` command line (checked by a test).
pub fn examples(path: &str) -> Option<&'static str> {
    EXAMPLES.iter().find(|(p, _)| *p == path).map(|(_, e)| *e)
}

/// The examples as `--help` and the man pages show them: lines of at most 76 columns (with
/// the indent, a terminal's 80), a long command broken shell-style (` \` at the end, the next
/// line indented), between options, so that it can still be pasted.
pub fn shown_examples(path: &str) -> Option<Vec<String>> {
    const WIDTH: usize = 76;
    let text = examples(path)?;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.len() <= WIDTH {
            out.push(line.to_string());
            continue;
        }
        // An option and its value stay together.
        let mut groups: Vec<String> = Vec::new();
        for w in line.split(' ') {
            match groups.last_mut() {
                // The account: --profile P --region R on one line.
                Some(g)
                    if !w.starts_with('-') || (w == "--region" && g.starts_with("--profile")) =>
                {
                    g.push(' ');
                    g.push_str(w);
                }
                _ => groups.push(w.to_string()),
            }
        }
        let mut cur = String::new();
        for g in groups {
            if !cur.trim().is_empty() && cur.len() + 1 + g.len() + 2 > WIDTH {
                out.push(format!("{cur} \\"));
                cur = format!("    {g}");
            } else {
                if !cur.is_empty() {
                    cur.push(' ');
                }
                cur.push_str(&g);
            }
        }
        out.push(cur);
    }
    Some(out)
}

/// `--profile` and `--region` in every example: an engineer who switches between accounts
/// copies the account along with the command.
const EXAMPLES: &[(&str, &str)] = &[
    ("", "\
# What a QA stack would be and cost, then build it through every phase
poscloud plan --shop 12345678 --env qa --profile ops --region us-east-1
poscloud provision --shop 12345678 --env qa --stack stacks/examples/rti.toml --profile ops --region us-east-1
# Every shop in the region, then one stack's resources and drift
poscloud list --profile ops --region us-east-1
poscloud status --shop 12345678 --env qa --profile ops --region us-east-1
# A shell on the host; everything removed again
poscloud host connect --shop 12345678 --env qa --profile ops --region us-east-1
poscloud teardown --shop 12345678 --env qa --profile ops --region us-east-1"),
    ("provision", "\
# The AWS part only (VPC, instance, addresses): no [pos] section needed
poscloud provision --shop 12345678 --env qa --until infra --profile ops --region us-east-1
# Everything (a stack with [pos]), the shop's backup restored first
poscloud provision --shop 12345678 --env prod --stack shop-12345678.toml --restore-from s3://florist-backups/tfrsync/12345678.tar.gz --profile ops --region us-east-1
# Many shops, 8 at a time (lines: shop,env[,stack])
poscloud provision --shops-file wave3.csv --parallel 8 --until infra --profile ops --region us-east-1
# Run one phase again
poscloud provision --shop 12345678 --env qa --stack shop-12345678.toml --redo stage --profile ops --region us-east-1"),
    ("plan", "\
poscloud plan --shop 12345678 --env qa --profile ops --region us-east-1
poscloud plan --shop 12345678 --env prod --size large --profile ops --region us-east-1"),
    ("status", "\
poscloud status --shop 12345678 --env prod --profile ops --region us-east-1
# For a script: every resource, its id and state, the phases, the lock
poscloud status --shop 12345678 --env prod --output json --profile ops --region us-east-1"),
    ("list", "\
# Every shop and env: instance, state, phases done, public IPs
poscloud list --profile ops --region us-east-1
poscloud list --output json --profile ops --region us-east-1
# The fleet: every region of two customer accounts, one table
poscloud list --all-regions --profiles florist-a,florist-b --region us-east-1"),
    ("teardown", "\
# Look first, then remove (asks for `yes`)
poscloud teardown --shop 12345678 --env qa --dry-run --profile ops --region us-east-1
poscloud teardown --shop 12345678 --env qa --profile ops --region us-east-1
# Every QA stack older than a week, without asking
poscloud teardown --env qa --older-than 7d --yes --profile ops --region us-east-1"),
    ("pos", "\
poscloud pos status --shop 12345678 --env prod --profile ops --region us-east-1
poscloud pos restart --shop 12345678 --env prod --profile ops --region us-east-1
poscloud pos connect --shop 12345678 --env prod --profile ops --region us-east-1"),
    ("pos status", "\
poscloud pos status --shop 12345678 --env prod --profile ops --region us-east-1"),
    ("pos start", "\
poscloud pos start --shop 12345678 --env prod --stack shop-12345678.toml --profile ops --region us-east-1"),
    ("pos stop", "\
poscloud pos stop --shop 12345678 --env prod --stack shop-12345678.toml --profile ops --region us-east-1"),
    ("pos restart", "\
poscloud pos restart --shop 12345678 --env prod --stack shop-12345678.toml --profile ops --region us-east-1"),
    ("pos restore", "\
# From the backup server over SSH (the key file is a path on the host)
poscloud pos restore --shop 12345678 --env prod --from ssh://backup@backup-server/backups/tfrsync-12345678/ --source-key-file /etc/poscloud/backup_key --source-host-key-file backup-server.pub --profile ops --region us-east-1
# From an archive in S3, for a Daisy shop
poscloud pos restore --shop 12345678 --env prod --app daisy --from s3://florist-backups/tfrsync/12345678.tar.gz --profile ops --region us-east-1
# The stack's newest good backup, or one of them by its time (`backup list`)
poscloud pos restore --shop 12345678 --env prod --from latest --profile ops --region us-east-1
poscloud pos restore --shop 12345678 --env prod --from backup:2026-12-02T02:30:00Z --profile ops --region us-east-1"),
    ("backup", "\
poscloud backup list --shop 12345678 --env prod --profile ops --region us-east-1"),
    ("backup run", "\
poscloud backup run --shop 12345678 --env prod --stack shop-12345678.toml --profile ops --region us-east-1"),
    ("backup list", "\
poscloud backup list --shop 12345678 --env prod --profile ops --region us-east-1
poscloud backup list --shop 12345678 --env prod --output json --profile ops --region us-east-1"),
    ("backup verify", "\
# The newest good backup
poscloud backup verify --shop 12345678 --env prod --profile ops --region us-east-1
poscloud backup verify --shop 12345678 --env prod --backup 2026-12-02T02:30:00Z --profile ops --region us-east-1"),
    ("pos connect", "\
poscloud pos connect --shop 12345678 --env prod --profile ops --region us-east-1
poscloud pos connect --shop 12345678 --env prod --transport ssh --profile ops --region us-east-1"),
    ("pos snapshot", "\
poscloud pos snapshot --shop 12345678 --env prod --stack shop-12345678.toml --profile ops --region us-east-1"),
    ("host", "\
poscloud host connect --shop 12345678 --env prod --profile ops --region us-east-1"),
    ("host connect", "\
# A shell on the host (needs the AWS CLI and its Session Manager plugin)
poscloud host connect --shop 12345678 --env prod --profile ops --region us-east-1
# Only print the aws command, e.g. to run it elsewhere
poscloud host connect --shop 12345678 --env prod --print --profile ops --region us-east-1"),
    ("image", "\
poscloud image list --shop 12345678 --env prod --profile ops --region us-east-1
poscloud image build --shop 12345678 --env prod --stack shop-12345678.toml --profile ops --region us-east-1"),
    ("image list", "\
poscloud image list --shop 12345678 --env prod --profile ops --region us-east-1"),
    ("image build", "\
poscloud image build --shop 12345678 --env qa --stack stacks/examples/rti.toml --profile ops --region us-east-1
# Build again from the kickstart and replace the region's cached copy
poscloud image build --shop 12345678 --env qa --stack stacks/examples/rti.toml --force --profile ops --region us-east-1"),
    ("image delete", "\
poscloud image delete --shop 12345678 --env prod --image poscloud/rti-snapshot:12345678-20261201T0300Z --profile ops --region us-east-1"),
    ("vpn", "\
poscloud vpn create --shop 12345678 --env prod --location mainstore --peer-ip 203.0.113.10 --peer-net 10.50.0.0/24 --profile ops --region us-east-1
poscloud vpn status --shop 12345678 --env prod --profile ops --region us-east-1"),
    ("vpn create", "\
poscloud vpn create --shop 12345678 --env prod --location mainstore --peer-ip 203.0.113.10 --peer-net 10.50.0.0/24 --profile ops --region us-east-1"),
    ("vpn list", "\
poscloud vpn list --shop 12345678 --env prod --profile ops --region us-east-1"),
    ("vpn status", "\
poscloud vpn status --shop 12345678 --env prod --profile ops --region us-east-1"),
    ("vpn delete", "\
poscloud vpn delete --shop 12345678 --env prod --location annex --profile ops --region us-east-1"),
    ("vpn sheet", "\
# For the router admin; the key into a new file (mode 600)
poscloud vpn sheet --shop 12345678 --env prod --location mainstore --reveal --psk-file mainstore.psk --profile ops --region us-east-1"),
    ("vpn rotate", "\
poscloud vpn rotate --shop 12345678 --env prod --location mainstore --profile ops --region us-east-1
# Once the router has the new key
poscloud vpn rotate --shop 12345678 --env prod --location mainstore --confirm --profile ops --region us-east-1"),
    ("vpn start", "\
poscloud vpn start --shop 12345678 --env prod --location mainstore --profile ops --region us-east-1"),
    ("vpn stop", "\
poscloud vpn stop --shop 12345678 --env prod --location mainstore --profile ops --region us-east-1"),
    ("cutover", "\
poscloud cutover plan --shop 12345678 --env prod --from ssh://root@10.50.0.10 --from-host-key-file phys.pub --profile ops --region us-east-1
poscloud cutover run --shop 12345678 --env prod --from ssh://root@10.50.0.10 --from-host-key-file phys.pub --profile ops --region us-east-1
poscloud cutover status --shop 12345678 --env prod --profile ops --region us-east-1"),
    ("cutover plan", "\
poscloud cutover plan --shop 12345678 --env prod --from ssh://root@10.50.0.10 --from-host-key-file phys.pub --profile ops --region us-east-1"),
    ("cutover run", "\
# During the day: the bulk of the data, sparing the shop's uplink
poscloud cutover run --shop 12345678 --env prod --from ssh://root@10.50.0.10 --from-host-key-file phys.pub --until pre-sync --bwlimit 2000 --profile ops --region us-east-1
# The night: freeze, final sync, verify, switch
poscloud cutover run --shop 12345678 --env prod --from ssh://root@10.50.0.10 --from-host-key-file phys.pub --profile ops --region us-east-1"),
    ("cutover status", "\
poscloud cutover status --shop 12345678 --env prod --profile ops --region us-east-1"),
    ("cutover rollback", "\
poscloud cutover rollback --shop 12345678 --env prod --from ssh://root@10.50.0.10 --from-host-key-file phys.pub --profile ops --region us-east-1"),
    ("report", "\
poscloud report billing --month 2026-11 --profile ops --region us-east-1
poscloud report compliance --profile ops --region us-east-1"),
    ("report billing", "\
poscloud report billing --month 2026-11 --profile ops --region us-east-1
poscloud report billing --month 2026-11 --csv --journal all-journals.jsonl --profile ops --region us-east-1"),
    ("report compliance", "\
poscloud report compliance --profile ops --region us-east-1
# From cron: exit 1 when any stack fails a rule
poscloud report compliance --output json --quiet --profile ops --region us-east-1"),
    ("quota", "\
poscloud quota show --profile ops --region us-east-1
poscloud quota request --vpcs 20 --eips 40 --profile ops --region us-east-1"),
    ("quota show", "\
# Value, use and open requests of the region's VPC and Elastic IP quotas
poscloud quota show --profile ops --region us-east-1
poscloud quota show --output json --profile ops --region us-east-1"),
    ("quota request", "\
# Room for 20 shops in the region: 20 VPCs, 40 Elastic IPs
poscloud quota request --vpcs 20 --eips 40 --profile ops --region us-east-1
poscloud quota request --eips 10 --profile ops --region eu-west-1"),
    ("report performance", "\
poscloud report performance --month 2026-11 --profile ops --region us-east-1
poscloud report performance --month 2026-11 --csv --profile ops --region us-east-1"),
    ("userdata", "\
# What the host gets at launch; no AWS call
poscloud userdata --shop 12345678 --env qa --stack stacks/examples/daisy.toml --region us-east-1"),
    ("completions", "\
poscloud completions bash
poscloud completions zsh"),
    ("man", "\
poscloud man
poscloud man provision
poscloud man pos restore
# Every page, for packaging: poscloud.1, poscloud-pos-restore.1…
poscloud man --out target/man"),
];
