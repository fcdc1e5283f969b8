//! The one way a user's picture (PNG, JPEG, WebP) is read, its size and its pixels both
//! upright. Phones store a portrait photo as landscape sensor pixels plus an EXIF
//! `Orientation` tag (6 or 8 held upright, 3 upside down); every consumer (upload checks,
//! face detection, lip-sync, image-to-image, upscale, the render's presenter) reads through
//! here, so none of them sees a phone portrait lying on its side. Pictures reelbox cannot
//! read (HEIC from iPhones, AVIF, GIF, ...) are refused with what to send instead.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

/// Most bytes one picture decode may allocate, whatever its header claims.
const MAX_DECODE_BYTES: u64 = 512 << 20;

/// The formats pictures are read in; the words errors use for them.
const READABLE: &str = "PNG, JPEG or WebP";

/// Why a picture cannot be read; the text is what the user is told after the field's name.
#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    #[error("cannot read the picture: {0}")]
    Io(#[source] std::io::Error),
    #[error(
        "is a HEIC/HEIF picture (an iPhone's default format), which reelbox cannot read: send it as JPEG \
         (share or export it as JPEG, or set the iPhone's Settings › Camera › Formats to Most Compatible)"
    )]
    Heic,
    #[error("is {0}, which reelbox cannot read: send a {READABLE} picture (export or save it as JPEG or PNG)")]
    Unsupported(&'static str),
    #[error("is not a {READABLE} picture")]
    NotAPicture,
    #[error("not a readable image: {0}")]
    Decode(#[source] image::ImageError),
    /// Phone photos (4032×3024 and up) and screenshots meet this first: it says what to do.
    #[error(
        "image is {width}×{height}; limit is {max_side} px a side (limits.max_upload_side): send a smaller copy \
         (a phone's share or export can resize it), or raise limits.max_upload_side in the box's config"
    )]
    TooLarge { width: u32, height: u32, max_side: u32 },
}

/// What a picture's header says, before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    pub format: ImageFormat,
    /// Width and height as the picture is meant to be seen (its orientation applied).
    pub width: u32,
    pub height: u32,
}

/// The header of picture bytes (an upload): format and upright size.
pub fn header(bytes: &[u8]) -> Result<Header, PictureError> {
    Ok(reader(Cursor::new(bytes), Limits::default())?.header())
}

/// The header of a picture file (a stored artifact): format and upright size.
pub fn header_at(path: &Path) -> Result<Header, PictureError> {
    Ok(reader(BufReader::new(File::open(path).map_err(PictureError::Io)?), Limits::default())?.header())
}

/// Checks that picture bytes decode within `max_side` pixels a side (the header's size is
/// refused before decoding: a 12000×12000 PNG compresses to a few hundred KB); returns the
/// header. The pixels are dropped at once: this is the upload check, not a read.
pub fn check(bytes: &[u8], max_side: u32) -> Result<Header, PictureError> {
    let opened = reader(Cursor::new(bytes), decode_limits())?;
    let header = opened.header();
    if header.width > max_side || header.height > max_side {
        return Err(PictureError::TooLarge { width: header.width, height: header.height, max_side });
    }
    DynamicImage::from_decoder(opened.decoder).map_err(PictureError::Decode)?;
    Ok(header)
}

/// Reads a picture file upright as RGB (a transparent part over white, as a viewer shows
/// it). Blocking.
pub fn open(path: &Path) -> Result<RgbImage, PictureError> {
    Ok(over_white(open_as_stored(path)?))
}

/// Reads a picture file upright with its channels as stored, transparency included (an
/// inpainting mask says what to redraw by it). Blocking.
pub fn open_as_stored(path: &Path) -> Result<DynamicImage, PictureError> {
    upright(reader(BufReader::new(File::open(path).map_err(PictureError::Io)?), decode_limits())?)
}

/// [`open_as_stored`] of picture bytes (a picture sent in a request's JSON). Blocking.
pub fn decode_as_stored(bytes: &[u8]) -> Result<DynamicImage, PictureError> {
    upright(reader(Cursor::new(bytes), decode_limits())?)
}

