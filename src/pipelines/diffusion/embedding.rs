//! Textual-inversion embeddings ("EasyNegative", "badhandv4"): a few learned vectors a prompt
//! names, put in place of its tokens' embeddings before the text encoder's layers run (A1111's
//! `EmbeddingsWithFixes`; ComfyUI's `embedding:NAME`). This reads them from the safetensors
//! files people share (A1111's `emb_params`, SDXL's `clip_l` + `clip_g`, diffusers' one
//! `<token>` tensor) and from the `embedding.safetensors` reelbox's import keeps, and says
//! which of a model's text encoders each one's vectors go to.

use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use super::model::Family;

/// The most vectors an embedding may have: a prompt chunk holds 75 tokens.
pub const MAX_VECTORS: usize = 75;

/// The largest file read as an embedding: 75 vectors for SDXL's both encoders (2048 wide)
/// in f64 are 1.2 MB; a checkpoint or a LoRA is far past it.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// The file an installed embedding keeps its vectors in.
pub const FILE: &str = crate::models::EMBEDDING_FILE;

/// How ComfyUI's prompts name an embedding.
pub const COMFY_EMBEDDING: &str = "embedding:";

/// Why a file is no embedding reelbox can use.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error("{}: not a textual-inversion embedding: {reason}", .path.display())]
    Not { path: PathBuf, reason: String },
    #[error("{}: cannot read it: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why bytes hold no embedding, in words (the file's name is added by [`Embedding::read`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Why(String);

/// Which text encoder a tensor of an embedding is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The one encoder of SD 1.x/2.x (`emb_params`, or a file's only tensor).
    One,
    /// SDXL's first encoder (CLIP ViT-L).
    ClipL,
    /// SDXL's second encoder (OpenCLIP ViT-bigG).
    ClipG,
}

impl Slot {
    /// The tensor's name in reelbox's `embedding.safetensors`.
    pub fn key(self) -> &'static str {
        match self {
            Slot::One => "emb_params",
            Slot::ClipL => "clip_l",
            Slot::ClipG => "clip_g",
        }
    }
}

/// One tensor of an embedding: `vectors × width` values, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    pub slot: Slot,
    pub width: usize,
    pub values: Vec<f32>,
}

/// An embedding by the name prompts call it.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub name: String,
    /// Its tensors: one, or SDXL's two.
    pub tensors: Vec<Vectors>,
}

