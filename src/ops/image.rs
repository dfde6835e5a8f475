//! The POS images on a shop's host: list, build (the OS media), delete.

use super::locked_site;
use crate::error::Result;
use crate::phases::stage::pos_sh;
use crate::phases::{build, Site};
use crate::remote::results::{self, Build, PosImageDelete, PosImages, Typed};
use crate::spec::StackSpec;
use crate::ui::Ui;

/// `image list`: the host's POS images, which app each is of and what uses it.
pub async fn list(site: &Site<'_>) -> Result<Typed<PosImages>> {
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
) -> Result<Option<Typed<Build>>> {
    locked_site(site, ui, break_lock, async {
        match build::run(site, ui, spec, force).await? {
            Some(st) => results::typed(st.result).map(Some),
            None => Ok(None),
        }
    })
    .await
}

/// `image delete`: refused by the host when a container uses the image.
pub async fn delete(
    site: &Site<'_>,
    ui: &Ui,
    image: &str,
    break_lock: bool,
) -> Result<Typed<PosImageDelete>> {
    locked_site(site, ui, break_lock, async {
        pos_sh(site, "image-delete", &[("IMAGE", image)]).await
    })
    .await
}
