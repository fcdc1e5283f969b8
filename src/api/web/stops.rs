//! `/web/stops.js`: the page's copy of where a full stop reads on in each language (titles,
//! abbreviations, German months), written by the daemon from `text::Language`'s own tables
//! so they are typed once. `sentences.js` imports it to cut New film's Listen sentence as
//! the render does, in the page, with no call to the box.

use serde_json::{Map, Value, json};

use crate::text::Language;
use crate::text::language::ENGLISH;

/// The module's text: `ENGLISH`, the rules of a language not listed (as
/// `text::Language::of` falls back to English's titles), and `LANGUAGES`, by espeak-ng
/// code, the languages whose full stops read on otherwise.
pub fn module() -> String {
    let rules = |l: &Language| json!({ "titles": l.titles(), "months": l.months() });
    let own: Map<String, Value> = Language::all()
        .filter(|l| l.titles() != ENGLISH.titles() || !l.months().is_empty())
        .map(|l| (l.code.to_string(), rules(l)))
        .collect();
    format!(
        "// Written by the daemon from src/text/language.rs (api/web/stops.rs): change the lists there.\n\
         export const ENGLISH = {};\nexport const LANGUAGES = {};\n",
        rules(&ENGLISH),
        Value::Object(own)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_carries_each_language_s_own_titles_and_months() {
        let m = module();
        assert!(m.contains("export const ENGLISH = {\"months\":[],\"titles\":[\"dr\",\"mr\""), "{m}");
        assert!(m.contains("\"de\":{\"months\":[\"januar\""), "{m}");
        assert!(m.contains("\"z.b\"") && m.contains("\"p.ej\"") && m.contains("\"mme\""), "{m}");
        assert!(!m.contains("\"sv\""), "a language with English's rules is left to ENGLISH: {m}");
    }
}
