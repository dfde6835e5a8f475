//! The POS images on a shop's host: list, build (the OS media), delete.

use super::locked_site;
use crate::error::Result;
use crate::phases::stage::pos_sh;
use crate::phases::{build, Site};
use crate::spec::StackSpec;
use crate::ui::Ui;

/// `image list`: the host's POS images, which app each is of and what uses it.
pub async fn list(site: &Site<'_>) -> Result<serde_json::Value> {
    pos_sh(site, "images", &[]).await
}

/// `image build`: the stack's OS media built on the host (`force`: even when the region's
/// cache or the host has it); the build's result, or None when there was nothing to do.
pub async fn build(
    site: &Site<'_>,
    ui: &Ui,
    spec: &StackSpec,
    force: bool,
    break_lock: bool,
) -> Result<Option<serde_json::Value>> {
    locked_site(site, ui, break_lock, async {
        let st = build::run(site, ui, spec, force).await?;
        Ok(st.map(|s| s.result))
    })
    .await
}

/// `image delete`: refused by the host when a container uses the image.
pub async fn delete(
    site: &Site<'_>,
    ui: &Ui,
    image: &str,
    break_lock: bool,
) -> Result<serde_json::Value> {
    locked_site(site, ui, break_lock, async {
        pos_sh(site, "image-delete", &[("IMAGE", image)]).await
    })
    .await
}
