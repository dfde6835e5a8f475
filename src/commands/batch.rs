//! `provision --shops-file FILE --parallel N`: onboarding many shops, N at a time. Every row
//! is checked before any AWS call; one shop's failure does not stop the others; a table at
//! the end, and a failure's exit code if any shop failed.

use super::Ctx;
use crate::cli::{ProvisionArgs, StackArgs};
use crate::error::{Error, Result};
use crate::spec::{Env, ShopCode, StackSpec};
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;
use std::time::Instant;

/// One shop of the file, with its line number for messages.
#[derive(Debug, Clone)]
pub struct Row {
    pub line: usize,
    pub stack: StackArgs,
}

/// Reads `shop,env[,stack]` lines. A header line starting with `shop`, blank lines and
/// `#` comments are skipped; a shop+env twice is refused.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Row>> {
    let bad = |line: usize, why: String| Error::usage(format!("{}:{line}: {why}", path.display()));
    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') || (rows.is_empty() && l.starts_with("shop")) {
            continue;
        }
        let cols: Vec<&str> = l.split(',').map(str::trim).collect();
        if !(2..=3).contains(&cols.len()) {
            return Err(bad(
                line,
                format!("{l:?}: want shop,env[,stack] ({} columns)", cols.len()),
            ));
        }
        let shop: ShopCode = cols[0]
            .parse()
            .map_err(|e| bad(line, format!("shop {:?}: {e}", cols[0])))?;
        let env = <Env as clap::ValueEnum>::from_str(cols[1], false)
            .map_err(|_| bad(line, format!("env {:?}: want prod, qa or dev", cols[1])))?;
        let stack = cols.get(2).filter(|s| !s.is_empty()).map(|s| s.to_string());
        if !seen.insert((shop.as_str().to_string(), env)) {
            return Err(bad(
                line,
                format!("{} {} is listed twice", shop.as_str(), env),
            ));
        }
        rows.push(Row {
            line,
            stack: StackArgs {
                shop,
                env: Some(env),
                stack,
            },
        });
    }
    if rows.is_empty() {
        return Err(Error::usage(format!("{}: no shops in it", path.display())));
    }
    Ok(rows)
}

pub async fn provision(ctx: &Ctx, args: &ProvisionArgs, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("--shops-file {}: {e}", path.display())))?;
    let rows = parse(path, &text)?;
    // Every stack file is checked too, before the first AWS call.
    for r in &rows {
        StackSpec::load(r.stack.id(), r.stack.stack.as_deref(), args.size)
            .map_err(|e| Error::usage(format!("{}:{}: {e}", path.display(), r.line)))?;
    }
    let total = rows.len();
    ctx.ui.info(format!(
        "provision {total} shops from {}, {} at a time",
        path.display(),
        args.parallel
    ));
    // One set of clients for every shop: one connection pool, one credentials lookup.
    let shared = std::sync::Arc::new(
        ctx.connect(&format!("provision --shops-file {}", path.display()))
            .await?,
    );
    let started = Instant::now();
    let mut done = 0;
    let mut results = Vec::new();
    let mut runs = stream::iter(rows.into_iter().map(|row| {
        let mut one = args.clone();
        one.shops_file = None;
        one.shop = Some(row.stack.shop.clone());
        one.env = row.stack.env;
        one.stack = row.stack.stack.clone();
        let sub = Ctx::capturing(ctx.global.clone(), shared.clone());
        async move {
            let t0 = Instant::now();
            let r = super::provision::run(&sub, &one).await;
            (row, r, sub.captured(), t0.elapsed().as_secs_f64())
        }
    }))
    .buffer_unordered(args.parallel as usize);
    while let Some((row, r, summary, secs)) = runs.next().await {
        done += 1;
        let id = row.stack.id();
        let (ok, detail) = match &r {
            Ok(()) => (true, String::new()),
            Err(e) => (false, e.to_string()),
        };
        let first = detail.lines().next().unwrap_or("").to_string();
        if ok {
            ctx.ui
                .info(format!("[{done}/{total}] {id}: done ({secs:.1} s)"));
        } else if !ctx.ui.json {
            // A shop that failed is an error of the run (it exits non-zero), not a warning.
            eprintln!(
                "{} [{done}/{total}] {id}: FAILED ({secs:.1} s): {first}",
                ctx.ui.paint("31", "error:")
            );
        }
        results.push(json!({
            "shop": id.shop.as_str(), "env": id.env.as_str(), "line": row.line, "ok": ok,
            "seconds": (secs * 10.0).round() / 10.0, "error": if ok { None } else { Some(&detail) },
            "exit_code": r.as_ref().err().map(|e| e.exit_code()), "summary": summary,
        }));
    }
    results.sort_by_key(|r| r["line"].as_u64());
    let failed = results.iter().filter(|r| r["ok"] == false).count();
    let mut text = format!(
        "{:<10} {:<5} {:<7} {:>8}  DETAIL\n",
        "SHOP", "ENV", "RESULT", "SECONDS"
    );
    for r in &results {
        let _ = writeln!(
            text,
            "{:<10} {:<5} {:<7} {:>8.1}  {}",
            r["shop"].as_str().unwrap_or("?"),
            r["env"].as_str().unwrap_or("?"),
            if r["ok"] == true { "ok" } else { "FAILED" },
            // A number, not a JSON value: a Value's Display ignores the width.
            r["seconds"].as_f64().unwrap_or(0.0),
            r["error"]
                .as_str()
                .and_then(|e| e.lines().next())
                .unwrap_or("")
        );
    }
    let _ = writeln!(
        text,
        "{} of {total} shops provisioned, {failed} failed, in {:.1} s",
        total - failed,
        started.elapsed().as_secs_f64()
    );
    ctx.result(
        json!({"shops": results, "failed": failed, "total": total,
               "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0}),
        &text,
    );
    if failed > 0 {
        return Err(Error::Reported(format!(
            "{failed} of {total} shops failed (see the table); run the same command again: the others are done and will be skipped"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_and_bad_ones_named_with_their_line() {
        let p = Path::new("shops.csv");
        let rows = parse(
            p,
            "shop,env,stack\n# onboarding wave 3\n12345678,qa\n\n23456789, dev ,small.toml\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 3);
        assert_eq!(rows[1].stack.stack.as_deref(), Some("small.toml"));
        for (text, want) in [
            ("1234567,qa\n", "shops.csv:1: shop"),
            ("12345678,staging\n", "shops.csv:1: env \"staging\""),
            ("12345678\n", "want shop,env[,stack]"),
            (
                "12345678,qa\n12345678,qa\n",
                "shops.csv:2: 12345678 qa is listed twice",
            ),
            ("shop,env\n", "no shops"),
        ] {
            let e = parse(p, text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
