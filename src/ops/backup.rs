//! `backup run|list|verify`: one backup now (the host's job, under the stack's lock), the
//! stack's backups as S3 holds them (each archive's summary), and a backup checked against
//! its manifest here, without the host (what a restore would get).

use super::locked_site;
use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::phases::{backup, Site};
use crate::remote::results::{BackupRun, Typed};
use crate::spec::StackId;
use crate::ui::Ui;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;

/// One backup now, as the timer runs it.
pub async fn run(site: &Site<'_>, ui: &Ui, break_lock: bool) -> Result<Typed<BackupRun>> {
    locked_site(site, ui, break_lock, backup::now(site, ui)).await
}

/// A backup in S3: its stamp, its summary (None: the archive has none, its run was cut off
/// before the end), whether the archive is there.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub stamp: String,
    pub summary: Option<BackupRun>,
    pub archive: bool,
}

impl Listed {
    /// Complete and good: what `pos restore --from latest` may use.
    pub fn good(&self) -> Option<&BackupRun> {
        self.summary
            .as_ref()
            .filter(|s| s.result == "ok" && self.archive)
    }
}

/// A backup's objects as listed: its stamp, whether the archive and the summary are there.
struct Stamp {
    stamp: String,
    archive: bool,
    summary: bool,
}

/// The bucket and the stack's backups by stamp, newest first (one listing, no object read).
async fn stamps(aws: &Aws, id: &StackId) -> Result<(String, Vec<Stamp>)> {
    let bucket = aws.output_bucket().await?;
    let prefix = backup::prefix(id);
    let keys = aws.list_keys(&bucket, &prefix, usize::MAX).await?;
    let mut by_stamp: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for k in &keys {
        let name = &k[prefix.len()..];
        if let Some(s) = name.strip_suffix(".tar.gz") {
            by_stamp.entry(s.to_string()).or_default().0 = true;
        } else if let Some(s) = name.strip_suffix(".json") {
            by_stamp.entry(s.to_string()).or_default().1 = true;
        }
    }
    let stamps = by_stamp
        .into_iter()
        .rev()
        .map(|(stamp, (archive, summary))| Stamp {
            stamp,
            archive,
            summary,
        })
        .collect();
    Ok((bucket, stamps))
}

/// A listed backup with its summary read (None: it has none, or none that reads).
async fn listed(aws: &Aws, id: &StackId, bucket: &str, s: Stamp) -> Result<Listed> {
    let summary = if s.summary {
        let key = format!("{}{}.json", backup::prefix(id), s.stamp);
        aws.get_object_text(bucket, &key)
            .await?
            .and_then(|text| serde_json::from_str::<BackupRun>(&text).ok())
    } else {
        None
    };
    Ok(Listed {
        stamp: s.stamp,
        summary,
        archive: s.archive,
    })
}

/// The stack's backups, newest first (read from the region's bucket: no host needed).
pub async fn list(aws: &Aws, id: &StackId) -> Result<(String, Vec<Listed>)> {
    let (bucket, stamps) = stamps(aws, id).await?;
    let all = stream::iter(stamps)
        .map(|s| listed(aws, id, &bucket, s))
        .buffered(8)
        .try_collect()
        .await?;
    Ok((bucket, all))
}

/// The newest good backup that `accept` takes, reading summaries newest first and stopping
/// at it (a year of backups is some 80 objects: most runs want one); with the bucket and
/// how many backups are listed.
pub async fn newest_good(
    aws: &Aws,
    id: &StackId,
    accept: impl Fn(&BackupRun) -> bool,
) -> Result<(String, Option<BackupRun>, usize)> {
    let (bucket, stamps) = stamps(aws, id).await?;
    let n = stamps.len();
    for s in stamps.into_iter().filter(|s| s.archive && s.summary) {
        if let Some(b) = listed(aws, id, &bucket, s).await?.good() {
            if accept(b) {
                return Ok((bucket, Some(b.clone()), n));
            }
        }
    }
    Ok((bucket, None, n))
}

/// Which backup: the newest good one, or the one of a stamp (`backup:TIME`).
pub async fn find(aws: &Aws, id: &StackId, stamp: Option<&str>) -> Result<(String, BackupRun)> {
    let (bucket, found, n) = newest_good(aws, id, |b| stamp.is_none_or(|s| b.stamp == s)).await?;
    let what = stamp.map_or("no complete backup".to_string(), |s| {
        format!("no complete backup {s}")
    });
    found.map(|b| (bucket.clone(), b)).ok_or_else(|| {
        Error::usage(format!(
            "{what} of {id} in s3://{bucket}/{} ({n} listed)",
            backup::prefix(id),
        ))
        .next(format!(
            "poscloud backup list --shop {} --env {}",
            id.shop, id.env
        ))
    })
}

/// What `backup verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub stamp: String,
    pub archive: String,
    pub files: usize,
    /// What does not match, one line each (empty: the backup is good).
    pub problems: Vec<String>,
}

