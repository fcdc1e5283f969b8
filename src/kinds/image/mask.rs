//! An `image` job's `mask` (inpainting): checked at submission against its `init_image`
//! (the user's own picture, of the same size), read when the `generate` stage runs.

use image::DynamicImage;

use crate::kinds::inputs::{InputFile, Takes, input_file, require_input};
use crate::kinds::{ParamError, StageError, StageRun, ValidateCtx};
use crate::media::picture::{Header, header_at, open_as_stored};

/// Checks that `mask` is the submitter's picture of the size of `picture` (the `init_image`).
pub(super) fn require_mask(ctx: &ValidateCtx, picture: &InputFile, mask: &str) -> Result<(), ParamError> {
    let mask = require_input(ctx, "mask", mask, Takes::Picture)?;
    let size = |field: &str, file: &InputFile| {
        header_at(&file.path).map_err(|e| ParamError::new(field, format!("{}: {e}", file.label)))
    };
    let (Header { width: pw, height: ph, .. }, Header { width: mw, height: mh, .. }) =
        (size("init_image", picture)?, size("mask", &mask)?);
    if (mw, mh) != (pw, ph) {
        return Err(ParamError::new(
            "mask",
            format!(
                "is {mw}×{mh}; it must be the size of init_image, {pw}×{ph} (a mask says which of its pixels to redraw)"
            ),
        ));
    }
    Ok(())
}

/// The mask picture artifact `id` names, upright, its transparency kept.
pub(super) fn open(run: &StageRun, id: &str) -> Result<DynamicImage, StageError> {
    let file = input_file(run, "mask", id)?;
    open_as_stored(&file.path).map_err(|e| StageError::context(format!("{} is not a readable image", file.label), e))
}
