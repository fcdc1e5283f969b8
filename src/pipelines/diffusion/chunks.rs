//! A prompt's parts ([`emphasis`](super::emphasis)) as the text encoder takes them: chunks of
//! BOS, at most 75 tokens, EOS and padding, each token with its weight. A prompt past 75
//! tokens goes on in more chunks, which `text.rs` encodes one by one and joins (A1111 and
//! ComfyUI alike), where it was cut off before; where a chunk ends is each one's own rule.

use super::emphasis::Part;
use super::samplers::SampleAs;
use super::tokenizer::{ClipTokenizer, TokenizerError};

/// How far back A1111 looks for a comma to end a full chunk at (its
/// `comma_padding_backtrack` option's default).
const COMMA_BACKTRACK: usize = 20;
/// A word of at least this many tokens ComfyUI cuts at a chunk's end; a shorter one goes
/// whole into the next chunk (its `max_word_length`).
const COMFY_WORD: usize = 8;

/// One chunk: `max_length` ids and their weights (1 for BOS, EOS and padding).
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub ids: Vec<u32>,
    pub weights: Vec<f32>,
}

impl Chunk {
    /// Whether a token in it weighs other than 1.
    pub fn weighted(&self) -> bool {
        self.weights.iter().any(|&w| w != 1.0)
    }

    /// BOS, `body` and EOS, padded to `tok`'s length.
    fn closed(tok: &ClipTokenizer, body: Vec<(u32, f32)>) -> Self {
        let (bos, eos, pad) = tok.special_ids();
        let mut ids = Vec::with_capacity(tok.max_length());
        let mut weights = Vec::with_capacity(tok.max_length());
        ids.push(bos);
        weights.push(1.0);
        for (id, w) in body {
            ids.push(id);
            weights.push(w);
        }
        ids.push(eos);
        weights.push(1.0);
        ids.resize(tok.max_length(), pad);
        weights.resize(tok.max_length(), 1.0);
        Chunk { ids, weights }
    }

    /// The empty prompt's chunk (BOS, EOS, padding), which ComfyUI weighs tokens from.
    pub fn empty(tok: &ClipTokenizer) -> Self {
        Self::closed(tok, Vec::new())
    }
}

/// `parts` as `tok`'s chunks, cut where `rule` cuts them; at least one.
pub fn chunks(tok: &ClipTokenizer, parts: &[Part], rule: SampleAs) -> Result<Vec<Chunk>, TokenizerError> {
    match rule {
        SampleAs::A1111 => a1111(tok, parts),
        SampleAs::Comfyui => comfyui(tok, parts),
    }
}

/// A1111's `tokenize_line` (`modules/sd_hijack_clip.py`): 75 tokens a chunk; a chunk full
/// before a token that is not a comma, with a comma among its last 20 tokens, moves what
/// follows the comma to the next; `BREAK` ends the chunk there (an empty one too).
fn a1111(tok: &ClipTokenizer, parts: &[Part]) -> Result<Vec<Chunk>, TokenizerError> {
    let length = tok.max_length().saturating_sub(2).max(1);
    let comma = tok.comma_id();
    let mut done = Vec::new();
    let mut chunk: Vec<(u32, f32)> = Vec::new();
    let mut last_comma: Option<usize> = None;
    for part in parts {
        let (text, weight) = match part {
            Part::Break => {
                done.push(Chunk::closed(tok, std::mem::take(&mut chunk)));
                last_comma = None;
                continue;
            }
            Part::Text(text, weight) => (text, *weight as f32),
        };
        for id in tok.text_ids(text)? {
            if Some(id) == comma {
                last_comma = Some(chunk.len());
            } else if let Some(at) =
                last_comma.filter(|&at| chunk.len() == length && chunk.len() - at <= COMMA_BACKTRACK)
            {
                let moved = chunk.split_off(at + 1);
                done.push(Chunk::closed(tok, std::mem::replace(&mut chunk, moved)));
                last_comma = None;
            }
            if chunk.len() == length {
                done.push(Chunk::closed(tok, std::mem::take(&mut chunk)));
                last_comma = None;
            }
            chunk.push((id, weight));
        }
    }
    if !chunk.is_empty() || done.is_empty() {
        done.push(Chunk::closed(tok, chunk));
    }
    Ok(done)
}

