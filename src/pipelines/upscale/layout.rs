//! Where an upscaler keeps its colour channels. PyTorch exports are NCHW (`[1, 3, H, W]`);
//! exports made for mobile runtimes (Qualcomm AI Hub's, TFLite-derived ones) are often
//! channel-last (`[1, H, W, 3]`). The pipeline works in CHW and converts at the session.

/// The tensor layout of an image input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[1, 3, H, W]`.
    Nchw,
    /// `[1, H, W, 3]`.
    Nhwc,
}

impl Layout {
    /// The layout of a rank-4 RGB tensor's declared dims (negative = dynamic), if it is one:
    /// 3 channels on axis 1 means NCHW, else 3 on axis 3 means NHWC; a fully dynamic
    /// tensor is taken as NCHW, as PyTorch exports it.
    pub fn of(dims: &[i64]) -> Option<Self> {
        match dims {
            [_, 3, _, _] => Some(Self::Nchw),
            [_, _, _, 3] => Some(Self::Nhwc),
            [_, c, _, _] if *c < 0 => Some(Self::Nchw),
            _ => None,
        }
    }

    /// (height, width) axes.
    pub fn spatial_axes(self) -> (usize, usize) {
        match self {
            Self::Nchw => (2, 3),
            Self::Nhwc => (1, 2),
        }
    }

    /// The tensor shape of an `h`×`w` RGB image.
    pub fn shape(self, h: usize, w: usize) -> [usize; 4] {
        match self {
            Self::Nchw => [1, 3, h, w],
            Self::Nhwc => [1, h, w, 3],
        }
    }

    /// The same shape with dynamic (-1) height and width, for reading outputs.
    pub fn any_size(self) -> [i64; 4] {
        match self {
            Self::Nchw => [1, 3, -1, -1],
            Self::Nhwc => [1, -1, -1, 3],
        }
    }

    /// CHW data in this layout.
    pub fn from_chw(self, chw: Vec<f32>, h: usize, w: usize) -> Vec<f32> {
        match self {
            Self::Nchw => chw,
            Self::Nhwc => {
                let plane = h * w;
                (0..plane).flat_map(|p| (0..3).map(move |c| c * plane + p)).map(|i| chw[i]).collect()
            }
        }
    }

    /// Data in this layout as CHW.
    pub fn to_chw(self, data: Vec<f32>, h: usize, w: usize) -> Vec<f32> {
        match self {
            Self::Nchw => data,
            Self::Nhwc => (0..3).flat_map(|c| (0..h * w).map(move |p| p * 3 + c)).map(|i| data[i]).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_come_from_the_channel_axis() {
        assert_eq!(Layout::of(&[1, 3, 128, 128]), Some(Layout::Nchw));
        assert_eq!(Layout::of(&[1, 128, 128, 3]), Some(Layout::Nhwc));
        assert_eq!(Layout::of(&[-1, -1, -1, -1]), Some(Layout::Nchw));
        assert_eq!(Layout::of(&[1, -1, -1, 3]), Some(Layout::Nhwc));
        assert_eq!(Layout::of(&[1, 4, 64, 64]), None, "not RGB");
        assert_eq!(Layout::of(&[1, 3, 64]), None, "not an image");
    }

    #[test]
    fn channel_last_round_trips_and_interleaves() {
        // 2x3 image: channel c, pixel p holds c*10 + p.
        let chw: Vec<f32> = (0..3).flat_map(|c| (0..6).map(move |p| (c * 10 + p) as f32)).collect();
        let hwc = Layout::Nhwc.from_chw(chw.clone(), 2, 3);
        assert_eq!(&hwc[..6], &[0.0, 10.0, 20.0, 1.0, 11.0, 21.0], "pixels interleave their channels");
        assert_eq!(Layout::Nhwc.to_chw(hwc, 2, 3), chw);
        assert_eq!(Layout::Nchw.from_chw(chw.clone(), 2, 3), chw);
    }
}
