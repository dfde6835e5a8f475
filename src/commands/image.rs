//! `image list|build|delete`: the POS images on a shop's host (OS media and snapshots).

use super::request::reach;
use super::{open_site, Ctx};
use crate::cli::{ImageCommand, PosArgs};
use crate::error::{Error, Result};
use crate::ops;
use crate::spec::{image_ref_ok, StackSpec};
use serde_json::json;
use std::fmt::Write;

pub async fn run(ctx: &Ctx, command: &ImageCommand) -> Result<()> {
    let ui = &ctx.ui;
    let (args, name): (&PosArgs, &str) = match command {
        ImageCommand::List(a) => (a, "image list"),
        ImageCommand::Build(a) => (&a.pos, "image build"),
        ImageCommand::Delete(a) => (&a.pos, "image delete"),
    };
    let spec = StackSpec::load(args.stack.id(), args.stack.stack.as_deref(), None)?;
    if let ImageCommand::Delete(a) = command {
        // Names or ids (sha256:… included), nothing that could pass for an option.
        if !(image_ref_ok(&a.image) || a.image.strip_prefix("sha256:").is_some_and(image_ref_ok)) {
            return Err(Error::usage(format!(
                "--image {:?} is not an image reference",
                a.image
            )));
        }
    }
    if let ImageCommand::Build(_) = command {
        if spec.pos.as_ref().and_then(|p| p.media.as_ref()).is_none() {
            return Err(Error::usage(format!(
                "{}: [pos] has no `version` to build media for (a stack naming a prebuilt `image` builds nothing)",
                spec.source
            )));
        }
    }
    let reach = reach(&args.reach)?;
    let mut slot = None;
    let site = open_site(ctx, &reach, &spec.id, name, &mut slot).await?;
    match command {
        ImageCommand::List(_) => {
            let r = ops::image::list(&site).await?;
            let mut text = format!("POS images on {}:\n", site.describe());
            for i in r["images"].as_array().into_iter().flatten() {
                let tags: Vec<&str> = i["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str())
                    .collect();
                let used: Vec<&str> = i["used_by"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str())
                    .collect();
                let _ = writeln!(
                    text,
                    "  {:<50} {:<8} {}",
                    if tags.is_empty() {
                        "<untagged>".to_string()
                    } else {
                        tags.join(", ")
                    },
                    i["app"].as_str().unwrap_or("-"),
                    if used.is_empty() {
                        "unused".to_string()
                    } else {
                        format!("used by {}", used.join(", "))
                    }
                );
            }
            ctx.result(r, &text);
            Ok(())
        }
        ImageCommand::Build(a) => {
            let r = ops::image::build(&site, ui, &spec, a.force, args.break_lock)
                .await?
                .unwrap_or(json!(null));
            ctx.result(
                json!({"build": r}),
                &format!(
                    "media {} on {} ({})\n",
                    r["image"].as_str().unwrap_or("-"),
                    site.describe(),
                    r["source"].as_str().unwrap_or("-")
                ),
            );
            Ok(())
        }
        ImageCommand::Delete(a) => {
            let r = ops::image::delete(&site, ui, &a.image, args.break_lock).await?;
            ctx.result(
                json!({"deleted": r}),
                &format!("deleted image {} from {}\n", a.image, site.describe()),
            );
            Ok(())
        }
    }
}
