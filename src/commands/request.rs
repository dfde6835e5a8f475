//! Turning arguments into validated requests: the reach options, restore sources. Shared by
//! the commands that take them; every check here runs before any AWS call.

use crate::cli::{ProvisionArgs, ReachArgs, RestoreSourceArgs, SourceArgs, Transport};
use crate::error::{Error, Result};
use crate::ops::provision;
use crate::phases::restore::RestoreSpec;
use crate::phases::{stage, Reach};
use crate::remote::ssh::{PinnedKey, SshTarget};
use crate::spec::{App, Env, StackId, StackSpec};
use crate::ui::Ui;
use std::collections::BTreeMap;

/// Reads an OpenSSH public key file (refusing private keys) for pinning.
pub fn public_key_file(flag: &str, f: &std::path::Path) -> Result<PinnedKey> {
    let line = std::fs::read_to_string(f)
        .map_err(|e| Error::usage(format!("{flag} {}: {e}", f.display())))?;
    if line.contains("PRIVATE KEY") {
        return Err(Error::usage(format!(
            "{flag} {} holds a private key; give the public key",
            f.display()
        )));
    }
    PinnedKey::parse(line.trim())
}

/// Checks the reach options (files readable, address well-formed) before any AWS call.
pub fn reach(args: &ReachArgs) -> Result<Reach> {
    let ssh = args
        .ssh
        .as_deref()
        .map(SshTarget::parse_address)
        .transpose()?;
    if let Some(k) = &args.ssh_key {
        std::fs::metadata(k)
            .map_err(|e| Error::usage(format!("--ssh-key {}: {e}", k.display())))?;
    }
    let host_key = args
        .host_key_file
        .as_deref()
        .map(|f| public_key_file("--host-key-file", f))
        .transpose()?;
    let target = match &args.target {
        None => None,
        Some(t) => {
            let rest = t.strip_prefix("ssh://").ok_or_else(|| {
                Error::usage(format!("--target {t:?}: use ssh://user@host[:port]"))
            })?;
            let (user, host, port) = SshTarget::parse_address(rest)?;
            // A host poscloud did not create has no key on record: it must come out of band.
            let host_key = host_key.clone().ok_or_else(|| {
                Error::usage("--target needs --host-key-file: the host's public SSH key, checked out of band (e.g. /etc/ssh/ssh_host_ed25519_key.pub read on its console)")
            })?;
            Some(SshTarget {
                user,
                host,
                port,
                key_file: args.ssh_key.clone(),
                host_key,
            })
        }
    };
    Ok(Reach {
        ssh,
        force_ssh: args.transport == Transport::Ssh,
        ssh_key: args.ssh_key.clone(),
        host_key,
        check_ssm_online: !args.no_ssm_online_check,
        target,
    })
}

/// The validated request: the stack file, reach options and restore source checked, the
/// wanted phases worked out; no AWS call yet.
pub fn provision_request(ui: &Ui, args: &ProvisionArgs) -> Result<provision::Request> {
    let id = args.stack_args().id();
    let spec = StackSpec::load(id, args.stack.as_deref(), args.size)?;
    let reach = reach(&args.reach)?;
    let restore = restore_spec(&spec, &args.restore, &reach)?;
    let wanted = provision::wanted(
        &spec,
        args.until,
        restore.is_some(),
        reach.target.is_some(),
        ui,
    );
    Ok(provision::Request {
        spec,
        reach,
        restore,
        wanted,
        redo: args.redo.clone(),
        dry_run: args.dry_run,
        break_lock: args.break_lock,
        yes: args.approve.yes,
    })
}

/// The restore source of `provision --restore-from`, validated (before any AWS call).
pub fn restore_spec(
    spec: &StackSpec,
    args: &RestoreSourceArgs,
    reach: &Reach,
) -> Result<Option<RestoreSpec>> {
    let Some(from) = &args.from else {
        return Ok(None);
    };
    let pos = spec.pos.as_ref().ok_or_else(|| {
        Error::usage(format!(
            "--restore-from: {} has no [pos] section, so there is no POS data directory to restore into",
            spec.source
        ))
    })?;
    let data_dir = stage::data_dir(pos);
    let r = source_spec(&pos.app, from, Some(&data_dir), &args.auth, reach)?;
    if r.backup().is_some() {
        return Err(Error::usage(format!(
            "--restore-from {from}: a stack's own backups are restored into a running stack: `poscloud pos restore --from {from}`"
        )));
    }
    Ok(Some(r))
}

/// A restore source with its options, validated (also for `pos restore`).
pub fn source_spec(
    app: &App,
    from: &str,
    data_dir: Option<&str>,
    auth: &SourceArgs,
    reach: &Reach,
) -> Result<RestoreSpec> {
    let host_key = auth
        .source_host_key_file
        .as_deref()
        .map(|f| public_key_file("--source-host-key-file", f))
        .transpose()?;
    let r = RestoreSpec::new(
        app,
        from,
        data_dir,
        auth.source_key_file.as_deref(),
        host_key,
        &auth.manifest,
    )?;
    if r.is_s3() && reach.target.is_some() {
        return Err(Error::usage(
            "an s3:// restore source needs AWS; with --target use ssh:// or file://",
        ));
    }
    Ok(r)
}

/// Each env's profile (or the one given for all), loaded before any AWS call so that a bad
/// file is an error up front. Prices, disk size and admin CIDRs do not depend on the shop.
pub fn profiles(stack: Option<&str>) -> Result<BTreeMap<Env, StackSpec>> {
    let mut out = BTreeMap::new();
    for env in [Env::Prod, Env::Qa, Env::Dev] {
        let id = StackId {
            shop: "00000000".parse().expect("shop code"),
            env,
        };
        out.insert(env, StackSpec::load(id, stack, None)?);
    }
    Ok(out)
}
