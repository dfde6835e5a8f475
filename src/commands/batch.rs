//! `provision --shops-file FILE --parallel N`: every row checked before any AWS call, then
//! `ops::batch`; a table at the end, and a failure's exit code if any shop failed.

use super::Ctx;
use crate::cli::{ProvisionArgs, StackArgs};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::ops;
use crate::spec::{Env, ShopCode, StackId, StackSpec};
use crate::ui::Ui;
use serde_json::json;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

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

pub async fn run(ctx: &Ctx, args: &ProvisionArgs, path: &Path) -> Result<()> {
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
    // Each shop's request, as `provision --shop` would make it (what it skips is not told:
    // the lines of many shops would interleave).
    let quiet = Ui::new(false, true);
    let mut runs = Vec::new();
    for row in rows {
        let mut one = args.clone();
        one.shops_file = None;
        one.shop = Some(row.stack.shop.clone());
        one.env = row.stack.env;
        one.stack = row.stack.stack.clone();
        runs.push(ops::batch::Run {
            line: row.line,
            request: super::request::provision_request(&quiet, &one)?,
        });
    }
    let total = runs.len();
    ctx.ui.info(format!(
        "provision {total} shops from {}, {} at a time",
        path.display(),
        args.parallel
    ));
    // One set of clients for every shop: one connection pool, one credentials lookup.
    let shared = ctx
        .connect(&format!("provision --shops-file {}", path.display()))
        .await?;
    let connect = |id: &StackId, notes| {
        let line = super::command_line("provision", id);
        Ok(shared.for_run(Journal::open(ctx.global.journal.as_deref(), &line)?, notes))
    };
    let report = ops::batch::provision(&ctx.ui, &connect, runs, args.parallel as usize).await;
    let failed = report.failed();
    let mut results = Vec::new();
    let mut text = format!(
        "{:<10} {:<5} {:<7} {:>8}  DETAIL\n",
        "SHOP", "ENV", "RESULT", "SECONDS"
    );
    for r in &report.shops {
        let id = &r.request.spec.id;
        let secs = (r.seconds * 10.0).round() / 10.0;
        let error = r.result.as_ref().err().map(|e| e.to_string());
        let _ = writeln!(
            text,
            "{:<10} {:<5} {:<7} {:>8.1}  {}",
            id.shop.as_str(),
            id.env.as_str(),
            if error.is_none() { "ok" } else { "FAILED" },
            secs,
            error
                .as_deref()
                .and_then(|e| e.lines().next())
                .unwrap_or("")
        );
        results.push(json!({
            "shop": id.shop.as_str(), "env": id.env.as_str(), "line": r.line,
            "ok": error.is_none(), "seconds": secs, "error": error,
            "exit_code": r.result.as_ref().err().map(|e| e.exit_code()),
            "summary": r.result.as_ref().ok().map(|rep| super::provision::document(rep, &r.request.spec).0),
        }));
    }
    let _ = writeln!(
        text,
        "{} of {total} shops provisioned, {failed} failed, in {:.1} s",
        total - failed,
        report.seconds
    );
    ctx.result(
        json!({"shops": results, "failed": failed, "total": total,
               "seconds": (report.seconds * 10.0).round() / 10.0}),
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
