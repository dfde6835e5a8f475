//! One function per subcommand: build options, call the library, render the result.

pub mod batch;
pub mod cutover;
pub mod host;
pub mod image;
pub mod list;
pub mod man;
pub mod plan;
pub mod pos;
pub mod provision;
pub mod report;
pub mod status;
pub mod teardown;
pub mod userdata;
pub mod vpn;

use crate::aws::{Aws, Connect};
use crate::cli::{Global, Output, StackArgs};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::phases::{Reach, Site};
use crate::plan::{resource_label, Action, Plan};
use crate::spec::{Env, Price, StackId};
use crate::ui::Ui;
use std::fmt::Write;
use std::future::Future;

pub struct Ctx {
    pub global: Global,
    pub ui: Ui,
    /// Where `result` goes instead of stdout (one run of a batch).
    captured: Option<std::cell::RefCell<Option<serde_json::Value>>>,
    /// The batch's AWS clients, shared by its runs (one HTTP connection pool).
    shared: Option<std::sync::Arc<Aws>>,
}

impl Ctx {
    pub fn new(global: Global) -> Ctx {
        let ui = Ui::new(global.output == Output::Json, global.quiet);
        Ctx {
            global,
            ui,
            captured: None,
            shared: None,
        }
    }

    /// A context for one run of a batch: no progress lines, the result kept (`captured`),
    /// the batch's clients used.
    pub fn capturing(global: Global, shared: std::sync::Arc<Aws>) -> Ctx {
        Ctx {
            ui: Ui::new(false, true),
            global,
            captured: Some(Default::default()),
            shared: Some(shared),
        }
    }

    /// The result a capturing context kept.
    pub fn captured(&self) -> Option<serde_json::Value> {
        self.captured.as_ref().and_then(|c| c.borrow_mut().take())
    }

    /// Opens the journal and connects; both fail before any AWS call on bad input.
    pub async fn connect(&self, command: &str) -> Result<Aws> {
        let journal = Journal::open(self.global.journal.as_deref(), command)?;
        if let Some(aws) = &self.shared {
            return Ok(aws.with_journal(journal));
        }
        Aws::connect(
            &Connect {
                region: self.global.region.clone(),
                profile: self.global.profile.clone(),
                endpoint_url: self.global.endpoint_url.clone(),
            },
            journal,
        )
        .await
    }

    /// Prints the command's result: the JSON document, or the text.
    pub fn result(&self, json: serde_json::Value, text: &str) {
        if let Some(c) = &self.captured {
            *c.borrow_mut() = Some(json);
        } else if self.ui.json {
            println!("{}", serde_json::to_string_pretty(&json).expect("json"));
        } else if !text.is_empty() {
            print!("{text}");
        }
    }
}

impl StackArgs {
    pub fn id(&self) -> StackId {
        StackId {
            shop: self.shop.clone(),
            env: self.env.unwrap_or(Env::Prod),
        }
    }
}

pub fn command_line(name: &str, id: &StackId) -> String {
    format!("{name} --shop {} --env {}", id.shop, id.env)
}

/// The host a command works on: a `--target` host (no AWS call at all), or the stack's host
/// in AWS (connected into `slot`, discovered; it must exist).
pub async fn open_site<'a>(
    ctx: &Ctx,
    reach: &Reach,
    id: &StackId,
    command: &str,
    slot: &'a mut Option<Aws>,
) -> Result<Site<'a>> {
    let line = command_line(command, id);
    if let Some(t) = &reach.target {
        let journal = Journal::open(ctx.global.journal.as_deref(), &line)?;
        return Ok(Site::host(id.clone(), t.clone(), journal));
    }
    let aws = slot.insert(ctx.connect(&line).await?);
    let d = aws.discover(id).await?;
    crate::phases::site(aws, &ctx.ui, id, &d, reach).await
}

/// `work`, or an error on Ctrl-C (the caller still releases its lock).
async fn interruptible<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => {
            // Calls in flight may still be carried out by AWS, and its lists may leave
            // what they made out for a moment: the lock is held that moment longer, so
            // that the next run (which waits for the lock) finds it.
            crate::ui::note(format!(
                "interrupted: holding the lock {}s more so that AWS lists what the last calls made",
                crate::aws::retry::LIST_LAG.as_secs()
            ));
            tokio::time::sleep(crate::aws::retry::LIST_LAG).await;
            Err(Error::failed(
                "interrupted; what was done so far stays, and the same command resumes from there",
            ))
        }
    }
}

/// Runs `work` while holding the site's lock (the stack's in SSM, or the --target host's).
pub async fn locked_site<T>(
    site: &Site<'_>,
    ui: &Ui,
    break_lock: bool,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    site.lock(ui, break_lock).await?;
    let result = interruptible(work).await;
    if let Err(e) = site.unlock().await {
        ui.warn(format!(
            "could not release the lock on {}: {e}",
            site.describe()
        ));
    }
    result
}

/// Runs `work` while holding the stack's lock; releases it after, also on failure or Ctrl-C.
pub async fn locked<T>(
    aws: &Aws,
    ui: &Ui,
    id: &StackId,
    break_lock: bool,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    crate::lock::acquire(aws, ui, id, aws.journal().command(), break_lock).await?;
    let result = interruptible(work).await;
    if let Err(e) = crate::lock::release(aws, id).await {
        ui.warn(format!("could not release the lock of {id}: {e}"));
    }
    result
}

pub fn render_plan(plan: &Plan, note: Option<&str>) -> String {
    let mut s = String::new();
    for st in &plan.steps {
        let mark = match st.action {
            Action::Create => '+',
            Action::Update => '~',
            Action::Exists => ' ',
        };
        let id = st.id.as_deref().unwrap_or("");
        let _ = writeln!(
            s,
            "{mark} {:<20} {:<8} {id}",
            resource_label(st.resource),
            st.action.as_str()
        );
        for c in &st.changes {
            let _ = writeln!(s, "      - {c}");
        }
        for d in &st.drift {
            let _ = writeln!(s, "      ! drift: {d} (not changed by provision)");
        }
    }
    if let Some(n) = note {
        let _ = writeln!(s, "  {n}");
    }
    let _ = writeln!(s, "{} change(s) to make", plan.writes());
    s
}

pub fn render_price(p: &Price) -> String {
    format!(
        "monthly cost (USD, on-demand): instance {:.2} + disk {:.2} + 2 public IPv4 {:.2} = {:.2}\n",
        p.instance_month, p.disk_month, p.public_ipv4_month, p.total_month
    )
}
