//! A prompt's emphasis as A1111 and ComfyUI read it: which words weigh how much (`(red
//! door:1.3)`), and where A1111's `BREAK` starts a new chunk. The run's `sample_as` says whose
//! reading a prompt gets ([`parse`]); `chunks.rs` makes token chunks of the parts and
//! `text.rs` weighs the text encoder's states by them. A prompt with none of this syntax is
//! one part of weight 1 either way, encoded as before.

use super::samplers::SampleAs;

/// `(words)` multiplies their weight by this, in both readings.
const ROUND: f64 = 1.1;

/// A run of a prompt's text and its weight, or A1111's `BREAK`.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String, f64),
    /// The rest goes into a new chunk (A1111's `BREAK`, a word of its own in capitals).
    Break,
}

/// `prompt` read by `rule`'s reading.
pub fn parse(prompt: &str, rule: SampleAs) -> Vec<Part> {
    match rule {
        SampleAs::A1111 => a1111(prompt),
        SampleAs::Comfyui => comfyui(prompt).into_iter().map(|(t, w)| Part::Text(t, w)).collect(),
    }
}

/// `text` with its round brackets escaped (`\(`, the one escape both readings know), so
/// neither weighs them: for prompts made of words not written as prompts, a film's
/// narration (which has no `[ ]`: those are its directions).
pub fn literal(text: &str) -> String {
    text.replace('(', "\\(").replace(')', "\\)")
}

/// One lexeme of A1111's `re_attention`, in its alternatives' order.
enum Lexeme<'a> {
    /// `\(`, `\)`, `\[`, `\]`, `\\`, or a lone `\` (nothing).
    Escaped(&'a str),
    Open,
    OpenSquare,
    /// `:1.3)`, `: 0.5 )`: its number's text.
    Weight(&'a str),
    Close,
    CloseSquare,
    /// Text with none of `\()[]:`, or a `:` that starts no weight.
    Text,
}

/// The lexeme at the start of `s` and its length in bytes.
fn lexeme(s: &str) -> (Lexeme<'_>, usize) {
    let mut chars = s.chars();
    match chars.next() {
        Some('\\') => match chars.next() {
            Some(c @ ('(' | ')' | '[' | ']' | '\\')) => (Lexeme::Escaped(&s[1..1 + c.len_utf8()]), 2),
            _ => (Lexeme::Escaped(""), 1),
        },
        Some('(') => (Lexeme::Open, 1),
        Some('[') => (Lexeme::OpenSquare, 1),
        Some(')') => (Lexeme::Close, 1),
        Some(']') => (Lexeme::CloseSquare, 1),
        Some(':') => match weight_at(s) {
            Some((number, len)) => (Lexeme::Weight(number), len),
            None => (Lexeme::Text, 1),
        },
        _ => {
            let len = s.find(['\\', '(', ')', '[', ']', ':']).unwrap_or(s.len());
            (Lexeme::Text, len)
        }
    }
}

/// `:\s*([+-]?[.\d]+)\s*\)` at the start of `s`: the number's text and the match's length.
fn weight_at(s: &str) -> Option<(&str, usize)> {
    let after_colon = &s[1..];
    let start = s.len() - after_colon.trim_start().len();
    let body = &s[start..];
    let sign = usize::from(body.starts_with(['+', '-']));
    let digits = body[sign..].find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len() - sign);
    if digits == 0 {
        return None;
    }
    let number = &body[..sign + digits];
    let rest = &body[sign + digits..];
    let close = rest.len() - rest.trim_start().len();
    rest[close..].starts_with(')').then(|| (number, s.len() - rest.len() + close + 1))
}

