//! The CLIP tokenizer of a Stable Diffusion model, built with the `tokenizers` crate from
//! `vocab.json` + `merges.txt` exactly as transformers' `CLIPTokenizer` builds its backend:
//! NFC, whitespace runs to one space, lowercase; CLIP's split pattern then byte-level
//! pre-tokenization; BPE with `</w>` on a word's last piece. Special tokens (and their
//! ids) come from the model's own tokenizer files.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, BpeBuilder, Merges, Vocab};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// CLIP's pre-tokenization pattern (transformers' `CLIPTokenizer`).
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
/// Sequence length of every Stable Diffusion text encoder.
pub const DEFAULT_MAX_LENGTH: usize = 77;

/// Why a tokenizer could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: FileCause,
    },
    #[error("tokenizer in {dir}: special token {token:?} ({role}) is not in its vocabulary")]
    MissingSpecial { dir: PathBuf, role: &'static str, token: String },
    /// The tokenizers library refused a part (`what`) of the tokenizer, or a prompt.
    #[error("tokenizer in {dir}: {what}: {source}")]
    Build {
        dir: PathBuf,
        what: &'static str,
        #[source]
        source: tokenizers::Error,
    },
}

/// Why a tokenizer file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileCause {
    #[error("missing")]
    Missing,
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("not a BPE tokenizer.json: {0}")]
    NotBpe(&'static str),
}

/// The BPE vocabulary and merges: `vocab.json` + `merges.txt` (the diffusers layout), else
/// the `model` of a `tokenizer.json` (what transformers.js and web exports ship, e.g.
/// `microsoft/sd-turbo-webnn`). Either way the CLIP normalizer and pre-tokenizer are
/// reelbox's own, so both give the same ids.
fn bpe_source(dir: &Path) -> Result<(BpeBuilder, &'static str), TokenizerError> {
    let vocab_path = dir.join("vocab.json");
    let merges_path = dir.join("merges.txt");
    let json_path = dir.join("tokenizer.json");
    if vocab_path.is_file() || !json_path.is_file() {
        for p in [&vocab_path, &merges_path] {
            if !p.is_file() {
                return Err(TokenizerError::File { path: p.clone(), source: FileCause::Missing });
            }
        }
        let files = BPE::from_file(&vocab_path.to_string_lossy(), &merges_path.to_string_lossy());
        return Ok((files, "vocab.json/merges.txt"));
    }
    let file_err = |source: FileCause| TokenizerError::File { path: json_path.clone(), source };
    let json = read_json(&json_path)?.ok_or_else(|| file_err(FileCause::Missing))?;
    let model = json.get("model").ok_or_else(|| file_err(FileCause::NotBpe("no \"model\"")))?;
    if model.get("type").and_then(Value::as_str).is_some_and(|t| t != "BPE") {
        return Err(file_err(FileCause::NotBpe("its model is not BPE")));
    }
    let vocab: Vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| file_err(FileCause::NotBpe("no model.vocab")))?
        .iter()
        .filter_map(|(token, id)| Some((token.clone(), u32::try_from(id.as_u64()?).ok()?)))
        .collect();
    // Merges are "a b" strings in older files and ["a", "b"] pairs in newer ones.
    let merges: Merges = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or_else(|| file_err(FileCause::NotBpe("no model.merges")))?
        .iter()
        .filter_map(|m| match m {
            Value::String(s) => s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Some((a.clone(), b.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    Ok((BPE::builder().vocab_and_merges(vocab, merges), "tokenizer.json"))
}

/// Ids of one prompt, padded to the model length, plus what truncation removed.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedPrompt {
    pub ids: Vec<u32>,
    /// The text cut off beyond the model's length, when the prompt was too long.
    pub truncated: Option<String>,
}

/// A loaded CLIP tokenizer.
pub struct ClipTokenizer {
    inner: Tokenizer,
    bos: u32,
    eos: u32,
    pad: u32,
    max_length: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .field("max_length", &self.max_length)
            .finish()
    }
}

fn read_json(path: &Path) -> Result<Option<Value>, TokenizerError> {
    if !path.is_file() {
        return Ok(None);
    }
    let file_err = |source: FileCause| TokenizerError::File { path: path.to_path_buf(), source };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.into()))?;
    serde_json::from_str(&text).map(Some).map_err(|e| file_err(e.into()))
}

