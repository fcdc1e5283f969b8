//! Images in a plain terminal: each cell shows two pixels with the upper half block `▀`
//! (foreground = top pixel, background = bottom pixel), which any SSH terminal with
//! true colour draws. Under `NO_COLOR` a brightness ramp of ASCII characters stands in.

use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};

use crate::tui::event::Preview;

/// Largest preview kept in memory, pixels; the terminal never shows more.
pub const MAX_SIDE: u32 = 192;

/// Decodes image bytes into a preview no larger than [`MAX_SIDE`].
pub fn decode(artifact: &str, bytes: &[u8]) -> Option<Preview> {
    let img = image::load_from_memory(bytes).ok()?;
    let small = if img.width() > MAX_SIDE || img.height() > MAX_SIDE { img.thumbnail(MAX_SIDE, MAX_SIDE) } else { img };
    let rgb = small.to_rgb8();
    Some(Preview { artifact: artifact.to_string(), width: rgb.width(), height: rgb.height(), rgb: rgb.into_raw() })
}

/// Cells (columns, rows) the image takes inside `cols`×`rows`, keeping its aspect ratio
/// (a cell is about twice as tall as wide, hence two pixels per row).
pub fn fit(p: &Preview, cols: u16, rows: u16) -> (u16, u16) {
    if p.width == 0 || p.height == 0 || cols == 0 || rows == 0 {
        return (0, 0);
    }
    let scale = (f64::from(cols) / f64::from(p.width)).min(f64::from(rows) * 2.0 / f64::from(p.height));
    let w = (f64::from(p.width) * scale).round().clamp(1.0, f64::from(cols)) as u16;
    let h = (f64::from(p.height) * scale / 2.0).round().clamp(1.0, f64::from(rows)) as u16;
    (w, h)
}

/// The preview as lines of half blocks within `cols`×`rows` (nearest-neighbour sampling).
pub fn lines(p: &Preview, cols: u16, rows: u16, color: bool) -> Vec<Line<'static>> {
    const RAMP: &[u8] = b" .:-=+*#%@";
    let (w, h) = fit(p, cols, rows);
    let pixel = |x: u16, y: u32| -> [u8; 3] {
        let sx = ((u32::from(x) * p.width) / u32::from(w.max(1))).min(p.width - 1);
        let sy = ((y * p.height) / (u32::from(h.max(1)) * 2)).min(p.height - 1);
        let i = ((sy * p.width + sx) * 3) as usize;
        match p.rgb.get(i..i + 3) {
            Some(px) => [px[0], px[1], px[2]],
            None => [0, 0, 0],
        }
    };
    (0..h)
        .map(|row| {
            let spans: Vec<Span> = (0..w)
                .map(|x| {
                    let top = pixel(x, u32::from(row) * 2);
                    let bottom = pixel(x, u32::from(row) * 2 + 1);
                    if color {
                        Span::styled(
                            "▀",
                            Style::default()
                                .fg(Color::Rgb(top[0], top[1], top[2]))
                                .bg(Color::Rgb(bottom[0], bottom[1], bottom[2])),
                        )
                    } else {
                        let luma =
                            |c: [u8; 3]| 0.299 * f64::from(c[0]) + 0.587 * f64::from(c[1]) + 0.114 * f64::from(c[2]);
                        let l = (luma(top) + luma(bottom)) / 2.0 / 255.0;
                        let i = ((l * (RAMP.len() - 1) as f64).round() as usize).min(RAMP.len() - 1);
                        Span::raw(char::from(RAMP[i]).to_string())
                    }
                })
                .collect();
            Line::from(spans)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker() -> Preview {
        // 4×4: top half white, bottom half black.
        let mut rgb = Vec::new();
        for y in 0..4 {
            for _ in 0..4 {
                rgb.extend_from_slice(if y < 2 { &[255, 255, 255] } else { &[0, 0, 0] });
            }
        }
        Preview { artifact: "a".into(), width: 4, height: 4, rgb }
    }

    #[test]
    fn each_cell_carries_two_pixel_rows() {
        let p = checker();
        assert_eq!(fit(&p, 4, 10), (4, 2));
        let l = lines(&p, 4, 10, true);
        assert_eq!(l.len(), 2);
        let first = &l[0].spans[0];
        assert_eq!(first.content, "▀");
        assert_eq!(first.style.fg, Some(Color::Rgb(255, 255, 255)));
        assert_eq!(first.style.bg, Some(Color::Rgb(255, 255, 255)));
        assert_eq!(l[1].spans[0].style.bg, Some(Color::Rgb(0, 0, 0)));
    }

    #[test]
    fn no_color_uses_a_brightness_ramp() {
        let l = lines(&checker(), 4, 10, false);
        assert_eq!(l[0].spans.iter().map(|s| s.content.as_ref()).collect::<String>(), "@@@@");
        assert_eq!(l[1].spans.iter().map(|s| s.content.as_ref()).collect::<String>(), "    ");
    }

    #[test]
    fn wide_images_keep_their_aspect_ratio() {
        let p = Preview { artifact: "a".into(), width: 320, height: 180, rgb: vec![0; 320 * 180 * 3] };
        assert_eq!(fit(&p, 32, 20), (32, 9));
    }

    #[test]
    fn decode_shrinks_big_images() {
        let img = image::RgbImage::from_pixel(800, 400, image::Rgb([10, 20, 30]));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).expect("encode");
        let p = decode("x", &png).expect("decodes");
        assert_eq!((p.width, p.height), (192, 96));
        assert_eq!(&p.rgb[..3], &[10, 20, 30]);
    }
}