impl Embedding {
    /// The embedding in the file at `path`, called `name`.
    pub fn read(name: &str, path: &Path) -> Result<Self, EmbeddingError> {
        let io = |source| EmbeddingError::Io { path: path.to_path_buf(), source };
        // A checkpoint is gigabytes: told apart by its size before a byte of it is read.
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_FILE_BYTES {
            let reason = format!("{len} bytes, and an embedding's vectors take at most {MAX_FILE_BYTES}");
            return Err(EmbeddingError::Not { path: path.to_path_buf(), reason });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::from_safetensors(name, &bytes)
            .map_err(|Why(reason)| EmbeddingError::Not { path: path.to_path_buf(), reason })
    }

    /// The embedding in safetensors `bytes`, or why they hold none.
    fn from_safetensors(name: &str, bytes: &[u8]) -> Result<Self, Why> {
        let file = SafeTensors::deserialize(bytes).map_err(|e| Why(format!("not a safetensors file ({e})")))?;
        let mut names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
        names.sort();
        let has = |k: &str| names.iter().any(|n| n == k);
        let picked: Vec<(Slot, &str)> = if has("clip_l") && has("clip_g") {
            vec![(Slot::ClipL, "clip_l"), (Slot::ClipG, "clip_g")]
        } else if has("emb_params") {
            vec![(Slot::One, "emb_params")]
        } else if let [only] = names.as_slice() {
            vec![(Slot::One, only.as_str())]
        } else {
            // A LoRA or a checkpoint has hundreds: the first few say what it is.
            let shown = match names.len() {
                n if n > 4 => format!("{} and {} more", names[..4].join(", "), n - 4),
                _ => names.join(", "),
            };
            return Err(Why(format!(
                "it holds the tensors {shown} (an embedding has emb_params, clip_l and clip_g, or one tensor)"
            )));
        };
        let mut tensors = Vec::with_capacity(picked.len());
        for (slot, key) in picked {
            let view = file.tensor(key).map_err(|e| Why(format!("{key}: {e}")))?;
            let (count, width) = match view.shape() {
                [w] => (1, *w),
                [n, w] => (*n, *w),
                other => return Err(Why(format!("{key} has shape {other:?}, not [vectors, width]"))),
            };
            if count == 0 || count > MAX_VECTORS || width == 0 {
                return Err(Why(format!(
                    "{key} has {count} vectors of {width} (1 to {MAX_VECTORS} vectors fit a prompt)"
                )));
            }
            let values = floats(view.dtype(), view.data())
                .ok_or_else(|| Why(format!("{key} is {:?}, not float", view.dtype())))?;
            if values.len() != count * width || values.iter().any(|v| !v.is_finite()) {
                return Err(Why(format!("{key} holds values that are not finite numbers")));
            }
            tensors.push(Vectors { slot, width, values });
        }
        if let [a, b] = tensors.as_slice()
            && a.values.len() / a.width != b.values.len() / b.width
        {
            return Err(Why("clip_l and clip_g have different numbers of vectors".into()));
        }
        Ok(Embedding { name: name.to_string(), tensors })
    }

    /// How many tokens it takes in a prompt.
    pub fn vectors(&self) -> usize {
        self.tensors.first().map_or(0, |t| t.values.len() / t.width.max(1))
    }

    /// Its vectors' widths, its tensors in order (`[768]`, SDXL's `[768, 1280]`).
    pub fn widths(&self) -> Vec<usize> {
        self.tensors.iter().map(|t| t.width).collect()
    }

    /// The vectors for a text encoder of `family` `width` wide (`second`: SDXL's second):
    /// SDXL's take their own tensor; SD 1.x/2.x's the one tensor, or ComfyUI's way, an SDXL
    /// embedding's tensor of their width.
    pub fn for_encoder(&self, family: Family, second: bool, width: usize) -> Option<&[f32]> {
        let wanted = |t: &&Vectors| match (family, second) {
            (Family::Sdxl, false) => t.slot == Slot::ClipL,
            (Family::Sdxl, true) => t.slot == Slot::ClipG,
            _ => true,
        };
        self.tensors.iter().filter(wanted).find(|t| t.width == width).map(|t| t.values.as_slice())
    }

    /// Writes it as reelbox keeps one: `FILE`, f32, each tensor `[vectors, width]` by its
    /// slot's key.
    pub fn write(&self, path: &Path) -> Result<(), EmbeddingError> {
        let not = |reason: String| EmbeddingError::Not { path: path.to_path_buf(), reason };
        let bytes: Vec<Vec<u8>> =
            self.tensors.iter().map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
        let views = (self.tensors.iter().zip(&bytes))
            .map(|(t, b)| {
                let shape = vec![t.values.len() / t.width.max(1), t.width];
                safetensors::tensor::TensorView::new(Dtype::F32, shape, b).map(|v| (t.slot.key(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| not(e.to_string()))?;
        let out = safetensors::serialize(views, None).map_err(|e| not(e.to_string()))?;
        crate::durable::write(path, &out).map_err(|source| EmbeddingError::Io { path: path.to_path_buf(), source })
    }

    /// Whether a model of `family` whose text encoders are `widths` wide takes it.
    pub fn fits(&self, family: Family, widths: &[usize]) -> bool {
        !widths.is_empty() && widths.iter().enumerate().all(|(i, &w)| self.for_encoder(family, i == 1, w).is_some())
    }

    /// Whether ComfyUI's `embedding:NAME` names it: as a client names any model by its file
    /// (`models::named_by_file`: its name, or the file's stem or the import's name for it, any
    /// case, folders and the extension left out), as ComfyUI names an embedding by its file.
    pub fn names_it(&self, name: &str) -> bool {
        crate::models::named_by_file(name, std::slice::from_ref(&self.name)).is_some()
    }

    /// What it is for, in words: "2 vectors of 768", "2 vectors for SDXL (768 + 1280)".
    pub fn describe(&self) -> String {
        let n = self.vectors();
        let s = if n == 1 { "" } else { "s" };
        match self.widths().as_slice() {
            [w] => format!("{n} vector{s} of {w}"),
            ws => format!(
                "{n} vector{s} for SDXL ({})",
                ws.iter().map(ToString::to_string).collect::<Vec<_>>().join(" + ")
            ),
        }
    }
}

/// `data` of `dtype` as f32 (safetensors stores little-endian), or none for a non-float type.
fn floats(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    let two = |b: &[u8]| [b[0], b[1]];
    Some(match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| f16::from_le_bytes(two(b)).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|b| bf16::from_le_bytes(two(b)).to_f32()).collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        _ => return None,
    })
}

/// A piece of a ComfyUI segment: text, or an embedding's name and the text after it.
pub enum Piece<'a> {
    Text(&'a str),
    Embedding(&'a str, String),
}

/// `text` cut before each `embedding:` that opens it or follows a space or a line break, as
/// ComfyUI cuts a segment; an embedding's piece is its name (to the first whitespace) and
/// the rest of its words joined by single spaces (Python's `split()` and `join`).
pub fn comfy_words(text: &str) -> Vec<Piece<'_>> {
    let mut starts = vec![0];
    for sep in [" ", "\n"] {
        let marker = format!("{sep}{COMFY_EMBEDDING}");
        starts.extend(text.match_indices(&marker).map(|(i, _)| i + sep.len()));
    }
    starts.sort_unstable();
    starts.dedup();
    let mut pieces = Vec::new();
    for (k, &from) in starts.iter().enumerate() {
        let to = starts.get(k + 1).map_or(text.len(), |&next| next - 1);
        let piece = &text[from..to];
        match piece.strip_prefix(COMFY_EMBEDDING) {
            Some(named) => {
                let mut words = named.split_whitespace();
                let word = words.next().unwrap_or("");
                // "embedding:name, more": ComfyUI finds no "name," and tries "name", the
                // commas read on as text.
                let name = word.trim_end_matches(',');
                let rest: Vec<&str> =
                    std::iter::once(&word[name.len()..]).chain(words).filter(|w| !w.is_empty()).collect();
                pieces.push(Piece::Embedding(name, rest.join(" ")));
            }
            None if !piece.is_empty() => pieces.push(Piece::Text(piece)),
            None => {}
        }
    }
    pieces
}

/// The embeddings among `usable` whose names stand in `text` as words of their own, any case,
/// not after `embedding:`: ComfyUI's reading takes them as words, where a prompt written for
/// A1111's means the embedding.
pub fn named_as_words<'a>(text: &str, usable: &[&'a Embedding]) -> Vec<&'a str> {
    let lower = text.to_lowercase();
    let part_of_word = |c: char| c.is_alphanumeric() || "_-".contains(c);
    let stands = |name: &str| {
        let name = name.to_lowercase();
        lower.match_indices(&name).any(|(at, _)| {
            let before = lower[..at].chars().next_back();
            let after = lower[at + name.len()..].chars().next();
            !before.is_some_and(|c| part_of_word(c) || c == ':') && !after.is_some_and(part_of_word)
        })
    };
    usable.iter().filter(|e| !e.name.is_empty() && stands(&e.name)).map(|e| e.name.as_str()).collect()
}

