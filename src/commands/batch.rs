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
/// `#` comments are skipped; a shop+env twice is refused. `check` judges each good row (its
/// stack file). Every bad row is named, `FILE:LINE: why` each, in one error.
pub fn parse(path: &Path, text: &str, check: impl Fn(&Row) -> Result<()>) -> Result<Vec<Row>> {
    let mut bad = Vec::new();
    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    let mut header = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') || (header && l.starts_with("shop")) {
            continue;
        }
        header = false;
        match row(line, l, &mut seen).and_then(|r| check(&r).map(|()| r).map_err(|e| e.to_string()))
        {
            Ok(r) => rows.push(r),
            Err(why) => bad.push(format!("{}:{line}: {why}", path.display())),
        }
    }
    if !bad.is_empty() {
        if bad.len() > 1 {
            bad.push(format!("({} bad rows; nothing was changed)", bad.len()));
        }
        return Err(Error::usage(bad.join("\n")));
    }
    if rows.is_empty() {
        return Err(Error::usage(format!("{}: no shops in it", path.display())));
    }
    Ok(rows)
}

fn row(
    line: usize,
    l: &str,
    seen: &mut BTreeSet<(String, Env)>,
) -> std::result::Result<Row, String> {
    let cols: Vec<&str> = l.split(',').map(str::trim).collect();
    if !(2..=3).contains(&cols.len()) {
        return Err(format!(
            "{l:?}: want shop,env[,stack] ({} columns)",
            cols.len()
        ));
    }
    let shop: ShopCode = cols[0]
        .parse()
        .map_err(|e| format!("shop {:?}: {e}", cols[0]))?;
    let env = <Env as clap::ValueEnum>::from_str(cols[1], false)
        .map_err(|_| format!("env {:?}: want prod, qa or dev", cols[1]))?;
    let stack = cols.get(2).filter(|s| !s.is_empty()).map(|s| s.to_string());
    if !seen.insert((shop.as_str().to_string(), env)) {
        return Err(format!("{} {} is listed twice", shop.as_str(), env));
    }
    Ok(Row {
        line,
        stack: StackArgs {
            shop,
            env: Some(env),
            stack,
        },
    })
}

pub async fn provision(ctx: &Ctx, args: &ProvisionArgs, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("--shops-file {}: {e}", path.display())))?;
    // Every row and its stack file are checked before the first AWS call.
    let rows = parse(path, &text, |r| {
        StackSpec::load(r.stack.id(), r.stack.stack.as_deref(), args.size).map(|_| ())
    })?;
    // Prod is never changed by omission; a batch has no one plan to show: --yes says it.
    let prod: Vec<String> = rows
        .iter()
        .filter(|r| r.stack.id().env == Env::Prod)
        .map(|r| format!("{}:{} shop {}", path.display(), r.line, r.stack.shop))
        .collect();
    if !prod.is_empty() && !args.approve.yes {
        return Err(Error::usage(format!(
            "{} prod stack(s) in the file, and no --yes: nothing was changed\n  {}",
            prod.len(),
            prod.join("\n  ")
        ))
        .next("check them with `poscloud plan`, then run again with --yes"));
    }
    let total = rows.len();
    ctx.ui.info(format!(
        "provision {total} shops from {}, {} at a time",
        path.display(),
        args.parallel
    ));
    // One configuration for every shop: one credentials lookup (each shop's run gets clients
    // of its own from it, showing its retries under its name).
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
        let notes = ctx.ui.notify().prefixed(format!("{}: ", row.stack.id()));
        let sub = Ctx::capturing(ctx.global.clone(), shared.clone(), notes);
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
        let ok = |_: &Row| Ok(());
        let rows = parse(
            p,
            "shop,env,stack\n# onboarding wave 3\n12345678,qa\n\n23456789, dev ,small.toml\n",
            ok,
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
            let e = parse(p, text, ok).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // Every bad row is named, a row whose stack file `check` refuses as well.
        let e = parse(
            p,
            "1234567,qa\n12345678,qa\n23456789,qa,bad.toml\n34567890,staging\n",
            |r| match r.stack.stack.as_deref() {
                Some(s) => Err(Error::usage(format!("{s}:3:1: disk_gb: too small"))),
                None => Ok(()),
            },
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
        assert_eq!(
            e.to_string()
                .lines()
                .map(|l| &l[..l.len().min(20)])
                .collect::<Vec<_>>(),
            [
                "shops.csv:1: shop \"1",
                "shops.csv:3: bad.tom",
                "shops.csv:4: env \"st",
                "(3 bad rows; nothing",
            ]
        );
    }
}
