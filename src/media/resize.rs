//! A picture resampled to another size without a model, by the methods ComfyUI's "Upscale
//! Image" nodes offer (`nearest-exact`, `bilinear`, `area`, `bicubic`, `lanczos`), each
//! mapped onto the nearest filter the `image` crate has, and cut to a region first when a
//! caller crops (ComfyUI's centre crop, `center_crop`, which a latent's scale shares). Which
//! size to make is the caller's (`kinds::resize` works it out as ComfyUI rounds it); this file
//! only moves pixels. The methods are named here for latents too, whose own is `bislerp`
//! (`pipelines::diffusion::latent_scale`).

use std::str::FromStr;

use image::RgbImage;
use image::imageops::{self, FilterType};
use serde::{Deserialize, Serialize};

/// How the pixels are resampled, named as ComfyUI names its `upscale_method`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Method {
    NearestExact,
    Bilinear,
    Area,
    Bicubic,
    Lanczos,
    /// ComfyUI's spherical interpolation of a latent's channel vectors: latents only.
    Bislerp,
}

impl Method {
    /// Every method a picture takes, in ComfyUI's order (its first, `nearest-exact`, is its default).
    pub const ALL: [Method; 5] =
        [Method::NearestExact, Method::Bilinear, Method::Area, Method::Bicubic, Method::Lanczos];
    /// Every method a latent takes, in the order of ComfyUI's LatentUpscale (no `lanczos`,
    /// which there makes 8-bit pictures of the latent's values).
    pub const LATENT: [Method; 5] =
        [Method::NearestExact, Method::Bilinear, Method::Area, Method::Bicubic, Method::Bislerp];

    /// The name as ComfyUI and the API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::NearestExact => "nearest-exact",
            Method::Bilinear => "bilinear",
            Method::Area => "area",
            Method::Bicubic => "bicubic",
            Method::Lanczos => "lanczos",
            Method::Bislerp => "bislerp",
        }
    }

    /// Every method's name a picture takes, for lists in messages and node specs.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|m| m.as_str()).collect()
    }

    /// Every method's name a latent takes.
    pub fn latent_names() -> Vec<&'static str> {
        Self::LATENT.iter().map(|m| m.as_str()).collect()
    }
}

impl From<Method> for &'static str {
    fn from(m: Method) -> Self {
        m.as_str()
    }
}

/// A resampling method name that is none of [`Method::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown resize method {0:?}; known: nearest-exact, bilinear, area, bicubic, lanczos (and bislerp for a latent)"
)]
pub struct UnknownMethod(pub String);

impl FromStr for Method {
    type Err = UnknownMethod;
    fn from_str(s: &str) -> Result<Self, UnknownMethod> {
        Self::ALL.into_iter().chain(Self::LATENT).find(|m| m.as_str() == s).ok_or_else(|| UnknownMethod(s.to_string()))
    }
}

impl TryFrom<String> for Method {
    type Error = UnknownMethod;
    fn try_from(s: String) -> Result<Self, UnknownMethod> {
        s.parse()
    }
}

/// A region of a picture, in its pixels: `x`, `y` of its top-left corner and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The middle of a `w`×`h` grid cut to the shape of `new_w`×`new_h`, as ComfyUI's
/// `common_upscale` crops before it scales (`crop: center`): equal strips off both ends of
/// the side that is too long, Python's rounding (halves to even), at least one row or column kept.
pub fn center_crop(w: u32, h: u32, new_w: u32, new_h: u32) -> Region {
    let whole = Region { x: 0, y: 0, width: w, height: h };
    let (wf, hf) = (f64::from(w), f64::from(h));
    let (old_aspect, new_aspect) = (wf / hf, f64::from(new_w) / f64::from(new_h));
    let strip = |side: f64, ratio: f64| ((side - side * ratio) / 2.0).round_ties_even() as u32;
    if old_aspect > new_aspect {
        let x = strip(wf, new_aspect / old_aspect).min(w.saturating_sub(1) / 2);
        Region { x, width: w - 2 * x, ..whole }
    } else if old_aspect < new_aspect {
        let y = strip(hf, old_aspect / new_aspect).min(h.saturating_sub(1) / 2);
        Region { y, height: h - 2 * y, ..whole }
    } else {
        whole
    }
}

