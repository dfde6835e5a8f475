use super::provision::{public_key_file, reach};
use super::{locked, Ctx};
use crate::cli::PosCommand;
use crate::error::Result;
use crate::phases::{self, restore};
use serde_json::json;

/// `pos …`: work on the POS of an existing stack's host.
pub async fn run(ctx: &Ctx, command: &PosCommand) -> Result<()> {
    match command {
        PosCommand::Restore(args) => {
            let ui = &ctx.ui;
            let id = args.stack.id();
            // Every input checked before the first AWS call.
            let host_key = args
                .source_host_key_file
                .as_deref()
                .map(|f| public_key_file("--source-host-key-file", f))
                .transpose()?;
            let spec = restore::RestoreSpec::new(
                args.app,
                &args.from,
                args.data_dir.as_deref(),
                args.source_key_file.as_deref(),
                host_key,
                &args.manifest,
            )?;
            let reach = reach(&args.reach)?;
            let aws = ctx
                .connect(&super::command_line("pos restore", &id))
                .await?;
            locked(&aws, ui, &id, args.break_lock, async {
                let d = aws.discover(&id).await?;
                let remote = phases::remote(&aws, ui, &id, &d, &reach).await?;
                let st = restore::run(&aws, ui, &id, &remote, &spec).await?;
                ctx.result(
                    json!({"restore": st}),
                    &format!(
                        "restored {} files ({} bytes) into {} on {}\n",
                        st.result["files"], st.result["bytes"], spec.data_dir, st.target
                    ),
                );
                Ok(())
            })
            .await
        }
    }
}