/// A1111's `parse_prompt_attention` (`modules/prompt_parser.py`): `(a)` weighs ×1.1, `[a]`
/// ÷1.1, `(a:1.3)` ×1.3 (on top of the brackets around it), `\(` is a bracket itself, an
/// unclosed bracket weighs to the end, and runs of one weight are joined.
fn a1111(prompt: &str) -> Vec<Part> {
    let mut res: Vec<(String, f64)> = Vec::new();
    let (mut round, mut square): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    let multiply = |res: &mut Vec<(String, f64)>, from: usize, by: f64| {
        res.iter_mut().skip(from).for_each(|(_, w)| *w *= by);
    };
    let mut rest = prompt;
    while !rest.is_empty() {
        let (lex, len) = lexeme(rest);
        let text = &rest[..len];
        rest = &rest[len..];
        // A closing lexeme closes the innermost bracket of its kind, when one is open (and a
        // weight's number reads as one): by its weight. Else it is text, as every other is.
        let closing = match lex {
            Lexeme::Weight(n) => n.parse::<f64>().ok().map(|w| (&mut round, w)),
            Lexeme::Close => Some((&mut round, ROUND)),
            Lexeme::CloseSquare => Some((&mut square, 1.0 / ROUND)),
            _ => None,
        };
        match (lex, closing.and_then(|(open, by)| open.pop().map(|from| (from, by)))) {
            (_, Some((from, by))) => multiply(&mut res, from, by),
            (Lexeme::Escaped(c), None) => res.push((c.to_string(), 1.0)),
            (Lexeme::Open, None) => round.push(res.len()),
            (Lexeme::OpenSquare, None) => square.push(res.len()),
            _ => push_breaks(&mut res, text),
        }
    }
    for from in round {
        multiply(&mut res, from, ROUND);
    }
    for from in square {
        multiply(&mut res, from, 1.0 / ROUND);
    }
    if res.is_empty() {
        res.push((String::new(), 1.0));
    }
    // Runs of one weight joined (A1111 compares the floats exactly).
    let mut joined: Vec<(String, f64)> = Vec::with_capacity(res.len());
    for (text, w) in res {
        match joined.last_mut() {
            Some((last, lw)) if *lw == w => last.push_str(&text),
            _ => joined.push((text, w)),
        }
    }
    joined.into_iter().map(|(t, w)| if w == BREAK_WEIGHT { Part::Break } else { Part::Text(t, w) }).collect()
}

/// The weight A1111's parser marks a `BREAK` with.
const BREAK_WEIGHT: f64 = -1.0;

/// `text` with each `BREAK` (a word of its own, the spaces around it dropped) a break:
/// A1111's `re.split(r"\s*\bBREAK\b\s*", text)`.
fn push_breaks(res: &mut Vec<(String, f64)>, text: &str) {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    let mut search = 0;
    while let Some(at) = text[search..].find("BREAK").map(|i| i + search) {
        let end = at + "BREAK".len();
        let bounded = !text[..at].ends_with(word) && !text[end..].starts_with(word);
        if !bounded {
            search = end;
            continue;
        }
        let before = text[from..at].trim_end();
        res.push((before.to_string(), 1.0));
        res.push(("BREAK".to_string(), BREAK_WEIGHT));
        from = end + (text[end..].len() - text[end..].trim_start().len());
        search = from;
    }
    res.push((text[from..].to_string(), 1.0));
}

/// ComfyUI's `token_weights` (`comfy/sd1_clip.py`), after `escape_important`: the text split
/// at its outermost brackets, `(a)` weighing ×1.1 and `(a:1.3)` exactly 1.3 (its own number,
/// not times the brackets around it), `\(` and `\)` brackets themselves; `[ ]` are text.
fn comfyui(prompt: &str) -> Vec<(String, f64)> {
    // The escapes out of the way of the brackets, as ComfyUI's `escape_important`.
    let escaped = prompt.replace("\\)", "\0\u{1}").replace("\\(", "\0\u{2}");
    token_weights(&escaped, 1.0)
        .into_iter()
        .map(|(t, w)| (t.replace("\0\u{1}", ")").replace("\0\u{2}", "("), w))
        .filter(|(t, _)| !t.is_empty())
        .collect()
}

fn token_weights(text: &str, weight: f64) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for part in parentheses(text) {
        match part.strip_prefix('(').and_then(|p| p.strip_suffix(')')) {
            Some(inner) if part.len() >= 2 => {
                let mut w = weight * ROUND;
                let mut inner = inner;
                if let Some(colon) = inner.rfind(':').filter(|&c| c > 0) {
                    // Python's float(): spaces around it allowed.
                    if let Ok(n) = inner[colon + 1..].trim().parse::<f64>() {
                        w = n;
                        inner = &inner[..colon];
                    }
                }
                out.extend(token_weights(inner, w));
            }
            _ => out.push((part.to_string(), weight)),
        }
    }
    out
}

