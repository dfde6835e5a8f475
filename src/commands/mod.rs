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
use crate::ui::{Notify, Ui};
use std::fmt::Write;
use std::future::Future;

pub struct Ctx {
    pub global: Global,
    pub ui: Ui,
    /// Where `result` goes instead of stdout (one run of a batch).
    captured: Option<std::cell::RefCell<Option<serde_json::Value>>>,
    /// The batch's AWS clients, shared by its runs (one HTTP connection pool).
    shared: Option<std::sync::Arc<Aws>>,
    /// Set by `plan`/`status` when there are changes or drift: exit 2 with
    /// `--detailed-exitcode`.
    pub pending: std::cell::Cell<bool>,
}

impl Ctx {
    pub fn new(global: Global) -> Ctx {
        let ui = Ui::new(global.output == Output::Json, global.quiet);
        Ctx {
            global,
            ui,
            captured: None,
            shared: None,
            pending: Default::default(),
        }
    }

    /// A context for one run of a batch: no progress lines, the result kept (`captured`),
    /// the batch's clients' configuration used, the notes (retries, waits) sent to `notes`.
    pub fn capturing(global: Global, shared: std::sync::Arc<Aws>, notes: Notify) -> Ctx {
        Ctx {
            ui: Ui::new(false, true).with_notes(notes),
            global,
            captured: Some(Default::default()),
            shared: Some(shared),
            pending: Default::default(),
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
            return Ok(aws.for_run(journal, self.ui.notify()));
        }
        Aws::connect(
            &Connect {
                region: self.global.region.clone(),
                profile: self.global.profile.clone(),
                endpoint_url: self.global.endpoint_url.clone(),
            },
            journal,
            self.ui.notify(),
        )
        .await
    }

    /// Prod is never changed by omission (the default env is prod): `what` is shown and the
    /// shop code must be typed back at a terminal, unless `yes`. With no terminal it changes
    /// nothing (exit 2). Other envs pass.
    pub fn confirm_prod(&self, id: &StackId, yes: bool, what: &str) -> Result<()> {
        if id.env != Env::Prod || yes {
            return Ok(());
        }
        let prompt = format!(
            "{what}\nThis is PRODUCTION. Type the shop code ({}) to go on: ",
            id.shop
        );
        match crate::ui::ask(&prompt) {
            Some(t) if t == id.shop.as_str() => Ok(()),
            Some(_) => Err(Error::usage(
                "the shop code did not match; nothing was changed",
            )),
            None => Err(Error::usage(format!(
                "{id} is production: nothing was changed without confirmation"
            ))
            .next(
                "run it at a terminal and type the shop code back, or pass --yes (and --env prod, to say it)",
            )),
        }
    }

    /// `confirm_prod` for work on a stack's host: `what` on which host, in which account. A
    /// `--target` host is named by its address, not reached by omission: not asked.
    pub fn confirm_site(&self, site: &Site<'_>, yes: bool, what: &str) -> Result<()> {
        match site.aws() {
            Some(aws) => self.confirm_prod(
                &site.id,
                yes,
                &format!("{what}: {} on {}, {}", site.id, site.describe(), aws.at),
            ),
            None => Ok(()),
        }
    }

    /// Prints the command's result: the JSON document, or the text.
    pub fn result(&self, json: serde_json::Value, text: &str) {
        if let Some(c) = &self.captured {
            *c.borrow_mut() = Some(json);
        } else if self.ui.json {
            crate::ui::out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&json).expect("json")
            ));
        } else if !text.is_empty() {
            crate::ui::out(text);
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
    ctx.ui.info(format!("{command} {id} in {}", aws.at));
    crate::phases::site(aws, &ctx.ui, id, &d, reach).await
}

/// How many locks this process holds or is taking: Ctrl-C ends a run at once only when none
/// is (main), else `interruptible` ends the work and the lock is released first.
static LOCKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn holding_lock() -> bool {
    LOCKS.load(std::sync::atomic::Ordering::SeqCst) > 0
}

/// Counts a lock from before it is taken until after it is released.
struct Holding;

impl Holding {
    fn new() -> Holding {
        LOCKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Holding
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        LOCKS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `work`, or an error on Ctrl-C or a panic (the caller still releases its lock).
async fn interruptible<T>(ui: &Ui, work: impl Future<Output = Result<T>>) -> Result<T> {
    use futures_util::FutureExt;
    // A bug must not leave the stack locked: the panic becomes an error, the lock goes.
    let work = std::panic::AssertUnwindSafe(work).catch_unwind().map(|r| {
        r.unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Error::failed(format!(
                "internal error (a bug in poscloud: please report it): {what}"
            ))
            .next("the same command resumes from where this one stopped"))
        })
    });
    tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => {
            // Calls in flight may still be carried out by AWS, and its lists may leave
            // what they made out for a moment: the lock is held that moment longer, so
            // that the next run (which waits for the lock) finds it.
            ui.notify().note(format!(
                "interrupted: holding the lock {}s more so that AWS lists what the last calls made",
                crate::aws::retry::LIST_LAG.as_secs()
            ));
            tokio::time::sleep(crate::aws::retry::LIST_LAG).await;
            Err(Error::Interrupted(
                "interrupted; what was done so far stays, and the same command resumes from there".into(),
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
    let _holding = Holding::new();
    site.lock(ui, break_lock).await?;
    let result = interruptible(ui, work).await;
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
    let _holding = Holding::new();
    crate::lock::acquire(aws, ui, id, aws.journal().command(), break_lock).await?;
    let result = interruptible(ui, work).await;
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
