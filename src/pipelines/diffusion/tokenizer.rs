//! The CLIP tokenizer of a Stable Diffusion model, built with the `tokenizers` crate from
//! `vocab.json` + `merges.txt` exactly as transformers' `CLIPTokenizer` builds its backend:
//! NFC, whitespace runs to one space, lowercase; CLIP's split pattern then byte-level
//! pre-tokenization; BPE with `</w>` on a word's last piece. Special tokens (and their
//! ids) come from the model's own tokenizer files.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
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
    #[error("tokenizer in {dir}: special token {token:?} ({role}) is not in vocab.json")]
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
    /// Loads `dir/{vocab.json, merges.txt}` and the special tokens from
    /// `special_tokens_map.json` (which wins, as in transformers) or `tokenizer_config.json`.
    pub fn load(dir: &Path) -> Result<Self, TokenizerError> {
        let vocab_path = dir.join("vocab.json");
        let merges_path = dir.join("merges.txt");
        for p in [&vocab_path, &merges_path] {
            if !p.is_file() {
                return Err(TokenizerError::File { path: p.clone(), source: FileCause::Missing });
            }
        }
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
        let bpe = BPE::from_file(&vocab_path.to_string_lossy(), &merges_path.to_string_lossy())
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".into())
            .unk_token(unk_token.clone())
            .build()
            .map_err(build_err("vocab.json/merges.txt"))?;
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

    /// Tokenizes `text` to exactly `max_length` ids: BOS, at most `max_length − 2` text
    /// tokens, EOS, then padding.
    pub fn encode(&self, text: &str) -> Result<TokenizedPrompt, TokenizerError> {
        let enc = self.inner.encode(text, false).map_err(|source| TokenizerError::Build {
            dir: PathBuf::new(),
            what: "cannot tokenize",
            source,
        })?;
        let body = enc.get_ids();
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
}