/// Why a prompt naming embedding `name` cannot be drawn with a model whose text encoder
/// `part` takes no embeddings.
pub fn untaken(name: &str, part: &str) -> String {
    format!(
        "names the embedding {name}, and this model's {part} takes no embeddings (an export from the hub, or an \
         import from before embeddings): import its checkpoint or diffusers folder with `reelbox models import` \
         to use them"
    )
}

/// Why ComfyUI's `embedding:NAME` cannot be drawn: `other`, an installed embedding of that
/// name that `what` (a model's text encoder, in words) does not take, or none of that name.
pub fn comfy_refusal(name: &str, other: Option<(&Embedding, &str)>) -> String {
    match other {
        Some((e, what)) => format!(
            "{COMFY_EMBEDDING}{name}: the embedding {} has {}, which {what} does not take",
            e.name,
            e.describe()
        ),
        None if name.is_empty() => format!("{COMFY_EMBEDDING} names no embedding"),
        None => format!(
            "{COMFY_EMBEDDING}{name}: no embedding of that name is installed (import its file with `reelbox models \
             import`)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of f32 `tensors` (name, shape, values).
    fn file(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
        let bytes: Vec<Vec<u8>> =
            tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
        let views = tensors.iter().zip(&bytes).map(|((n, shape, _), b)| {
            (*n, safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), b).expect("view"))
        });
        safetensors::serialize(views, None).expect("serialize")
    }

    #[test]
    fn the_shared_formats_read_as_their_encoders_take_them() {
        let a1111 =
            Embedding::from_safetensors("easy", &file(&[("emb_params", vec![2, 4], vec![1.0; 8])])).expect("a1111");
        assert_eq!((a1111.vectors(), a1111.widths()), (2, vec![4]));
        assert!(a1111.fits(Family::Sd, &[4]) && !a1111.fits(Family::Sd, &[8]) && !a1111.fits(Family::Sdxl, &[4, 8]));
        // diffusers' learned_embeds: one tensor under its token, one vector.
        let one = Embedding::from_safetensors("toy", &file(&[("<toy>", vec![4], vec![0.5; 4])])).expect("diffusers");
        assert_eq!((one.vectors(), one.describe()), (1, "1 vector of 4".to_string()));
        let xl = file(&[("clip_l", vec![3, 4], vec![1.0; 12]), ("clip_g", vec![3, 8], vec![2.0; 24])]);
        let xl = Embedding::from_safetensors("xl", &xl).expect("sdxl");
        assert!(xl.fits(Family::Sdxl, &[4, 8]) && !xl.fits(Family::Sdxl, &[8, 4]));
        assert_eq!(xl.for_encoder(Family::Sdxl, true, 8), Some(&[2.0; 24][..]));
        // ComfyUI's way: an SDXL embedding's tensor of an SD encoder's width.
        assert_eq!(xl.for_encoder(Family::Sd, false, 4), Some(&[1.0; 12][..]));
        assert_eq!(xl.describe(), "3 vectors for SDXL (4 + 8)");
        // Written as reelbox keeps it and read back the same.
        let dir = tempfile::tempdir().expect("tempdir");
        xl.write(&dir.path().join(FILE)).expect("write");
        assert_eq!(Embedding::read("xl", &dir.path().join(FILE)).expect("read"), xl);
    }

    #[test]
    fn what_is_no_embedding_is_refused_saying_why() {
        let why =
            |t: &[(&str, Vec<usize>, Vec<f32>)]| Embedding::from_safetensors("x", &file(t)).expect_err("refused").0;
        assert!(why(&[("a", vec![2], vec![0.0; 2]), ("b", vec![2], vec![0.0; 2])]).contains("a, b ("));
        let many: Vec<(String, Vec<usize>, Vec<f32>)> = (0..9).map(|i| (format!("t{i}"), vec![1], vec![0.0])).collect();
        let many: Vec<(&str, Vec<usize>, Vec<f32>)> =
            many.iter().map(|(n, s, v)| (n.as_str(), s.clone(), v.clone())).collect();
        assert!(why(&many).contains("t0, t1, t2, t3 and 5 more"));
        assert!(why(&[("emb_params", vec![1, 2, 2], vec![0.0; 4])]).contains("[1, 2, 2]"));
        assert!(why(&[("emb_params", vec![76, 1], vec![0.0; 76])]).contains("76 vectors"));
        assert!(why(&[("emb_params", vec![1, 2], vec![f32::NAN, 0.0])]).contains("not finite"));
        let uneven = [("clip_l", vec![1, 2], vec![0.0; 2]), ("clip_g", vec![2, 2], vec![0.0; 4])];
        assert!(why(&uneven).contains("different numbers"));
        assert!(Embedding::from_safetensors("x", b"not one").expect_err("bytes").0.contains("not a safetensors file"));
    }

    #[test]
    fn comfyui_names_an_embedding_by_its_file_and_reads_on_after_it() {
        let e = Embedding { name: "EasyNegative".into(), tensors: Vec::new() };
        assert!(e.names_it("easynegative") && e.names_it("sub/EasyNegative.safetensors") && !e.names_it("Easy"));
        let pieces: Vec<String> = comfy_words("a cat embedding:EasyNegative, ugly\nembedding:x")
            .into_iter()
            .map(|p| match p {
                Piece::Text(t) => format!("text {t:?}"),
                Piece::Embedding(n, rest) => format!("embedding {n:?} then {rest:?}"),
            })
            .collect();
        assert_eq!(
            pieces,
            ["text \"a cat\"", "embedding \"EasyNegative\" then \", ugly\"", "embedding \"x\" then \"\""]
        );
        // A prompt written for A1111 names it as a word, which ComfyUI's reading leaves a word.
        let easy = [&e];
        assert_eq!(named_as_words("ugly, easynegative, blurry", &easy), ["EasyNegative"]);
        assert!(named_as_words("embedding:EasyNegative, EasyNegatives", &easy).is_empty());
        // Only after a space or a line break, as ComfyUI splits.
        assert!(matches!(comfy_words("myembedding:x").as_slice(), [Piece::Text(_)]));
    }
}
