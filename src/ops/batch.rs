//! `provision --shops-file FILE --parallel N`: many shops, N at a time, over one set of
//! clients. One shop's failure does not stop the others.

use super::provision::{self, Report, Request};
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::spec::StackId;
use crate::ui::{Notify, Ui};
use futures_util::stream::{self, StreamExt};
use std::time::Instant;

/// One shop of the batch: its line in the file and its validated request.
pub struct Run {
    pub line: usize,
    pub request: Request,
}

/// How one shop's provision ended.
pub struct Ran {
    pub line: usize,
    pub request: Request,
    pub seconds: f64,
    pub result: Result<Report>,
}

pub struct BatchReport {
    /// In the file's order.
    pub shops: Vec<Ran>,
    pub seconds: f64,
}

impl BatchReport {
    pub fn failed(&self) -> usize {
        self.shops.iter().filter(|r| r.result.is_err()).count()
    }
}

/// Provisions every run, `parallel` at a time; `connect` gives a shop its clients (the
/// batch's configuration, with the shop's journal, its notes going to the `Notify` given).
/// A shop's progress is not shown (they would interleave): one line on `ui` as each ends.
pub async fn provision(
    ui: &Ui,
    connect: &dyn Fn(&StackId, Notify) -> Result<Aws>,
    runs: Vec<Run>,
    parallel: usize,
) -> BatchReport {
    let started = Instant::now();
    let total = runs.len();
    // Prod rows were approved for the whole file (--yes) before the first AWS call.
    let approved = |_: &StackId, _: &str| Ok(());
    let mut going = stream::iter(runs.into_iter().map(|run| {
        let approved = &approved;
        // No progress lines (they would interleave); notes (retries, waits) reach the
        // batch's output under the shop's name.
        let notes = ui.notify().prefixed(format!("{}: ", run.request.spec.id));
        let quiet = Ui::new(false, true).with_notes(notes.clone());
        async move {
            let t0 = Instant::now();
            let result = async {
                let aws = connect(&run.request.spec.id, notes)?;
                provision::stack(&aws, &quiet, approved, &run.request).await
            }
            .await;
            Ran {
                line: run.line,
                request: run.request,
                seconds: t0.elapsed().as_secs_f64(),
                result,
            }
        }
    }))
    .buffer_unordered(parallel);
    let mut shops = Vec::new();
    while let Some(ran) = going.next().await {
        let done = shops.len() + 1;
        let (id, secs) = (&ran.request.spec.id, ran.seconds);
        match &ran.result {
            Ok(_) => ui.info(format!("[{done}/{total}] {id}: done ({secs:.1} s)")),
            // A shop that failed is an error of the run (it exits non-zero), not a warning.
            Err(e) => ui.error(format!(
                "[{done}/{total}] {id}: FAILED ({secs:.1} s): {}",
                first_line(e)
            )),
        }
        shops.push(ran);
    }
    shops.sort_by_key(|r| r.line);
    BatchReport {
        shops,
        seconds: started.elapsed().as_secs_f64(),
    }
}

pub fn first_line(e: &Error) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}