/// Downloads the backup's archive and checks it: its checksum against the summary, every
/// file against the manifest inside, no file unlisted, the count as recorded.
pub async fn verify(aws: &Aws, id: &StackId, stamp: Option<&str>) -> Result<Verified> {
    let (bucket, b) = match stamp {
        Some(s) => {
            let (bucket, stamps) = stamps(aws, id).await?;
            let st = stamps.into_iter().find(|l| l.stamp == s).ok_or_else(|| {
                Error::usage(format!("no backup {s} of {id}")).next(format!(
                    "poscloud backup list --shop {} --env {}",
                    id.shop, id.env
                ))
            })?;
            let l = listed(aws, id, &bucket, st).await?;
            match l.summary {
                Some(b) if l.archive => (bucket, b),
                _ => {
                    return Err(Error::failed(format!(
                        "backup {s} of {id} is incomplete (its run was cut off: {}): it cannot be restored",
                        if l.archive { "no summary" } else { "no archive" }
                    ))
                    .next("use another backup (`backup list`); the next run makes a new one"))
                }
            }
        }
        None => find(aws, id, None).await?,
    };
    let path = std::env::temp_dir().join(format!(
        "poscloud-verify-{}-{}.tar.gz",
        std::process::id(),
        b.stamp
    ));
    struct Remove<'a>(&'a std::path::Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove(&path);
    aws.download(&bucket, &b.archive, &path).await?;
    let p = path.clone();
    let summary = b.clone();
    let (files, problems) = tokio::task::spawn_blocking(move || check_archive(&p, &summary))
        .await
        .map_err(|e| Error::failed(format!("verify: {e}")))??;
    Ok(Verified {
        stamp: b.stamp,
        archive: format!("s3://{bucket}/{}", b.archive),
        files,
        problems,
    })
}

/// The archive at `path` against `summary` and the manifest it holds: (files, problems).
fn check_archive(path: &std::path::Path, summary: &BackupRun) -> Result<(usize, Vec<String>)> {
    let io = |e: std::io::Error| Error::failed(format!("reading the archive: {e}"));
    let mut problems = Vec::new();
    let sha = sha256_of(std::fs::File::open(path).map_err(io)?).map_err(io)?;
    if sha != summary.sha256 {
        problems.push(format!(
            "the archive's sha256 is {sha}, its summary says {}",
            summary.sha256
        ));
    }
    let f = std::fs::File::open(path).map_err(io)?;
    let mut files: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    let mut manifest: Option<Vec<u8>> = None;
    // An archive that cannot be read is a finding, not an error of this command.
    let read = (|| -> std::io::Result<()> {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        for entry in tar.entries()? {
            let mut entry = entry?;
            let name = normalized(&entry.path_bytes()).to_vec();
            if !entry.header().entry_type().is_file() {
                continue;
            }
            if name == b"MANIFEST.sha256" {
                let mut m = Vec::new();
                entry.read_to_end(&mut m)?;
                manifest = Some(m);
                continue;
            }
            let sha = sha256_of(&mut entry)?;
            if files.insert(name.clone(), sha).is_some() {
                problems.push(format!("twice in the archive: {}", shown(&name)));
            }
        }
        Ok(())
    })();
    if let Err(e) = read {
        problems.push(format!("the archive cannot be read as a .tar.gz: {e}"));
        return Ok((files.len(), problems));
    }
    let Some(manifest) = manifest else {
        problems.push("no MANIFEST.sha256 in the archive".into());
        return Ok((files.len(), problems));
    };
    let mut listed = BTreeMap::new();
    for (n, line) in manifest.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match manifest_line(line) {
            Some((hash, name)) => {
                listed.insert(normalized(&name).to_vec(), hash);
            }
            None => problems.push(format!("manifest line {} is not '<sha256>  <path>'", n + 1)),
        }
    }
    for (name, want) in &listed {
        match files.get(name) {
            None => problems.push(format!("missing: {}", shown(name))),
            Some(got) if got != want => problems.push(format!("mismatch: {}", shown(name))),
            Some(_) => {}
        }
    }
    for name in files.keys().filter(|n| !listed.contains_key(*n)) {
        problems.push(format!("unlisted: {}", shown(name)));
    }
    if listed.len() as u64 != summary.files {
        problems.push(format!(
            "the manifest lists {} files, the summary says {}",
            listed.len(),
            summary.files
        ));
    }
    Ok((files.len(), problems))
}

/// The sha256 of what `r` reads, in hex.
fn sha256_of(mut r: impl Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        match r.read(&mut buf)? {
            0 => break,
            n => h.update(&buf[..n]),
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A name without its leading "./" (as find and tar write them).
fn normalized(mut n: &[u8]) -> &[u8] {
    while let Some(rest) = n.strip_prefix(b"./") {
        n = rest;
    }
    n
}

/// One sha256sum line: `HASH  NAME`, or `\HASH  NAME` with `\\` and `\n` escaped in NAME.
fn manifest_line(line: &[u8]) -> Option<(String, Vec<u8>)> {
    let (escaped, line) = match line.strip_prefix(b"\\") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    if line.len() < 67 || !line[..64].iter().all(u8::is_ascii_hexdigit) || line[64] != b' ' {
        return None;
    }
    if !matches!(line[65], b' ' | b'*') {
        return None;
    }
    let hash = String::from_utf8_lossy(&line[..64]).to_ascii_lowercase();
    let raw = &line[66..];
    if !escaped {
        return Some((hash, raw.to_vec()));
    }
    let mut name = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&c) = it.next() {
        if c == b'\\' {
            match it.next() {
                Some(b'\\') => name.push(b'\\'),
                Some(b'n') => name.push(b'\n'),
                _ => return None,
            }
        } else {
            name.push(c);
        }
    }
    Some((hash, name))
}

/// A name on one line (the manifest's escaping), for messages.
fn shown(n: &[u8]) -> String {
    String::from_utf8_lossy(n)
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_lines_as_sha256sum_writes_them() {
        let h = "a".repeat(64);
        assert_eq!(
            manifest_line(format!("{h}  ./a b").as_bytes()),
            Some((h.clone(), b"./a b".to_vec()))
        );
        assert_eq!(
            manifest_line(format!("\\{h}  ./new\\nline\\\\x").as_bytes()),
            Some((h.clone(), b"./new\nline\\x".to_vec()))
        );
        assert_eq!(manifest_line(format!("\\{h}  ./bad\\t").as_bytes()), None);
        assert_eq!(manifest_line(b"not a line"), None);
    }
}
