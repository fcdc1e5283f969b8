//! A1111's prompt editing and alternation: `[from:to:when]` draws `from` up to step `when`
//! and `to` after it (`[to:when]` adds `to` then, `[from::when]` drops `from`), `[a|b]`
//! takes `a`, `b`, `a`, … by step; read as A1111's `prompt_parser` reads them, its grammar
//! (emphasis brackets kept as text for `emphasis.rs`, a prompt it cannot parse kept whole)
//! and its step rules: a whole `when` counts steps (past the first pass's, in a hires
//! fix's second), one with a `.` a share of them (of the second pass's, from 1, there).
//! The result is A1111's schedule: for each step that ends a text, that text. (Checked here
//! against A1111's parser and step rules on 20,000 random prompts of words, brackets, bars,
//! colons and numbers: the same schedules, but for a few with a stray closing bracket beside
//! an edit, which A1111's Earley parser reads either way, differently from run to run; this
//! reading takes the edit.)

/// A parsed piece of a prompt.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// Text as written: plain words (escapes kept), spaces, emphasis brackets, stray brackets.
    Text(String),
    /// Emphasis brackets around editing: kept as written, with what is inside read.
    Seq(Vec<Node>),
    /// `[before:after:when]`; `when` as written, read once, until the steps are known.
    Scheduled { before: Vec<Node>, after: Vec<Node>, when: When },
    /// `[a|b|…]`, empty options included.
    Alternate(Vec<Vec<Node>>),
}

/// How a prompt's `when`s count: the steps of this run, and where it is a hires fix's second
/// pass, the first pass's steps (A1111's "new" prompt editing timeline).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeline {
    pub steps: u32,
    pub first_pass: Option<u32>,
}

/// One text of a schedule and the last step (A1111's count, from 1) it conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    pub end_at_step: u32,
    pub text: String,
}

/// `prompt`'s schedule on `timeline`, as A1111's `get_learned_conditioning_prompt_schedules`
/// gives it: one entry for a prompt without editing, or one A1111 cannot parse.
pub fn schedule(prompt: &str, timeline: Timeline) -> Vec<Scheduled> {
    let whole = || vec![Scheduled { end_at_step: timeline.steps, text: prompt.to_string() }];
    let chars: Vec<char> = prompt.chars().collect();
    let Some(tree) = Parser { s: &chars }.start() else { return whole() };
    let mut ends = vec![timeline.steps];
    collect_steps(&tree, timeline, &mut ends);
    ends.sort_unstable();
    ends.dedup();
    ends.into_iter()
        .map(|step| {
            let mut text = String::new();
            write_at(&tree, step, timeline, &mut text);
            Scheduled { end_at_step: step, text }
        })
        .collect()
}

/// A `when` as written: its number, and whether it has a `.` (a share of the steps, to A1111).
#[derive(Debug, Clone, Copy, PartialEq)]
struct When {
    value: f64,
    share: bool,
}

impl When {
    fn read(written: &str) -> Self {
        Self { value: written.parse().unwrap_or(0.0), share: written.contains('.') }
    }
}

/// The step a `when` stands for on `timeline` (A1111 truncates toward zero, and no further
/// than the run's last step; below 1 it ends no text).
fn when_step(when: &When, t: Timeline) -> i64 {
    let v = when.value;
    let v = match (when.share, t.first_pass) {
        (true, None) => v * f64::from(t.steps),
        (true, Some(_)) => (v - 1.0) * f64::from(t.steps),
        (false, first) => v - f64::from(first.unwrap_or(0)),
    };
    (v as i64).min(i64::from(t.steps))
}

fn collect_steps(nodes: &[Node], t: Timeline, ends: &mut Vec<u32>) {
    for node in nodes {
        match node {
            Node::Text(_) => {}
            Node::Seq(inner) => collect_steps(inner, t, ends),
            Node::Scheduled { before, after, when } => {
                if let Ok(step) = u32::try_from(when_step(when, t))
                    && step >= 1
                {
                    ends.push(step);
                }
                collect_steps(before, t, ends);
                collect_steps(after, t, ends);
            }
            Node::Alternate(options) => {
                ends.extend(1..=t.steps);
                options.iter().for_each(|o| collect_steps(o, t, ends));
            }
        }
    }
}

fn write_at(nodes: &[Node], step: u32, t: Timeline, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(s) => out.push_str(s),
            Node::Seq(inner) => write_at(inner, step, t, out),
            Node::Scheduled { before, after, when } => {
                let branch = if i64::from(step) <= when_step(when, t) { before } else { after };
                write_at(branch, step, t, out);
            }
            Node::Alternate(options) => {
                let pick = (step as usize).saturating_sub(1) % options.len().max(1);
                if let Some(option) = options.get(pick) {
                    write_at(option, step, t, out);
                }
            }
        }
    }
}

/// A recursive-descent reading of A1111's Lark grammar: `start: (prompt | /[][():]/+)*`,
/// `prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*`. Each method takes the
/// position to read from and gives what it read and where it stopped, or `None`.
struct Parser<'a> {
    s: &'a [char],
}

