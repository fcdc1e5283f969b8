//! The pictures an img2img request sends as base64 text: each checked and kept as an upload
//! artifact of the caller, as native uploads are (`comfy::files::store_picture`: durable,
//! counted against the key's storage quota), and the mask read as A1111 reads one
//! ([`a1111_mask`]) before it is kept in the form the native `mask` reads: white redraws.

use base64::Engine;
use image::{DynamicImage, GrayImage, imageops};

use super::error::A1111Error;
use crate::api::AppState;
use crate::api::artifacts::checked_image;
use crate::api::auth::Caller;
use crate::api::comfy::files::store_picture;
use crate::api::upload_form::too_large;
use crate::media::picture::{Header, PictureError, decode_as_stored};
use crate::store::records::Artifact;

/// The bytes of a picture sent as base64 in `field` (a `data:image/…;base64,` prefix is
/// allowed, as A1111 allows it), held to `limits.max_upload_bytes`.
pub(super) fn decoded(state: &AppState, field: &str, text: &str) -> Result<Vec<u8>, A1111Error> {
    let text = text.trim();
    if text.starts_with("http://") || text.starts_with("https://") {
        return Err(A1111Error::field(
            field,
            "reelbox takes the picture itself, as base64, not a URL to fetch it from",
        ));
    }
    let text = match text.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').map_or(rest, |(_, data)| data),
        None => text,
    };
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    // Base64 is 4 characters for every 3 bytes: a text past this cannot be a picture in the limit.
    let limits = &state.config.limits;
    if clean.len() / 4 * 3 > limits.max_upload_bytes.saturating_add(3) {
        return Err(A1111Error::from(too_large(field, limits)));
    }
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| A1111Error::field(field, format!("is not base64: {e}")))
}

/// A picture's header after the upload checks (`limits.max_upload_side`, a readable format).
async fn checked(state: &AppState, field: &str, bytes: &[u8]) -> Result<Header, A1111Error> {
    checked_image(state, bytes).await.map_err(|e| A1111Error::field(field, e))
}

/// The picture sent in `field`, kept as the caller's upload; its artifact and header.
pub async fn init_picture(
    state: &AppState,
    caller: &Caller,
    field: &str,
    text: &str,
) -> Result<(Artifact, Header), A1111Error> {
    let bytes = decoded(state, field, text)?;
    let header = checked(state, field, &bytes).await?;
    let name = format!("img2img.{}", header.format.extensions_str().first().copied().unwrap_or("png"));
    let artifact = store_picture(state, caller, &name, bytes, &header).await?;
    Ok((artifact, header))
}

/// The mask sent as `mask`, read as A1111 reads it (inverted when `invert`), at the size of
/// the picture it masks (`width`×`height`), kept as the caller's upload.
pub async fn mask_picture(
    state: &AppState,
    caller: &Caller,
    text: &str,
    invert: bool,
    (width, height): (u32, u32),
) -> Result<Artifact, A1111Error> {
    let bytes = decoded(state, "mask", text)?;
    checked(state, "mask", &bytes).await?;
    let png = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, PictureError> {
        let gray = a1111_mask(&decode_as_stored(&bytes)?, invert, (width, height));
        let mut png = Vec::new();
        DynamicImage::ImageLuma8(gray)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(PictureError::Decode)?;
        Ok(png)
    })
    .await
    .map_err(|e| A1111Error::internal(format!("the mask's reading stopped: {e}")))?
    .map_err(|e| A1111Error::field("mask", e))?;
    let header = checked(state, "mask", &png).await?;
    Ok(store_picture(state, caller, "mask.png", png, &header).await?)
}

/// A mask picture as A1111 reads it (its `create_binary_mask`), white redrawing: one with
/// transparency by its alpha, opaque redrawing, cut at half (A1111's default `mask_round`);
/// one without by its brightness. Inverted when `invert` (`inpainting_mask_invert: 1`), and
/// stretched to `width`×`height` when it is another size, as A1111 resizes it to the picture.
pub fn a1111_mask(mask: &DynamicImage, invert: bool, (width, height): (u32, u32)) -> GrayImage {
    let rgba = mask.color().has_alpha().then(|| mask.to_rgba8());
    let mut gray = match rgba.filter(|m| m.pixels().any(|p| p[3] != u8::MAX)) {
        Some(m) => GrayImage::from_fn(m.width(), m.height(), |x, y| {
            image::Luma([if m.get_pixel(x, y)[3] > 128 { u8::MAX } else { 0 }])
        }),
        None => mask.to_luma8(),
    };
    if invert {
        imageops::invert(&mut gray);
    }
    if gray.dimensions() != (width, height) {
        gray = imageops::resize(&gray, width, height, imageops::FilterType::Triangle);
    }
    gray
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgba, RgbaImage};

    #[test]
    fn a_mask_reads_by_alpha_when_it_has_transparency_else_by_brightness() {
        // Opaque left half, transparent right: A1111 redraws the opaque part.
        let by_alpha = RgbaImage::from_fn(4, 2, |x, _| Rgba([0, 0, 0, if x < 2 { 255 } else { 0 }]));
        let gray = a1111_mask(&DynamicImage::ImageRgba8(by_alpha), false, (4, 2));
        assert_eq!(gray.get_pixel(0, 0), &Luma([255]));
        assert_eq!(gray.get_pixel(3, 1), &Luma([0]));
        let white_left = GrayImage::from_fn(4, 2, |x, _| Luma([if x < 2 { 255 } else { 0 }]));
        let inverted = a1111_mask(&DynamicImage::ImageLuma8(white_left), true, (8, 4));
        assert_eq!(inverted.dimensions(), (8, 4));
        assert_eq!((inverted.get_pixel(0, 0), inverted.get_pixel(7, 3)), (&Luma([0]), &Luma([255])));
    }
}
