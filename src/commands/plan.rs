use super::Ctx;
use crate::cli::PlanArgs;
use crate::error::Result;
use crate::ops::{plan_text, price_text};
use crate::plan::{self, Change};
use crate::spec::StackSpec;
use serde_json::json;

/// `plan`: discovery and a plan, reads only.
pub async fn run(ctx: &Ctx, args: &PlanArgs) -> Result<()> {
    let id = args.stack.id();
    let spec = StackSpec::load(id.clone(), args.stack.stack.as_deref(), args.size)?;
    let aws = ctx.connect(&super::command_line("plan", &id)).await?;
    let d = aws.discover(&id).await?;
    let plan = plan::build(&spec, &d, &aws.region);
    let image = if plan.count(|c| matches!(c, Change::Launch { .. })) > 0 {
        Some(aws.find_image(&spec.ami).await?)
    } else {
        None
    };
    let note = image
        .as_ref()
        .map(|i| format!("image: {} ({})", i.id, i.name));
    let text = format!(
        "plan for {id} in {} (stack {}):\n{}{}",
        aws.whereabouts().await?,
        spec.source,
        plan_text(&plan, note.as_deref()),
        price_text(&spec.price)
    );
    ctx.pending
        .set(plan.writes() > 0 || plan.steps.iter().any(|s| !s.drift.is_empty()));
    ctx.result(
        json!({
            "shop": id.shop.as_str(), "env": id.env.as_str(), "region": aws.region, "account": aws.at.account.get(),
            "stack": spec.source, "image": image, "plan": plan,
            "writes": plan.writes(), "monthly_cost_usd": spec.price,
        }),
        &text,
    );
    Ok(())
}
