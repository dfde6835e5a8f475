//! The build phase: OS media for the POS app, from the app's kickstart to a root filesystem
//! tarball to a `FROM scratch` image on the host. Media are keyed by app + version +
//! kickstart hash and stored once per region in the poscloud bucket, so the next host loads
//! them instead of building again.

use super::{PhaseState, Site};
use crate::error::{Error, Result};
use crate::remote::results::{self, Build, MediaSource};
use crate::remote::{Inputs, Script};
use crate::spec::{Media, StackSpec};
use crate::ui::Ui;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A yum install of a full OS takes a while on a small instance.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);
/// The host starts its download or upload right away; S3 checks expiry at request start.
const URL_LIFETIME: Duration = Duration::from_secs(3600);

/// The media's objects in the region's bucket: the tarball, then its record (written last,
/// by poscloud, once the upload is complete: a partial upload is never taken for media).
pub fn cache_keys(app: &str, m: &Media) -> (String, String) {
    let base = format!("media/{app}/{}/{}", m.version, m.key);
    (format!("{base}.tar.gz"), format!("{base}.json"))
}

/// The record stored next to cached media.
#[derive(Debug, Serialize, Deserialize)]
pub struct CacheRecord {
    pub key: String,
    pub app: String,
    pub version: String,
    pub kickstart: String,
    pub sha256: String,
    pub bytes: u64,
    pub built_at: crate::time::Time,
    pub built_on: String,
}

/// Whether a build record is of the stack's media.
pub fn current(spec: &StackSpec, st: &PhaseState) -> bool {
    let key = spec
        .pos
        .as_ref()
        .and_then(|p| p.media.as_ref())
        .map(|m| m.key.as_str());
    key.is_some_and(|k| results::parse::<Build>(&st.result).is_ok_and(|r| r.key == k))
}

/// The phase: the media on the host (from the host, the region's cache, or built), recorded.
/// `force` builds even when the host or the cache has them (`image build --force`).
pub async fn run(
    site: &Site<'_>,
    ui: &Ui,
    spec: &StackSpec,
    force: bool,
) -> Result<Option<PhaseState>> {
    let Some(pos) = &spec.pos else {
        return Ok(None);
    };
    let Some(media) = &pos.media else {
        ui.info(format!(
            "build: skipped, {} names a prebuilt image ({})",
            spec.source, pos.image
        ));
        return Ok(None);
    };
    let mut inputs = Inputs::new()
        .set("APP", &pos.app.name)?
        .set("VERSION", &media.version)?
        .set("KEY", &media.key)?
        .set("IMAGE", &media.image)?
        .set("FORCE", if force { "1" } else { "0" })?;
    // Read when the stack loaded: the host gets ready lists, not a kickstart to parse.
    for (name, value) in media.parsed.inputs() {
        inputs = inputs.set(&name, value)?;
    }
    // The region's cache (stacks in AWS only; a --target host keeps its media to itself).
    let cache = match site.aws() {
        Some(aws) => {
            let bucket = aws.output_bucket().await?;
            let (tarball, record) = cache_keys(&pos.app.name, media);
            let cached = match aws.get_object_text(&bucket, &record).await? {
                Some(text) => serde_json::from_str::<CacheRecord>(&text).ok(),
                None => None,
            };
            match cached {
                Some(c) if !force => {
                    let url = aws
                        .presigned_url("GET", &bucket, &tarball, URL_LIFETIME)
                        .await?;
                    inputs = inputs
                        .set("CACHE_GET_URL", url)?
                        .set("CACHE_SHA256", &c.sha256)?;
                }
                _ => {
                    let url = aws
                        .presigned_url("PUT", &bucket, &tarball, URL_LIFETIME)
                        .await?;
                    inputs = inputs.set("CACHE_PUT_URL", url)?;
                }
            }
            Some((aws, bucket, record))
        }
        None => None,
    };

    let step = ui.step(format!(
        "build: {} media {} ({})",
        pos.app, media.version, media.kickstart_source
    ));
    let result = match site
        .run_script_as::<Build>(Script::Build, &inputs, BUILD_TIMEOUT, ui.remote_sink(), |code| {
            let (what, next) = match code {
                3 => (
                    "the cached media do not match their checksum; nothing was imported",
                    "run `poscloud image build --force` to build them again (it replaces the cache)",
                ),
                2 => ("the host refused the build inputs", "check [pos] and the kickstart"),
                _ => ("the media build failed", "read the messages above, fix the kickstart or the host, and run again"),
            };
            (what.into(), next.into())
        })
        .await
    {
        Ok(r) => r,
        Err(e) => {
            step.failed();
            return Err(e);
        }
    };

    // Built and uploaded: record it in the cache, which makes it visible to the next host.
    if let Some((aws, bucket, record)) = &cache {
        let r = &result.fields;
        if r.source == MediaSource::Built && r.uploaded {
            let rec = CacheRecord {
                key: media.key.clone(),
                app: pos.app.name.clone(),
                version: media.version.clone(),
                kickstart: media.kickstart_source.clone(),
                sha256: r.sha256.clone(),
                bytes: r.bytes,
                built_at: crate::journal::now(),
                built_on: site.describe(),
            };
            if rec.sha256.len() != 64 {
                return Err(Error::failed(
                    "build.sh reported no checksum for the media it built",
                ));
            }
            aws.put_object_text(bucket, record, &serde_json::to_string(&rec).expect("json"))
                .await?;
        } else if r.source == MediaSource::Built {
            ui.warn("build: the media could not be uploaded to the region's cache; the next host builds them again");
        }
    }
    let how = match result.fields.source {
        MediaSource::Host => "already on the host",
        MediaSource::Cache => "loaded from the region's cache",
        MediaSource::Built => "built",
    };
    step.done(&format!("{} {how}", media.image));
    site.record_phase(super::Phase::Build, result.json)
        .await
        .map(Some)
}