/// ComfyUI's `parse_parentheses`: the text cut before each outermost `(` and after its `)`.
fn parentheses(text: &str) -> Vec<&str> {
    let (mut result, mut start, mut depth) = (Vec::new(), 0, 0i64);
    for (i, c) in text.char_indices() {
        match c {
            '(' => {
                if depth == 0 && i > start {
                    result.push(&text[start..i]);
                    start = i;
                } else if depth == 0 {
                    start = i;
                }
                depth += 1;
            }
            ')' => {
                depth -= 1;
                if depth == 0 {
                    result.push(&text[start..=i]);
                    start = i + 1;
                }
            }
            _ => {}
        }
    }
    if start < text.len() {
        result.push(&text[start..]);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(prompt: &str) -> Vec<(String, f64)> {
        a1111(prompt)
            .into_iter()
            .map(|p| match p {
                Part::Text(t, w) => (t, (w * 1e4).round() / 1e4),
                Part::Break => ("BREAK".into(), -1.0),
            })
            .collect()
    }

    fn pairs(v: &[(&str, f64)]) -> Vec<(String, f64)> {
        v.iter().map(|(t, w)| (t.to_string(), *w)).collect()
    }

    /// The examples of `parse_prompt_attention`'s own docstring, its answers as A1111 gives them.
    #[test]
    fn a1111_reads_emphasis_as_its_parser_does() {
        assert_eq!(a("normal text"), pairs(&[("normal text", 1.0)]));
        assert_eq!(a("an (important) word"), pairs(&[("an ", 1.0), ("important", 1.1), (" word", 1.0)]));
        assert_eq!(a("(unbalanced"), pairs(&[("unbalanced", 1.1)]));
        assert_eq!(a("\\(literal\\]"), pairs(&[("(literal]", 1.0)]));
        assert_eq!(a("(unnecessary)(parens)"), pairs(&[("unnecessaryparens", 1.1)]));
        assert_eq!(
            a("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."),
            pairs(&[
                ("a ", 1.0),
                ("house", 1.5730),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641),
                (".", 1.1),
            ])
        );
        assert_eq!(a(""), pairs(&[("", 1.0)]));
        assert_eq!(a("[soft]: 2)"), pairs(&[("soft", 0.9091), (": 2)", 1.0)]), "no bracket open: text");
        assert_eq!(a("(a: 2 )"), pairs(&[("a", 2.0)]));
    }

    #[test]
    fn a1111_breaks_at_a_break_word_only() {
        assert_eq!(
            a("a cat BREAK a (dog) BREAKFAST"),
            pairs(&[("a cat", 1.0), ("BREAK", -1.0), ("a ", 1.0), ("dog", 1.1), (" BREAKFAST", 1.0)])
        );
        assert_eq!(a1111("one BREAK two")[1], Part::Break);
    }

    #[test]
    fn literal_text_weighs_nothing_in_either_reading() {
        let said = "The price (about 5 dollars: 5) is fair";
        for rule in [SampleAs::A1111, SampleAs::Comfyui] {
            assert_eq!(parse(&literal(said), rule), vec![Part::Text(said.into(), 1.0)], "{rule:?}");
        }
    }

    #[test]
    fn comfyui_sets_a_numbered_weight_and_reads_no_square_brackets() {
        let c = |p: &str| comfyui(p).into_iter().map(|(t, w)| (t, (w * 1e4).round() / 1e4)).collect::<Vec<_>>();
        assert_eq!(c("a red door"), pairs(&[("a red door", 1.0)]));
        assert_eq!(c("a (red:1.5) door"), pairs(&[("a ", 1.0), ("red", 1.5), (" door", 1.0)]));
        // Its own number, not times the brackets around it (A1111: 1.65).
        assert_eq!(c("((red:1.5))"), pairs(&[("red", 1.5)]));
        assert_eq!(c("((red))"), pairs(&[("red", 1.21)]));
        assert_eq!(c("[red] \\(door\\)"), pairs(&[("[red] (door)", 1.0)]));
        assert_eq!(c("(a:b) c"), pairs(&[("a:b", 1.1), (" c", 1.0)]), "no number: ×1.1, the colon kept");
        assert_eq!(parse("x BREAK y", SampleAs::Comfyui), vec![Part::Text("x BREAK y".into(), 1.0)]);
    }
}
