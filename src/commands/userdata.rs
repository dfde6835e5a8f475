use super::Ctx;
use crate::cli::StackArgs;
use crate::error::{Error, Result};
use crate::spec::{validate_region, StackSpec};
use crate::userdata::{encode, render, MAX_BYTES};
use serde_json::json;

/// `userdata`: what the host would get at launch, for review and for schema checks.
pub fn run(ctx: &Ctx, args: &StackArgs) -> Result<()> {
    let id = args.id();
    let spec = StackSpec::load(id, args.stack.as_deref(), None)?;
    let region = ctx
        .global
        .region
        .clone()
        .ok_or_else(|| Error::usage("no AWS region: pass --region or set AWS_REGION"))?;
    validate_region(&region)?;
    let text = render(&spec, &region);
    let sent = encode(&spec, &region)?;
    ctx.result(
        json!({"bytes": text.len(), "bytes_sent": sent.len(), "gzipped": sent.len() != text.len(),
               "limit": MAX_BYTES, "user_data": text}),
        &text,
    );
    Ok(())
}