/// The pixels of an opened picture, its orientation applied.
fn upright<D: ImageDecoder>(opened: Opened<D>) -> Result<DynamicImage, PictureError> {
    let orientation = opened.orientation;
    let mut img = DynamicImage::from_decoder(opened.decoder).map_err(PictureError::Decode)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Limits for one decode: the allocation cap, whatever a header claims (sides are checked
/// from the header before, naming the limit; the decoder's own check would only say "exceeds").
fn decode_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// A picture opened to its header: its decoder and the orientation its metadata states.
struct Opened<D> {
    format: ImageFormat,
    decoder: D,
    orientation: Orientation,
}

impl<D: ImageDecoder> Opened<D> {
    fn header(&self) -> Header {
        let (w, h) = self.decoder.dimensions();
        // These four turn the picture a quarter: its sides swap.
        let turned = matches!(
            self.orientation,
            Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
        );
        let (width, height) = if turned { (h, w) } else { (w, h) };
        Header { format: self.format, width, height }
    }
}

/// Opens `source` as a picture in a readable format, with `limits` on its decode.
fn reader<'a, R: BufRead + Seek + 'a>(
    mut source: R,
    limits: Limits,
) -> Result<Opened<impl ImageDecoder + 'a>, PictureError> {
    let format = format_of(&head(&mut source).map_err(PictureError::Io)?)?;
    let mut reader = ImageReader::with_format(source, format);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(PictureError::Decode)?;
    // Damaged metadata leaves the pixels as they are stored, as viewers do.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    Ok(Opened { format, decoder, orientation })
}

/// The first bytes of `source`, which is left at its start.
fn head<R: Read + Seek>(source: &mut R) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(32);
    source.by_ref().take(32).read_to_end(&mut head)?;
    source.seek(SeekFrom::Start(0))?;
    Ok(head)
}

/// The format of a picture from its first 32 bytes (magic bytes alone, nothing decoded);
/// others are refused saying what to send, and what is no picture (audio, video) is
/// `NotAPicture`.
pub fn format_of(head: &[u8]) -> Result<ImageFormat, PictureError> {
    match image::guess_format(head) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => Ok(f),
        Ok(ImageFormat::Avif) => Err(PictureError::Unsupported("an AVIF picture")),
        Ok(other) => Err(PictureError::Unsupported(format_name(other))),
        Err(_) if is_heif(head) => Err(PictureError::Heic),
        Err(_) => Err(PictureError::NotAPicture),
    }
}

/// Whether `head` starts an ISO-BMFF file whose brand is HEIF's (HEIC photos included).
fn is_heif(head: &[u8]) -> bool {
    const BRANDS: [&[u8]; 8] = [b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"];
    head.get(4..8) == Some(b"ftyp".as_slice()) && head.get(8..12).is_some_and(|brand| BRANDS.contains(&brand))
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Gif => "a GIF",
        ImageFormat::Bmp => "a BMP picture",
        ImageFormat::Tiff => "a TIFF picture",
        ImageFormat::Ico => "an icon file",
        _ => "a picture format",
    }
}

/// `img` as RGB; a picture with transparency is laid over white, so a cut-out portrait's
/// background is not whatever colour its invisible pixels happen to store.
fn over_white(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over = |c: u8| ((u32::from(c) * u32::from(a) + 255 * (255 - u32::from(a)) + 127) / 255) as u8;
        image::Rgb([over(r), over(g), over(b)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).expect("png");
        out
    }

    #[test]
    fn an_oversized_picture_is_refused_from_its_header_and_a_fitting_one_decodes() {
        let fits = png(&DynamicImage::new_rgb8(64, 32));
        assert_eq!(check(&fits, 64).expect("fits").width, 64);
        let err = check(&png(&DynamicImage::new_rgb8(65, 8)), 64).expect_err("too wide").to_string();
        assert!(err.contains("65×8") && err.contains("limits.max_upload_side"), "{err}");
        assert!(matches!(check(b"not an image", 64), Err(PictureError::NotAPicture)));
    }

    #[test]
    fn heic_and_other_formats_are_refused_saying_what_to_send() {
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        let err = header(heic).expect_err("heic").to_string();
        assert!(err.contains("HEIC") && err.contains("JPEG") && err.contains("Most Compatible"), "{err}");
        let gif = header(b"GIF89a\x01\0\x01\0\0\0\0").expect_err("gif").to_string();
        assert!(gif.contains("a GIF") && gif.contains(READABLE), "{gif}");
    }

    #[test]
    fn transparent_parts_are_white() {
        let mut rgba = image::RgbaImage::new(2, 1);
        rgba.put_pixel(1, 0, image::Rgba([10, 20, 30, 255]));
        let rgb = over_white(DynamicImage::ImageRgba8(rgba));
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [10, 20, 30]);
    }
}