/// ComfyUI's `tokenize_with_weights` (`comfy/sd1_clip.py`): each weighted segment's tokens
/// a word, filling chunks of 75; a word that does not fit ends the chunk there and goes whole
/// into the next, unless it is 8 tokens or more, which is cut at the chunk's end.
fn comfyui(tok: &ClipTokenizer, parts: &[Part]) -> Result<Vec<Chunk>, TokenizerError> {
    let length = tok.max_length().saturating_sub(2).max(1);
    let mut done = Vec::new();
    let mut chunk: Vec<(u32, f32)> = Vec::new();
    for part in parts {
        let Part::Text(text, weight) = part else { continue };
        let mut word: Vec<(u32, f32)> = tok.text_ids(text)?.into_iter().map(|id| (id, *weight as f32)).collect();
        let large = word.len() >= COMFY_WORD;
        while !word.is_empty() {
            if chunk.len() + word.len() > length {
                if large {
                    let rest = word.split_off(length - chunk.len());
                    chunk.append(&mut word);
                    word = rest;
                }
                done.push(Chunk::closed(tok, std::mem::take(&mut chunk)));
            } else {
                chunk.append(&mut word);
            }
        }
    }
    done.push(Chunk::closed(tok, chunk));
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn tokenizer() -> ClipTokenizer {
        ClipTokenizer::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny-sd/tokenizer"))
            .expect("load")
    }

    fn text(t: &str, w: f64) -> Part {
        Part::Text(t.to_string(), w)
    }

    #[test]
    fn a_short_prompt_is_one_chunk_with_the_ids_it_always_had() {
        let tok = tokenizer();
        for rule in [SampleAs::A1111, SampleAs::Comfyui] {
            let got = chunks(&tok, &[text("a photo of a cat", 1.0)], rule).expect("chunks");
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].ids, tok.encode("a photo of a cat").expect("ids").ids, "{rule:?}");
            assert!(!got[0].weighted());
        }
    }

    #[test]
    fn weights_go_with_their_tokens_and_a_long_prompt_goes_on_in_more_chunks() {
        let tok = tokenizer();
        let cat = tok.text_ids("cat").expect("ids");
        let got = chunks(&tok, &[text("a ", 1.0), text("cat", 1.5)], SampleAs::Comfyui).expect("chunks");
        let a = tok.text_ids("a ").expect("ids").len();
        assert_eq!(got[0].weights[1 + a..1 + a + cat.len()], vec![1.5; cat.len()][..]);
        assert!(got[0].weighted());
        // 40 words "photo" of one token each: 75 in the first chunk, the rest in the second.
        let long = "photo ".repeat(100);
        let n = tok.text_ids(&long).expect("ids").len();
        for rule in [SampleAs::A1111, SampleAs::Comfyui] {
            let got = chunks(&tok, &[text(&long, 1.0)], rule).expect("chunks");
            assert_eq!(got.len(), n.div_ceil(75), "{rule:?}: {n} tokens");
            assert!(got.iter().all(|c| c.ids.len() == 77));
        }
    }

    #[test]
    fn a1111_ends_a_full_chunk_at_its_last_comma_and_at_break() {
        let tok = tokenizer();
        let Some(comma) = tok.comma_id() else { panic!("the fixture's vocabulary has a comma") };
        let word = tok.text_ids("photo").expect("ids");
        assert_eq!(word.len(), 1, "one token");
        // 70 words, a comma, 10 words: the chunk ends after the comma.
        let prompt = format!("{}, {}", "photo ".repeat(70).trim_end(), "photo ".repeat(10));
        let got = chunks(&tok, &[text(&prompt, 1.0)], SampleAs::A1111).expect("chunks");
        assert_eq!(got.len(), 2);
        let comma_at = got[0].ids.iter().position(|&id| id == comma).expect("the comma in the first chunk");
        assert_eq!(got[0].ids[comma_at + 1], tok.special_ids().1, "EOS right after the comma");
        // ComfyUI cuts the one long segment at 75.
        let got = chunks(&tok, &[text(&prompt, 1.0)], SampleAs::Comfyui).expect("chunks");
        assert_ne!(got[0].ids[76 - 1], tok.special_ids().2);
        let broken = chunks(&tok, &[text("a cat", 1.0), Part::Break, text("a dog", 1.0)], SampleAs::A1111);
        assert_eq!(broken.expect("chunks").len(), 2);
    }
}