/// `img`'s `region` (the whole picture when `None`) resampled to `width`×`height` by `method`.
/// ComfyUI resamples with PyTorch's `interpolate` (and Pillow for `lanczos`); the `image`
/// crate's filters are the nearest to each: `nearest-exact` is the nearest pixel (a whole
/// factor repeats each pixel, as PyTorch's does), `bilinear` a triangle filter, `bicubic`
/// Catmull-Rom (PyTorch's cubic has a = −0.75, Catmull-Rom −0.5), `lanczos` Lanczos3, as
/// Pillow's is. `area` is PyTorch's adaptive average pooling: on a side that shrinks every
/// output pixel averages the box of input pixels it covers, which the crate's `thumbnail`
/// does (a box filter, each input pixel counted in one output pixel); on a side that grows
/// that box holds one input pixel for a whole factor, so it grows as the nearest pixel.
pub fn resize(img: &RgbImage, region: Option<Region>, width: u32, height: u32, method: Method) -> RgbImage {
    let cropped;
    let src = match region {
        Some(r) if (r.width, r.height) != img.dimensions() => {
            cropped = imageops::crop_imm(img, r.x, r.y, r.width, r.height).to_image();
            &cropped
        }
        _ => img,
    };
    let filter = match method {
        Method::NearestExact => FilterType::Nearest,
        Method::Bilinear => FilterType::Triangle,
        Method::Bicubic => FilterType::CatmullRom,
        Method::Lanczos => FilterType::Lanczos3,
        // A picture's resize refuses `bislerp` when it is asked for (`kinds::resize`); were
        // one to come here, the nearest of the crate's filters to an interpolation.
        Method::Bislerp => FilterType::Triangle,
        Method::Area => return area(src, width, height),
    };
    imageops::resize(src, width, height, filter)
}

/// `area`: box-averaged on the sides that shrink, then the nearest pixel on those that grow.
fn area(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = src.dimensions();
    let (shrunk_w, shrunk_h) = (width.min(w), height.min(h));
    let shrunk =
        if (shrunk_w, shrunk_h) == (w, h) { src.clone() } else { imageops::thumbnail(src, shrunk_w, shrunk_h) };
    if (shrunk_w, shrunk_h) == (width, height) {
        return shrunk;
    }
    imageops::resize(&shrunk, width, height, FilterType::Nearest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 37 % 256) as u8, (y * 53 % 256) as u8, ((x + y) * 11) as u8]))
    }

    #[test]
    fn nearest_and_area_double_every_pixel_at_twice_the_size() {
        let small = picture(5, 3);
        for method in [Method::NearestExact, Method::Area] {
            let big = resize(&small, None, 10, 6, method);
            for (x, y, p) in big.enumerate_pixels() {
                assert_eq!(p, small.get_pixel(x / 2, y / 2), "{method:?} at {x},{y}");
            }
        }
    }

    #[test]
    fn area_averages_each_box_when_halving() {
        let img = RgbImage::from_fn(4, 2, |x, _| image::Rgb([if x % 2 == 0 { 100 } else { 200 }, 0, 0]));
        let half = resize(&img, None, 2, 1, Method::Area);
        assert!(half.pixels().all(|p| p.0[0] == 150), "{:?}", half.as_raw());
    }

    #[test]
    fn every_method_makes_the_size_asked_from_the_region_asked() {
        let img = picture(30, 20);
        let region = Region { x: 5, y: 0, width: 20, height: 20 };
        for method in Method::ALL {
            assert_eq!(resize(&img, None, 45, 7, method).dimensions(), (45, 7), "{method:?}");
            let cut = resize(&img, Some(region), 20, 20, method);
            assert_eq!(cut.get_pixel(0, 0), img.get_pixel(5, 0), "{method:?}: the same size is the region itself");
        }
        assert_eq!("lanczos".parse::<Method>(), Ok(Method::Lanczos));
        assert_eq!("bislerp".parse::<Method>(), Ok(Method::Bislerp), "a latent's");
        assert!("nearest".parse::<Method>().is_err());
    }
}
