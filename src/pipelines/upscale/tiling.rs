//! Tile plans for super-resolution: which input window each tile reads and which part of
//! its output is kept, so large images fit in memory and fixed-size models see any image.
//! Follows Real-ESRGAN's `tile_process`: each tile's core is read with `pad` pixels of
//! context on every side (clipped at the image edge) and only the core is kept.

/// One tile along one axis, in input pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The part of the output this tile owns: `[core_start, core_end)`.
    pub core_start: u32,
    pub core_end: u32,
    /// The input read for it: `[read_start, read_start + read_len)`, inside the image.
    pub read_start: u32,
    pub read_len: u32,
    /// Length the model is given: `read_len`, or the model's fixed size (edge-padded).
    pub model_len: u32,
}

/// Tiles along an axis of `len` pixels. `core` is the tile size, `pad` the context on each
/// side. With a `fixed` model size, cores shrink to `fixed − 2·pad` and each read window
/// is a full `fixed` pixels slid inside the image (more real context, no artificial edge)
/// unless the image is smaller, in which case it is edge-padded up to `fixed`.
pub fn axis_spans(len: u32, core: u32, pad: u32, fixed: Option<u32>) -> Vec<Span> {
    if len == 0 {
        return Vec::new();
    }
    if let Some(f) = fixed.filter(|&f| len <= f) {
        // One window holds the whole axis: a single tile, edge-padded up to the model size.
        return vec![Span { core_start: 0, core_end: len, read_start: 0, read_len: len, model_len: f }];
    }
    let (core, pad) = match fixed {
        Some(f) => {
            // Keep at least half the window as core, so tiles always advance.
            let pad = pad.min(f / 4);
            (f - 2 * pad, pad)
        }
        None => (core.max(1), pad),
    };
    let mut out = Vec::new();
    let mut start = 0;
    while start < len {
        let end = (start + core).min(len);
        let span = match fixed {
            Some(f) => {
                let read_start = start.saturating_sub(pad).min(len - f);
                Span { core_start: start, core_end: end, read_start, read_len: f, model_len: f }
            }
            None => {
                let read_start = start.saturating_sub(pad);
                let read_len = (end + pad).min(len) - read_start;
                Span { core_start: start, core_end: end, read_start, read_len, model_len: read_len }
            }
        };
        out.push(span);
        start = end;
    }
    out
}

/// A 2-D tile: a column span and a row span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub x: Span,
    pub y: Span,
}

/// All tiles of a `width`×`height` image, row by row.
pub fn plan_tiles(width: u32, height: u32, core: u32, pad: u32, fixed: Option<(u32, u32)>) -> Vec<Tile> {
    let xs = axis_spans(width, core, pad, fixed.map(|f| f.1));
    let ys = axis_spans(height, core, pad, fixed.map(|f| f.0));
    ys.iter().flat_map(|&y| xs.iter().map(move |&x| Tile { x, y })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pixel is owned by exactly one tile and read with its context.
    fn check_cover(len: u32, spans: &[Span], pad: u32) {
        let mut owned = vec![0; len as usize];
        for s in spans {
            for p in s.core_start..s.core_end {
                owned[p as usize] += 1;
            }
            assert!(s.read_start <= s.core_start && s.core_end <= s.read_start + s.read_len, "{s:?}");
            assert!(s.read_start + s.read_len <= len, "{s:?}");
            let left_ctx = s.core_start - s.read_start;
            assert!(left_ctx >= pad.min(s.core_start), "{s:?}");
        }
        assert!(owned.iter().all(|&n| n == 1), "{owned:?}");
    }

    #[test]
    fn dynamic_tiles_match_real_esrgan() {
        let spans = axis_spans(100, 32, 10, None);
        assert_eq!(spans.len(), 4);
        assert_eq!(spans[1], Span { core_start: 32, core_end: 64, read_start: 22, read_len: 52, model_len: 52 });
        assert_eq!(spans[3], Span { core_start: 96, core_end: 100, read_start: 86, read_len: 14, model_len: 14 });
        check_cover(100, &spans, 10);
    }

    #[test]
    fn fixed_windows_slide_inside_the_image() {
        let spans = axis_spans(200, 0, 10, Some(64));
        check_cover(200, &spans, 10);
        assert!(spans.iter().all(|s| s.read_len == 64 && s.model_len == 64));
        assert_eq!(spans[0].read_start, 0);
        assert_eq!(spans.last().map(|s| s.read_start), Some(136));
    }

    #[test]
    fn images_smaller_than_a_fixed_model_are_padded_up() {
        let spans = axis_spans(50, 0, 10, Some(64));
        assert_eq!(spans, vec![Span { core_start: 0, core_end: 50, read_start: 0, read_len: 50, model_len: 64 }]);
        assert_eq!(plan_tiles(200, 150, 0, 10, Some((64, 64))).len(), 5 * 4);
    }
}
