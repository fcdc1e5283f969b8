//! A prompt's parts ([`emphasis`](super::emphasis)) as the text encoder takes them: chunks of
//! BOS, at most 75 tokens, EOS and padding, each token with its weight. A prompt past 75
//! tokens goes on in more chunks, which `text.rs` encodes one by one and joins (A1111 and
//! ComfyUI alike), where it was cut off before; where a chunk ends is each one's own rule.
//! An embedding a prompt names takes as many tokens as it has vectors (id 0 in the ids, as
//! A1111 puts there, its vector put in place by the text encoder), named as each reads it:
//! A1111 by its name's tokens among the prompt's, ComfyUI by `embedding:NAME`.

use super::embedding::{self, Embedding, Piece, comfy_words};
use super::emphasis::Part;
use super::samplers::SampleAs;
use super::tokenizer::{ClipTokenizer, TokenizerError};

/// How far back A1111 looks for a comma to end a full chunk at (its
/// `comma_padding_backtrack` option's default).
const COMMA_BACKTRACK: usize = 20;
/// A word of at least this many tokens ComfyUI cuts at a chunk's end; a shorter one goes
/// whole into the next chunk (its `max_word_length`).
const COMFY_WORD: usize = 8;

/// Row `row` of embedding `embedding` (an index into the run's list) at token `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fix {
    pub at: usize,
    pub embedding: usize,
    pub row: usize,
}

/// One chunk: `max_length` ids and their weights (1 for BOS, EOS and padding), and the
/// embedding vectors that go in place of some of its tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub ids: Vec<u32>,
    pub weights: Vec<f32>,
    pub fixes: Vec<Fix>,
}

/// A token of a chunk being filled: an id, or an embedding's row.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Id(u32),
    Vector { embedding: usize, row: usize },
}

/// The embeddings a run's prompts may name: those its model takes (`usable`, the indices
/// its chunks' fixes refer to) and the others installed, which ComfyUI's `embedding:NAME`
/// is refused at by name.
#[derive(Clone, Copy, Default)]
pub struct Named<'a> {
    pub usable: &'a [&'a Embedding],
    pub others: &'a [&'a Embedding],
}

/// Why a prompt's chunks cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// ComfyUI's `embedding:NAME` naming no embedding this model takes.
    #[error("{0}")]
    Embedding(String),
}

impl Chunk {
    /// Whether a token in it weighs other than 1.
    pub fn weighted(&self) -> bool {
        self.weights.iter().any(|&w| w != 1.0)
    }

    /// BOS, `body` and EOS, padded to `tok`'s length.
    fn closed(tok: &ClipTokenizer, body: Vec<(Token, f32)>) -> Self {
        let (bos, eos, pad) = tok.special_ids();
        let mut ids = Vec::with_capacity(tok.max_length());
        let mut weights = Vec::with_capacity(tok.max_length());
        let mut fixes = Vec::new();
        ids.push(bos);
        weights.push(1.0);
        for (token, w) in body {
            ids.push(match token {
                Token::Id(id) => id,
                Token::Vector { embedding, row } => {
                    fixes.push(Fix { at: ids.len(), embedding, row });
                    0
                }
            });
            weights.push(w);
        }
        ids.push(eos);
        weights.push(1.0);
        ids.resize(tok.max_length(), pad);
        weights.resize(tok.max_length(), 1.0);
        Chunk { ids, weights, fixes }
    }

    /// The empty prompt's chunk (BOS, EOS, padding), which ComfyUI weighs tokens from.
    pub fn empty(tok: &ClipTokenizer) -> Self {
        Self::closed(tok, Vec::new())
    }
}

/// Each of `embedding`'s rows as tokens of weight `w`.
fn rows_of(embedding: usize, e: &Embedding, w: f32) -> impl Iterator<Item = (Token, f32)> {
    (0..e.vectors()).map(move |row| (Token::Vector { embedding, row }, w))
}

/// `parts` as `tok`'s chunks, cut where `rule` cuts them; at least one.
pub fn chunks(tok: &ClipTokenizer, parts: &[Part], rule: SampleAs, named: Named) -> Result<Vec<Chunk>, ChunkError> {
    match rule {
        SampleAs::A1111 => a1111(tok, parts, named.usable),
        SampleAs::Comfyui => comfyui(tok, parts, named),
    }
}

/// A1111's `find_embedding_at_position`: the embedding whose name's tokens (by `tok`) come
/// at `ids[at..]`, the longest first, and how many tokens its name takes.
fn embedding_at(names: &[(Vec<u32>, usize)], ids: &[u32], at: usize) -> Option<(usize, usize)> {
    let rest = &ids[at..];
    names.iter().find(|(name, _)| !name.is_empty() && rest.starts_with(name)).map(|(name, e)| (*e, name.len()))
}

