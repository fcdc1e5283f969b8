//! The demo shapes model's palette and the colour evaluator its quality gates use.

use image::RgbImage;

/// Colour names with their RGB, from `models/demo/shapes/palette.json`.
pub type Palette = Vec<(String, [f32; 3])>;

/// Loads the palette the demo images were drawn with.
pub fn load() -> Palette {
    let path = super::source_tree().join("models/demo/shapes/palette.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).expect("palette")).expect("json");
    v["colours"]
        .as_object()
        .expect("colours")
        .iter()
        .map(|(k, c)| (k.clone(), [0, 1, 2].map(|i| c[i].as_f64().unwrap_or(0.0) as f32)))
        .collect()
}

/// Per palette colour, the share of pixels nearest to it (counted only within `max_dist`
/// in RGB distance).
pub fn shares(img: &RgbImage, palette: &Palette, max_dist: f32) -> Vec<(String, f32)> {
    let mut counts = vec![0usize; palette.len()];
    for p in img.pixels() {
        let (best, dist) = palette
            .iter()
            .enumerate()
            .map(|(i, (_, c))| (i, (0..3).map(|k| (f32::from(p[k]) - c[k]).powi(2)).sum::<f32>().sqrt()))
            .fold((0, f32::MAX), |a, b| if b.1 < a.1 { b } else { a });
        if dist <= max_dist {
            counts[best] += 1;
        }
    }
    let n = (img.width() * img.height()) as f32;
    palette.iter().zip(counts).map(|((name, _), c)| (name.clone(), c as f32 / n)).collect()
}

/// The colour with the largest share.
pub fn dominant(shares: &[(String, f32)]) -> &str {
    shares.iter().fold(("", -1.0), |a, (n, s)| if *s > a.1 { (n.as_str(), *s) } else { a }).0
}
