//! `host connect`: a shell on a shop's Docker host over an SSM session. poscloud finds the
//! instance and hands over to the AWS CLI (`aws ssm start-session`), which needs its Session
//! Manager plugin; no inbound port, no SSH key.

use super::{command_line, Ctx};
use crate::cli::{HostCommand, HostConnectArgs};
use crate::error::{Error, Result};
use crate::spec::{Env, StackId};
use serde_json::json;
use std::path::Path;

pub async fn run(ctx: &Ctx, command: &HostCommand) -> Result<()> {
    match command {
        HostCommand::Connect(a) => connect(ctx, a).await,
    }
}

/// The tools an SSM session needs on this machine.
const TOOLS: &[(&str, &str)] = &[
    ("aws", "the AWS CLI"),
    (
        "session-manager-plugin",
        "the AWS CLI's Session Manager plugin",
    ),
];

async fn connect(ctx: &Ctx, a: &HostConnectArgs) -> Result<()> {
    let id = StackId {
        shop: a.shop.clone(),
        env: a.env.unwrap_or(Env::Prod),
    };
    // Before any AWS call: a missing tool is found in a second, not after discovery.
    if !a.print {
        let missing: Vec<String> = TOOLS
            .iter()
            .filter(|(t, _)| !on_path(t))
            .map(|(t, what)| format!("`{t}` ({what})"))
            .collect();
        if !missing.is_empty() {
            return Err(Error::usage(format!(
                "host connect needs {} on PATH",
                missing.join(" and ")
            ))
            .next("install it (AWS's \"Install the Session Manager plugin for the AWS CLI\"), or add --print to see the command"));
        }
    }
    let aws = ctx.connect(&command_line("host connect", &id)).await?;
    let d = aws.discover(&id).await?;
    let inst = d.instance().ok_or_else(|| {
        Error::failed(format!(
            "{id} has no instance in {}",
            aws.region
        ))
        .next(format!(
            "`poscloud list --region {}` shows the shops there (check --env, --region and --profile)",
            aws.region
        ))
    })?;
    if inst.state != crate::resources::discover::InstanceState::Running {
        return Err(Error::failed(format!(
            "the instance {} of {id} is {}: an SSM session needs it running",
            inst.id, inst.state
        ))
        .next(format!(
            "wait if it is starting; `poscloud status --shop {} --env {}`",
            id.shop, id.env
        )));
    }
    let mut args: Vec<String> = [
        "ssm",
        "start-session",
        "--target",
        &inst.id,
        "--region",
        &aws.region,
    ]
    .map(String::from)
    .to_vec();
    if let Some(p) = &ctx.global.profile {
        args.extend(["--profile".into(), p.clone()]);
    }
    // The same endpoint poscloud found the instance through (an emulator, a VPC endpoint).
    if let Some(e) = &ctx.global.endpoint_url {
        args.extend(["--endpoint-url".into(), e.clone()]);
    }
    if a.print {
        let line = std::iter::once("aws".to_string())
            .chain(args.iter().map(|s| quote(s)))
            .collect::<Vec<_>>()
            .join(" ");
        ctx.result(
            json!({"instance": inst.id, "region": aws.region, "command": std::iter::once("aws".to_string()).chain(args.iter().cloned()).collect::<Vec<_>>()}),
            &format!("{line}\n"),
        );
        return Ok(());
    }
    aws.journal()
        .event("session", json!({"stack": id.name(), "instance": inst.id}));
    ctx.ui.info(format!(
        "host connect: an SSM session on {} ({id}, {}); `exit` ends it",
        inst.id, aws.at
    ));
    use std::os::unix::process::CommandExt;
    // exec: the session gets the terminal and its exit code is poscloud's.
    let e = std::process::Command::new("aws").args(&args).exec();
    Err(Error::failed(format!("cannot run aws: {e}"))
        .next("install the AWS CLI, or add --print to see the command"))
}

/// Is `tool` an executable file in a directory of PATH?
fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        let f = Path::new(&dir).join(tool);
        f.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// A word as a POSIX shell reads it back unchanged.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quote_keeps_plain_words_and_wraps_the_rest() {
        assert_eq!(super::quote("i-0abc"), "i-0abc");
        assert_eq!(
            super::quote("http://127.0.0.1:5000"),
            "http://127.0.0.1:5000"
        );
        assert_eq!(super::quote("my profile"), "'my profile'");
        assert_eq!(super::quote("it's"), r"'it'\''s'");
        assert_eq!(super::quote(""), "''");
    }
}
