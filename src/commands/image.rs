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
            for i in &r.fields.images {
                let _ = writeln!(
                    text,
                    "  {:<50} {:<8} {}",
                    if i.tags.is_empty() {
                        "<untagged>".to_string()
                    } else {
                        i.tags.join(", ")
                    },
                    i.app,
                    if i.used_by.is_empty() {
                        "unused".to_string()
                    } else {
                        format!("used by {}", i.used_by.join(", "))
                    }
                );
            }
            ctx.result(r.json, &text);
            Ok(())
        }
        ImageCommand::Build(a) => {
            let r = ops::image::build(&site, ui, &spec, a.force, args.break_lock).await?;
            let (image, source) = match &r {
                Some(b) => (b.fields.image.as_str(), b.fields.source.as_str()),
                None => ("-", "-"),
            };
            let text = format!("media {image} on {} ({source})\n", site.describe());
            ctx.result(json!({"build": r.map(|b| b.json)}), &text);
            Ok(())
        }
        ImageCommand::Delete(a) => {
            let r = ops::image::delete(&site, ui, &a.image, args.break_lock).await?;
            ctx.result(
                json!({"deleted": r.json}),
                &format!("deleted image {} from {}\n", a.image, site.describe()),
            );
            Ok(())
        }
    }
}