/// A1111's `tokenize_line` (`modules/sd_hijack_clip.py`): 75 tokens a chunk; a chunk full
/// before a token that is not a comma, with a comma among its last 20 tokens, moves what
/// follows the comma to the next; `BREAK` ends the chunk there (an empty one too); an
/// embedding's name in the prompt's tokens is its vectors, in the next chunk when they do not
/// fit in this one.
fn a1111(tok: &ClipTokenizer, parts: &[Part], embeddings: &[&Embedding]) -> Result<Vec<Chunk>, ChunkError> {
    let length = tok.max_length().saturating_sub(2).max(1);
    let comma = tok.comma_id();
    let mut names: Vec<(Vec<u32>, usize)> = embeddings
        .iter()
        .enumerate()
        .map(|(i, e)| Ok((tok.text_ids(&e.name)?, i)))
        .collect::<Result<_, ChunkError>>()?;
    names.sort_by_key(|(ids, _)| std::cmp::Reverse(ids.len()));
    let mut done = Vec::new();
    let mut chunk: Vec<(Token, f32)> = Vec::new();
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
        let ids = tok.text_ids(text)?;
        let mut at = 0;
        while let Some(&id) = ids.get(at) {
            if Some(id) == comma {
                last_comma = Some(chunk.len());
            } else if let Some(c) = last_comma.filter(|&c| chunk.len() == length && chunk.len() - c <= COMMA_BACKTRACK)
            {
                let moved = chunk.split_off(c + 1);
                done.push(Chunk::closed(tok, std::mem::replace(&mut chunk, moved)));
                last_comma = None;
            }
            if chunk.len() == length {
                done.push(Chunk::closed(tok, std::mem::take(&mut chunk)));
                last_comma = None;
            }
            let Some((e, name_len)) = embedding_at(&names, &ids, at) else {
                chunk.push((Token::Id(id), weight));
                at += 1;
                continue;
            };
            if chunk.len() + embeddings[e].vectors() > length {
                done.push(Chunk::closed(tok, std::mem::take(&mut chunk)));
                last_comma = None;
            }
            chunk.extend(rows_of(e, embeddings[e], weight));
            at += name_len;
        }
    }
    if !chunk.is_empty() || done.is_empty() {
        done.push(Chunk::closed(tok, chunk));
    }
    Ok(done)
}

