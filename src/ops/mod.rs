//! The workflows, one function each (provision, batch, teardown, status, pos, image, vpn,
//! cutover, reports): each takes a validated request and returns a typed report. Commands
//! (src/commands/) only turn arguments into requests and render reports; no command calls
//! another, and nothing here prints a result.

pub mod backup;
pub mod batch;
pub mod cutover;
pub mod fleet;
pub mod image;
pub mod pos;
pub mod provision;
pub mod quota;
pub mod report;
pub mod status;
pub mod teardown;
pub mod vpn;

use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::phases::Site;
use crate::plan::{resource_label, Action, Plan};
use crate::spec::{Price, StackId};
use crate::ui::Ui;
use std::fmt::Write;
use std::future::Future;

/// Asks before prod is changed (`Ctx::confirm_prod` at a terminal); given what is about to
/// happen. Err: not approved, nothing changed.
pub type Approve<'a> = &'a dyn Fn(&StackId, &str) -> Result<()>;

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

/// The plan as provision and `plan` show it: one line per resource, its changes and drift.
pub fn plan_text(plan: &Plan, note: Option<&str>) -> String {
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

pub fn price_text(p: &Price) -> String {
    format!(
        "monthly cost (USD, on-demand): instance {:.2} + disk {:.2} + 2 public IPv4 {:.2} = {:.2}\n",
        p.instance_month, p.disk_month, p.public_ipv4_month, p.total_month
    )
}

/// Phases as a list for a line of text ("none" when empty).
pub fn phase_list(phases: &[crate::phases::Phase]) -> String {
    if phases.is_empty() {
        return "none".into();
    }
    let names: Vec<&str> = phases.iter().map(|p| p.name()).collect();
    names.join(", ")
}