/// Characters a plain run stops at (A1111's `plain: /([^\\\[\]():|]|\\.)+/`).
const SPECIAL: [char; 7] = ['\\', '[', ']', '(', ')', ':', '|'];

impl Parser<'_> {
    fn at(&self, i: usize) -> Option<char> {
        self.s.get(i).copied()
    }

    /// The whole prompt: items, and where none parses, a bracket or colon as it is; a `|` or
    /// a lone `\` outside any bracket is no prompt A1111 parses.
    fn start(&self) -> Option<Vec<Node>> {
        let mut nodes = Vec::new();
        let mut i = 0;
        while i < self.s.len() {
            if let Some((node, next)) = self.item(i) {
                nodes.push(node);
                i = next;
            } else if matches!(self.s[i], '[' | ']' | '(' | ')' | ':') {
                nodes.push(Node::Text(self.s[i].to_string()));
                i += 1;
            } else {
                return None;
            }
        }
        Some(nodes)
    }

    /// Items while they parse (possibly none).
    fn prompt(&self, mut i: usize) -> (Vec<Node>, usize) {
        let mut nodes = Vec::new();
        while let Some((node, next)) = self.item(i) {
            nodes.push(node);
            i = next;
        }
        (nodes, i)
    }

    fn item(&self, i: usize) -> Option<(Node, usize)> {
        match self.at(i)? {
            '(' => self.round(i),
            '[' => self.scheduled(i).or_else(|| self.alternate(i)).or_else(|| self.square(i)),
            _ => self.plain(i),
        }
    }

    fn plain(&self, i: usize) -> Option<(Node, usize)> {
        let mut j = i;
        loop {
            match self.at(j) {
                Some('\\') if self.at(j + 1).is_some_and(|c| c != '\n') => j += 2,
                Some(c) if !SPECIAL.contains(&c) => j += 1,
                _ => break,
            }
        }
        (j > i).then(|| (Node::Text(self.s[i..j].iter().collect()), j))
    }

    /// `(prompt)` or `(prompt:prompt)`, kept as written.
    fn round(&self, i: usize) -> Option<(Node, usize)> {
        let (inner, mut j) = self.prompt(i + 1);
        let mut nodes = vec![Node::Text("(".into())];
        nodes.extend(inner);
        if self.at(j) == Some(':') {
            let (weight, k) = self.prompt(j + 1);
            nodes.push(Node::Text(":".into()));
            nodes.extend(weight);
            j = k;
        }
        (self.at(j) == Some(')')).then(|| {
            nodes.push(Node::Text(")".into()));
            (group(nodes), j + 1)
        })
    }

    /// `[prompt]`, kept as written.
    fn square(&self, i: usize) -> Option<(Node, usize)> {
        let (inner, j) = self.prompt(i + 1);
        (self.at(j) == Some(']')).then(|| {
            let mut nodes = vec![Node::Text("[".into())];
            nodes.extend(inner);
            nodes.push(Node::Text("]".into()));
            (group(nodes), j + 1)
        })
    }

    /// `[before:after:when]` or `[after:when]`: spaces may stand around `when`.
    fn scheduled(&self, i: usize) -> Option<(Node, usize)> {
        let (first, j) = self.prompt(i + 1);
        if self.at(j) != Some(':') {
            return None;
        }
        if let Some((when, k)) = self.when(j + 1) {
            return Some((Node::Scheduled { before: Vec::new(), after: first, when }, k));
        }
        let (second, k) = self.prompt(j + 1);
        if self.at(k) != Some(':') {
            return None;
        }
        let (when, end) = self.when(k + 1)?;
        Some((Node::Scheduled { before: first, after: second, when }, end))
    }

    /// `[WHITESPACE] NUMBER [WHITESPACE] "]"` from `i`: the number, and the position past the
    /// bracket.
    fn when(&self, i: usize) -> Option<(When, usize)> {
        let skip = |mut j: usize| {
            while self.at(j).is_some_and(char::is_whitespace) {
                j += 1;
            }
            j
        };
        let start = skip(i);
        let end = self.number(start)?;
        let close = skip(end);
        (self.at(close) == Some(']')).then(|| (When::read(&self.s[start..end].iter().collect::<String>()), close + 1))
    }

    /// Lark's SIGNED_NUMBER from `i`: `[+-]` then digits with an optional `.` part (or `.`
    /// and digits), then an optional exponent; where it ends.
    fn number(&self, i: usize) -> Option<usize> {
        let digits = |mut j: usize| {
            let from = j;
            while self.at(j).is_some_and(|c| c.is_ascii_digit()) {
                j += 1;
            }
            (j, j > from)
        };
        let mut j = if matches!(self.at(i), Some('+' | '-')) { i + 1 } else { i };
        let (after_int, int) = digits(j);
        j = after_int;
        let mut any = int;
        if self.at(j) == Some('.') {
            let (after_frac, frac) = digits(j + 1);
            if int || frac {
                j = after_frac;
                any = true;
            }
        }
        if !any {
            return None;
        }
        if matches!(self.at(j), Some('e' | 'E')) {
            let sign = if matches!(self.at(j + 1), Some('+' | '-')) { j + 2 } else { j + 1 };
            let (after_exp, exp) = digits(sign);
            if exp {
                j = after_exp;
            }
        }
        Some(j)
    }

    /// `[prompt|prompt|…]`: the first option may be empty, as may the others.
    fn alternate(&self, i: usize) -> Option<(Node, usize)> {
        let (first, mut j) = self.prompt(i + 1);
        let mut options = vec![first];
        while self.at(j) == Some('|') {
            let (next, k) = self.prompt(j + 1);
            options.push(next);
            j = k;
        }
        (options.len() > 1 && self.at(j) == Some(']')).then(|| (Node::Alternate(options), j + 1))
    }
}