/// A special token entry is either a string or an `AddedToken` object with `content`.
fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

impl ClipTokenizer {
    /// Loads `dir/{vocab.json, merges.txt}` (or `dir/tokenizer.json`) and the special tokens
    /// from `special_tokens_map.json` (which wins, as in transformers) or `tokenizer_config.json`.
    pub fn load(dir: &Path) -> Result<Self, TokenizerError> {
        let (source, source_name) = bpe_source(dir)?;
        let config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
        let special_map = read_json(&dir.join("special_tokens_map.json"))?.unwrap_or(Value::Null);
        let special = |key: &str, default: &str| {
            special_map
                .get(key)
                .and_then(token_content)
                .or_else(|| config.get(key).and_then(token_content))
                .unwrap_or_else(|| default.to_string())
        };
        let bos_token = special("bos_token", "<|startoftext|>");
        let eos_token = special("eos_token", "<|endoftext|>");
        let pad_token = special("pad_token", "<|endoftext|>");
        let unk_token = special("unk_token", "<|endoftext|>");
        // Some tokenizer configs carry a huge sentinel instead of a real limit.
        let max_length = config
            .get("model_max_length")
            .and_then(Value::as_f64)
            .filter(|&m| (2.0..=4096.0).contains(&m))
            .map_or(DEFAULT_MAX_LENGTH, |m| m as usize);

        let build_err = |what: &'static str| {
            move |source: tokenizers::Error| TokenizerError::Build { dir: dir.to_path_buf(), what, source }
        };
        let bpe = source
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".into())
            .unk_token(unk_token.clone())
            .build()
            .map_err(build_err(source_name))?;
        let mut inner = Tokenizer::new(bpe);
        let whitespace =
            Replace::new(ReplacePattern::Regex(r"\s+".into()), " ").map_err(build_err("whitespace normalizer"))?;
        inner.with_normalizer(Some(NormalizerSequence::new(vec![NFC.into(), whitespace.into(), Lowercase.into()])));
        let split = Split::new(SplitPattern::Regex(CLIP_PATTERN.into()), SplitDelimiterBehavior::Removed, true)
            .map_err(build_err("pre-tokenizer"))?;
        inner.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
            split.into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = [&bos_token, &eos_token, &unk_token, &pad_token]
            .iter()
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        inner.add_special_tokens(&specials);