/// ComfyUI's `tokenize_with_weights` (`comfy/sd1_clip.py`): each weighted segment's tokens
/// a word (an `embedding:NAME` after a space or a line break, its vectors, a word of their
/// own, what follows the name another), filling chunks of 75; a word that does not fit ends
/// the chunk there and goes whole into the next, unless it is 8 tokens or more, which is cut
/// at the chunk's end.
fn comfyui(tok: &ClipTokenizer, parts: &[Part], named: Named) -> Result<Vec<Chunk>, ChunkError> {
    let length = tok.max_length().saturating_sub(2).max(1);
    let mut done = Vec::new();
    let mut chunk: Vec<(Token, f32)> = Vec::new();
    for part in parts {
        let Part::Text(text, weight) = part else { continue };
        let weight = *weight as f32;
        let word_of = |t: &str| -> Result<Vec<(Token, f32)>, ChunkError> {
            Ok(tok.text_ids(t)?.into_iter().map(|id| (Token::Id(id), weight)).collect())
        };
        for piece in comfy_words(text) {
            let words = match piece {
                Piece::Text(t) => vec![word_of(t)?],
                Piece::Embedding(name, rest) => {
                    let e = comfy_embedding(named, name)?;
                    let mut words: Vec<Vec<(Token, f32)>> = vec![rows_of(e, named.usable[e], weight).collect()];
                    if !rest.is_empty() {
                        words.push(word_of(&rest)?);
                    }
                    words
                }
            };
            for mut word in words {
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
        }
    }
    done.push(Chunk::closed(tok, chunk));
    Ok(done)
}

/// The index among `named.usable` of the embedding ComfyUI's `embedding:NAME` names
/// ([`embedding::names_it`]).
fn comfy_embedding(named: Named, name: &str) -> Result<usize, ChunkError> {
    if let Some(i) = named.usable.iter().position(|e| e.names_it(name)) {
        return Ok(i);
    }
    let other = named.others.iter().find(|e| e.names_it(name));
    Err(ChunkError::Embedding(embedding::comfy_refusal(name, other.map(|e| (&**e, "this model's text encoder")))))
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
            let got = chunks(&tok, &[text("a photo of a cat", 1.0)], rule, Named::default()).expect("chunks");
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].ids, tok.encode("a photo of a cat").expect("ids").ids, "{rule:?}");
            assert!(!got[0].weighted());
        }
    }

    #[test]
    fn weights_go_with_their_tokens_and_a_long_prompt_goes_on_in_more_chunks() {
        let tok = tokenizer();
        let cat = tok.text_ids("cat").expect("ids");
        let got =
            chunks(&tok, &[text("a ", 1.0), text("cat", 1.5)], SampleAs::Comfyui, Named::default()).expect("chunks");
        let a = tok.text_ids("a ").expect("ids").len();
        assert_eq!(got[0].weights[1 + a..1 + a + cat.len()], vec![1.5; cat.len()][..]);
        assert!(got[0].weighted());
        // 40 words "photo" of one token each: 75 in the first chunk, the rest in the second.
        let long = "photo ".repeat(100);
        let n = tok.text_ids(&long).expect("ids").len();
        for rule in [SampleAs::A1111, SampleAs::Comfyui] {
            let got = chunks(&tok, &[text(&long, 1.0)], rule, Named::default()).expect("chunks");
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
        let got = chunks(&tok, &[text(&prompt, 1.0)], SampleAs::A1111, Named::default()).expect("chunks");
        assert_eq!(got.len(), 2);
        let comma_at = got[0].ids.iter().position(|&id| id == comma).expect("the comma in the first chunk");
        assert_eq!(got[0].ids[comma_at + 1], tok.special_ids().1, "EOS right after the comma");
        // ComfyUI cuts the one long segment at 75.
        let got = chunks(&tok, &[text(&prompt, 1.0)], SampleAs::Comfyui, Named::default()).expect("chunks");
        assert_ne!(got[0].ids[76 - 1], tok.special_ids().2);
        let broken =
            chunks(&tok, &[text("a cat", 1.0), Part::Break, text("a dog", 1.0)], SampleAs::A1111, Named::default());
        assert_eq!(broken.expect("chunks").len(), 2);
    }

    /// An embedding of `n` vectors of 32 called `name`.
    fn embedding(name: &str, n: usize) -> Embedding {
        let tensors = vec![embedding::Vectors { slot: embedding::Slot::One, width: 32, values: vec![0.0; n * 32] }];
        Embedding { name: name.into(), tensors }
    }

    #[test]
    fn an_embedding_named_in_the_prompt_takes_its_vectors_places() {
        let tok = tokenizer();
        let red = embedding("red-hat", 3);
        let usable = [&red];
        let named = Named { usable: &usable, others: &[] };
        let ids = |t: &str| tok.text_ids(t).expect("ids");
        // A1111: by its name's tokens, any case, weighed with its words.
        let got = chunks(&tok, &[text("a ", 1.0), text("Red-Hat", 1.2), text(" cat", 1.0)], SampleAs::A1111, named);
        let got = got.expect("chunks");
        let a = ids("a ").len();
        let at: Vec<usize> = got[0].fixes.iter().map(|f| f.at).collect();
        assert_eq!(at, [1 + a, 2 + a, 3 + a]);
        assert_eq!(got[0].fixes.iter().map(|f| f.row).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(&got[0].ids[1 + a..4 + a], [0, 0, 0], "A1111's placeholder ids");
        assert_eq!(got[0].weights[1 + a..4 + a], [1.2; 3]);
        assert_eq!(got[0].ids[4 + a..4 + a + ids(" cat").len()], ids(" cat")[..]);
        // ComfyUI: `embedding:NAME` only; A1111's reading of the bare name is ComfyUI's text.
        let comfy = chunks(&tok, &[text("a embedding:red-hat, cat", 1.0)], SampleAs::Comfyui, named).expect("chunks");
        assert_eq!(comfy[0].fixes.len(), 3);
        assert_eq!(comfy[0].ids[1 + a + 3..1 + a + 3 + ids(", cat").len()], ids(", cat")[..]);
        let plain = chunks(&tok, &[text("a red-hat", 1.0)], SampleAs::Comfyui, named).expect("chunks");
        assert!(plain[0].fixes.is_empty());
        let missing = chunks(&tok, &[text("a embedding:blue", 1.0)], SampleAs::Comfyui, named).expect_err("unknown");
        assert!(missing.to_string().contains("embedding:blue: no embedding of that name is installed"), "{missing}");
        let wide = embedding("wide", 1);
        let others = [&wide];
        let named = Named { usable: &usable, others: &others };
        let other = chunks(&tok, &[text("embedding:wide", 1.0)], SampleAs::Comfyui, named).expect_err("other");
        assert!(other.to_string().contains("which this model's text encoder does not take"), "{other}");
    }

    #[test]
    fn an_embedding_that_does_not_fit_its_chunk_goes_whole_into_the_next() {
        let tok = tokenizer();
        // 6 vectors: under ComfyUI's 8, which it would cut as a long word.
        let big = embedding("big", 6);
        let usable = [&big];
        let named = Named { usable: &usable, others: &[] };
        let word = tok.text_ids("photo").expect("ids");
        assert_eq!(word.len(), 1);
        let prompt = format!("{}big", "photo ".repeat(70));
        for (rule, text) in
            [(SampleAs::A1111, prompt.clone()), (SampleAs::Comfyui, prompt.replace("big", "embedding:big"))]
        {
            let got = chunks(&tok, &[Part::Text(text, 1.0)], rule, named).expect("chunks");
            assert_eq!(got.len(), 2, "{rule:?}");
            assert!(got[0].fixes.is_empty(), "{rule:?}");
            assert_eq!(got[1].fixes.iter().map(|f| f.at).collect::<Vec<_>>(), (1..=6).collect::<Vec<_>>(), "{rule:?}");
        }
    }
}
