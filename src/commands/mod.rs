//! One function per subcommand: build options, call the library, render the result.

pub mod backup;
pub mod batch;
pub mod cutover;
pub mod host;
pub mod image;
pub mod list;
pub mod man;
pub mod plan;
pub mod pos;
pub mod provision;
pub mod quota;
pub mod report;
pub mod request;
pub mod status;
pub mod teardown;
pub mod userdata;
pub mod vpn;

use crate::aws::{Aws, Connect};
use crate::cli::{Global, Output, StackArgs};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::phases::{Reach, Site};
use crate::spec::{Env, StackId};
use crate::ui::Ui;

pub struct Ctx {
    pub global: Global,
    pub ui: Ui,
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
            pending: Default::default(),
        }
    }

    /// Opens the journal and connects; both fail before any AWS call on bad input.
    pub async fn connect(&self, command: &str) -> Result<Aws> {
        let journal = Journal::open(self.global.journal.as_deref(), command)?;
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
            .next("run it at a terminal and type the shop code back, or pass --yes (and --env prod, to say it)")),
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
        if self.ui.json {
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