        let id = |role: &'static str, token: &str| {
            inner.token_to_id(token).ok_or_else(|| TokenizerError::MissingSpecial {
                dir: dir.to_path_buf(),
                role,
                token: token.to_string(),
            })
        };
        let (bos, eos, pad) = (id("bos", &bos_token)?, id("eos", &eos_token)?, id("pad", &pad_token)?);
        Ok(Self { inner, bos, eos, pad, max_length })
    }

    /// Sequence length the text encoder takes.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The (BOS, EOS, PAD) ids.
    pub fn special_ids(&self) -> (u32, u32, u32) {
        (self.bos, self.eos, self.pad)
    }

    /// The ids of `text`'s own tokens, without BOS, EOS or padding.
    pub fn text_ids(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self.inner.encode(text, false).map_err(|source| TokenizerError::Build {
            dir: PathBuf::new(),
            what: "cannot tokenize",
            source,
        })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The id of a comma ending a word (`,</w>`), which A1111 moves a chunk's end back to.
    pub fn comma_id(&self) -> Option<u32> {
        self.inner.token_to_id(",</w>")
    }

    /// Tokenizes `text` to exactly `max_length` ids: BOS, at most `max_length − 2` text
    /// tokens, EOS, then padding.
    pub fn encode(&self, text: &str) -> Result<TokenizedPrompt, TokenizerError> {
        let body = self.text_ids(text)?;
        let room = self.max_length.saturating_sub(2);
        let truncated = (body.len() > room).then(|| {
            let rest = &body[room..];
            let text = self.inner.decode(rest, true).unwrap_or_default();
            text.replace("</w>", " ").trim().to_string()
        });
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos);
        ids.extend_from_slice(&body[..body.len().min(room)]);
        ids.push(self.eos);
        ids.resize(self.max_length, self.pad);
        Ok(TokenizedPrompt { ids, truncated })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    #[derive(serde::Deserialize)]
    struct Case {
        tokenizer: String,
        text: String,
        input_ids: Vec<u32>,
    }

    #[test]
    fn ids_match_transformers_clip_tokenizer() {
        let text = std::fs::read_to_string(fixture("tests/fixtures/reference/sd/tokenizer_cases.json")).expect("cases");
        let cases: Vec<Case> = serde_json::from_str(&text).expect("parse");
        assert!(cases.len() >= 10);
        for case in cases {
            let tok = ClipTokenizer::load(&fixture(&case.tokenizer)).expect("load");
            let got = tok.encode(&case.text).expect("encode");
            assert_eq!(got.ids, case.input_ids, "{} {:?}", case.tokenizer, case.text);
        }
    }

    #[test]
    fn special_ids_come_from_the_tokenizer_files() {
        let tok = ClipTokenizer::load(&fixture("tests/fixtures/models/tiny-sd/tokenizer")).expect("load");
        // The fixture vocabulary is small: its BOS/EOS are not CLIP's 49406/49407.
        assert_eq!(tok.special_ids(), (674, 675, 675));
        let tok2 = ClipTokenizer::load(&fixture("tests/fixtures/models/tiny-sdxl/tokenizer_2")).expect("load");
        assert_eq!(tok2.special_ids().2, 0, "tokenizer_2 pads with '!'");
    }

    #[test]
    fn long_prompts_are_truncated_with_the_cut_text_reported() {
        let tok = ClipTokenizer::load(&fixture("tests/fixtures/models/tiny-sd/tokenizer")).expect("load");
        let long = "a photo of a cat ".repeat(30) + "zebra";
        let out = tok.encode(&long).expect("encode");
        assert_eq!(out.ids.len(), 77);
        assert_eq!(out.ids[76], 675, "EOS kept at the end");
        let cut = out.truncated.expect("truncated");
        assert!(cut.ends_with("zebra"), "{cut:?}");
        assert!(tok.encode("a photo of a cat").expect("encode").truncated.is_none());
    }

    /// A web export's `tokenizer.json` (merges in either format) gives the same ids as the
    /// diffusers `vocab.json` + `merges.txt` it was made from; a non-BPE file is refused.
    #[test]
    fn a_tokenizer_json_gives_the_ids_of_vocab_and_merges() {
        let src = fixture("tests/fixtures/models/tiny-sd/tokenizer");
        let vocab: Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("vocab.json")).expect("vocab")).expect("vocab json");
        let merges: Vec<String> = std::fs::read_to_string(src.join("merges.txt"))
            .expect("merges")
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        let pairs: Vec<Value> =
            merges.iter().filter_map(|m| m.split_once(' ')).map(|(a, b)| serde_json::json!([a, b])).collect();
        let reference = ClipTokenizer::load(&src).expect("load");
        let prompts = ["a photo of a cat", "Hello,   WORLD!! it's 3:30pm", "zebra zebra zebra"];
        for merges_json in [serde_json::json!(merges), Value::Array(pairs)] {
            let dir = tempfile::tempdir().expect("tempdir");
            for f in ["special_tokens_map.json", "tokenizer_config.json"] {
                std::fs::copy(src.join(f), dir.path().join(f)).expect("copy");
            }
            let json = serde_json::json!({"model": {"type": "BPE", "vocab": vocab, "merges": merges_json}});
            std::fs::write(dir.path().join("tokenizer.json"), json.to_string()).expect("write");
            let tok = ClipTokenizer::load(dir.path()).expect("load tokenizer.json");
            assert_eq!(tok.special_ids(), reference.special_ids());
            for p in prompts {
                assert_eq!(tok.encode(p).expect("encode"), reference.encode(p).expect("encode"), "{p:?}");
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("tokenizer.json"), r#"{"model": {"type": "WordPiece", "vocab": {}}}"#)
            .expect("write");
        let err = ClipTokenizer::load(dir.path()).expect_err("WordPiece refused").to_string();
        assert!(err.contains("tokenizer.json") && err.contains("not BPE"), "{err}");
    }
}
