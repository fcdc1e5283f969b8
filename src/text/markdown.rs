//! A script written in Markdown (`story.md`, notes from Obsidian or a README) read as the
//! plain script a render plans from: a voice would say "hash" for a heading's `#` and the
//! subtitles would show `*cold*` with its asterisks. CommonMark is parsed (pulldown-cmark,
//! what rustdoc uses) rather than stripped by patterns, so `*` in `2 * 3` and a `#` inside
//! a sentence are left as written.
//!
//! What becomes what: a heading is a scene of its own (a title card: its words are said
//! and drawn); a paragraph or a block quote's paragraph is a scene; a list or a table is one
//! scene whose items (rows) are sentences; an image is a `[direction]` from its alt text (it
//! says what the scene's picture shows); a link says its text; emphasis, code spans and
//! escapes say their text; code blocks, HTML (comments included: notes for the writer),
//! front matter and footnotes are not part of the film.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// `markdown` as a plain script: scenes separated by blank lines, each on one line.
pub fn to_script(markdown: &str) -> String {
    let options = Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_PLUSES_DELIMITED_METADATA_BLOCKS
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_TASKLISTS;
    let mut scenes = Scenes::default();
    // Inside what is not narrated (a code block, HTML, front matter, a footnote's text).
    let mut hidden = 0usize;
    // Inside a list or a table: its items are sentences of one scene.
    let mut grouped = 0usize;
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Start(Tag::CodeBlock(_) | Tag::HtmlBlock | Tag::MetadataBlock(_) | Tag::FootnoteDefinition(_)) => {
                hidden += 1
            }
            Event::End(
                TagEnd::CodeBlock | TagEnd::HtmlBlock | TagEnd::MetadataBlock(_) | TagEnd::FootnoteDefinition,
            ) => hidden = hidden.saturating_sub(1),
            _ if hidden > 0 => {}
            Event::Start(Tag::Heading { .. }) | Event::End(TagEnd::Heading(_)) | Event::Rule => scenes.end_scene(),
            Event::End(TagEnd::Paragraph) if grouped == 0 => scenes.end_scene(),
            Event::Start(Tag::List(_) | Tag::Table(_)) => {
                if grouped == 0 {
                    scenes.end_scene();
                }
                grouped += 1;
            }
            Event::End(TagEnd::List(_) | TagEnd::Table) => {
                grouped = grouped.saturating_sub(1);
                if grouped == 0 {
                    scenes.end_scene();
                }
            }
            Event::End(TagEnd::Item | TagEnd::TableHead | TagEnd::TableRow | TagEnd::Paragraph) => {
                scenes.end_sentence()
            }
            Event::End(TagEnd::TableCell) => scenes.push(", "),
            Event::Start(Tag::Image { .. }) => scenes.push("["),
            Event::End(TagEnd::Image) => scenes.push("]"),
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) => scenes.push(&t),
            Event::SoftBreak | Event::HardBreak => scenes.push(" "),
            // Inline HTML, footnote marks, task boxes and the markers of emphasis, links and
            // the rest: their text (if any) comes as its own events.
            _ => {}
        }
    }
    scenes.end_scene();
    scenes.done.join("\n\n")
}

/// The scenes made so far and the one being written.
#[derive(Default)]
struct Scenes {
    done: Vec<String>,
    current: String,
}

impl Scenes {
    fn push(&mut self, text: &str) {
        // A scene is one line: a line break in the text is a space, as in a paragraph.
        self.current.extend(text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }));
    }

    /// Ends a list item's or a row's sentence: with a full stop where it ends in a word (so
    /// "Eggs" and "Milk" are said and shown as two sentences, not "Eggs Milk"), and a space.
    fn end_sentence(&mut self) {
        let trimmed = self.current.trim_end().trim_end_matches(',').trim_end();
        self.current.truncate(trimmed.len());
        if self.current.chars().last().is_some_and(char::is_alphanumeric) {
            self.current.push('.');
        }
        if !self.current.is_empty() {
            self.current.push(' ');
        }
    }

    fn end_scene(&mut self) {
        let scene = self.current.split_whitespace().collect::<Vec<_>>().join(" ");
        if !scene.is_empty() {
            self.done.push(scene);
        }
        self.current.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::to_script;

    #[test]
    fn headings_are_title_scenes_and_emphasis_is_said_without_its_marks() {
        let md = "# My trip\n\nWe went to the *sea* — it was **cold**.\nThen we ate.\n\n## Day two\nThe sun came out.";
        assert_eq!(
            to_script(md),
            "My trip\n\nWe went to the sea — it was cold. Then we ate.\n\nDay two\n\nThe sun came out."
        );
    }

    #[test]
    fn directions_stay_and_an_image_becomes_one() {
        let md = "[a red barn at dawn] The farmer wakes.\n\n![a tractor in the rain](tractor.png)\nIt rains.";
        assert_eq!(to_script(md), "[a red barn at dawn] The farmer wakes.\n\n[a tractor in the rain] It rains.");
    }

    #[test]
    fn a_list_is_one_scene_of_sentences() {
        let md = "We need:\n\n- eggs\n- milk,\n- bread!\n\n1. First\n2. Second\n\nDone.";
        assert_eq!(to_script(md), "We need:\n\neggs. milk. bread!\n\nFirst. Second.\n\nDone.");
    }

    #[test]
    fn code_html_front_matter_and_footnotes_are_not_narrated() {
        let md = "---\ntitle: Draft\n---\n\nHello[^1] <b>there</b>.\n\n<!-- a note for me -->\n\n```\nlet x = 1;\n```\n\n\
                  Read [the docs](https://example.com) and `cargo run`.\n\n[^1]: A footnote.";
        assert_eq!(to_script(md), "Hello there.\n\nRead the docs and cargo run.");
    }

    #[test]
    fn plain_text_reads_as_it_did() {
        let text = "A cat sits on a mat.\nIt is 2 * 3 o'clock, #1 in town.\n\n[a dog] A dog barks.";
        assert_eq!(to_script(text), "A cat sits on a mat. It is 2 * 3 o'clock, #1 in town.\n\n[a dog] A dog barks.");
    }

    #[test]
    fn a_table_is_one_scene_of_its_rows() {
        let md = "| Day | Weather |\n| --- | --- |\n| Monday | Rain |\n| Tuesday | Sun |";
        assert_eq!(to_script(md), "Day, Weather. Monday, Rain. Tuesday, Sun.");
    }
}