/// Nodes that stand as one item: text joined where it can be.
fn group(nodes: Vec<Node>) -> Node {
    if nodes.iter().all(|n| matches!(n, Node::Text(_))) {
        let text = nodes.iter().map(|n| if let Node::Text(s) = n { s.as_str() } else { "" }).collect();
        return Node::Text(text);
    }
    Node::Seq(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(prompt: &str, timeline: Timeline) -> Vec<(u32, String)> {
        schedule(prompt, timeline).into_iter().map(|s| (s.end_at_step, s.text)).collect()
    }

    fn pairs(v: &[(u32, &str)]) -> Vec<(u32, String)> {
        v.iter().map(|(s, t)| (*s, t.to_string())).collect()
    }

    const TEN: Timeline = Timeline { steps: 10, first_pass: None };

    /// The examples of A1111's own docstring, answers as A1111 gives them.
    #[test]
    fn a1111s_examples_schedule_as_a1111_schedules_them() {
        let cases: [(&str, &[(u32, &str)]); 13] = [
            ("test", &[(10, "test")]),
            ("a [b:3]", &[(3, "a "), (10, "a b")]),
            ("a [b: 3]", &[(3, "a "), (10, "a b")]),
            ("a [[[b]]:2]", &[(2, "a "), (10, "a [[b]]")]),
            ("[(a:2):3]", &[(3, ""), (10, "(a:2)")]),
            ("a [b : c : 1] d", &[(1, "a b  d"), (10, "a  c  d")]),
            ("a[b:[c:d:2]:1]e", &[(1, "abe"), (2, "ace"), (10, "ade")]),
            ("a [unbalanced", &[(10, "a [unbalanced")]),
            ("a [b:.5] c", &[(5, "a  c"), (10, "a b c")]),
            // A1111's docstring says [(5, "a  c"), (10, "a {b|d{ c")] ("not handling this right
            // now"), but its parser (lark 1.1.2, as A1111 pins it) refuses the prompt: drawn whole.
            ("a [{b|d{:.5] c", &[(10, "a [{b|d{:.5] c")]),
            ("((a][:b:c [d:3]", &[(3, "((a][:b:c "), (10, "((a][:b:c d")]),
            (
                "[a|(b:1.1)]",
                &[
                    (1, "a"),
                    (2, "(b:1.1)"),
                    (3, "a"),
                    (4, "(b:1.1)"),
                    (5, "a"),
                    (6, "(b:1.1)"),
                    (7, "a"),
                    (8, "(b:1.1)"),
                    (9, "a"),
                    (10, "(b:1.1)"),
                ],
            ),
            (
                "[fe|]male",
                &[
                    (1, "female"),
                    (2, "male"),
                    (3, "female"),
                    (4, "male"),
                    (5, "female"),
                    (6, "male"),
                    (7, "female"),
                    (8, "male"),
                    (9, "female"),
                    (10, "male"),
                ],
            ),
        ];
        for (prompt, want) in cases {
            assert_eq!(g(prompt, TEN), pairs(want), "{prompt:?}");
        }
        let three_empty = g("[fe|||]male", TEN);
        let texts: Vec<&str> = three_empty.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["female", "male", "male", "male", "female", "male", "male", "male", "female", "male"]);
    }

    #[test]
    fn a_hires_fix_counts_on_from_the_first_pass() {
        let hires = Timeline { steps: 10, first_pass: Some(10) };
        assert_eq!(g("a [b:.5] c", hires), pairs(&[(10, "a b c")]));
        assert_eq!(g("a [b:1.5] c", hires), pairs(&[(5, "a  c"), (10, "a b c")]));
        // A whole number past the first pass's steps, in the second's.
        assert_eq!(g("[cat:dog:13]", hires), pairs(&[(3, "cat"), (10, "dog")]));
    }

    #[test]
    fn emphasis_escapes_and_stray_bars_stay_as_written() {
        assert_eq!(g("(red:1.2) [blue] \\[x\\]", TEN), pairs(&[(10, "(red:1.2) [blue] \\[x\\]")]));
        // A bar outside brackets is no prompt A1111 parses: the whole prompt, nothing edited.
        assert_eq!(g("a | [b:3]", TEN), pairs(&[(10, "a | [b:3]")]));
        // Editing inside emphasis.
        assert_eq!(g("([cat:dog:5]:1.2)", TEN), pairs(&[(5, "(cat:1.2)"), (10, "(dog:1.2)")]));
    }
}
