//! A script or a text read from a file or standard input as the box takes it: UTF-8, its
//! byte-order mark dropped (`reelbox::text::decode`); a file in another encoding (Latin-1
//! from an old editor) refused saying where its first such byte is and how to convert it.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, anyhow};

/// The text of `path`, or of standard input for `-`; `what` names it ("script", "text").
/// A file that cannot be read is the `std::io::Error` itself, for the caller to word.
pub fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read the {what} from standard input"))?;
        return reelbox::text::decode(bytes).map_err(|e| {
            anyhow!(
                "cannot read the {what} from standard input: {e}; save it as UTF-8, e.g. pass it through \
                 `iconv -f latin1 -t utf-8`"
            )
        });
    }
    let bytes = std::fs::read(path)?;
    reelbox::text::decode(bytes).map_err(|e| {
        let name = path.display();
        let stem = path.file_stem().map_or_else(|| "text".into(), |s| s.to_string_lossy());
        anyhow!(
            "cannot read the {what} file {name}: {e}; save it as UTF-8, e.g. \
             `iconv -f latin1 -t utf-8 {name} > {stem}-utf8.txt`"
        )
    })
}

/// How a script or text file is written, by its name: `markdown` for Markdown's
/// extensions, else `text`.
pub fn format_of(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if matches!(ext.as_deref(), Some("md" | "markdown" | "mdown" | "mkd")) { "markdown" } else { "text" }
}
