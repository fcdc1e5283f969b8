//! What reelbox knows of a voice's language, one row each: its name for messages, the
//! writing systems its voice reads, and which full stops it reads on through. A voice's
//! language is the `espeak.voice` of its `.onnx.json` ("de", "en-us", "cmn").
//!
//! The titles are hand lists, kept small: the sentence splitters on crates.io were tried
//! first (2025: `sentencex` 0.1.33, maintained, split "M. Dupont", "Dña. Ana", "p. ex.",
//! "Mevr. de Vries" and "1.º de mayo" and read on through "etc. Luego"; `srx`, `punkt` and
//! `nnsplit` are unmaintained or need trained data or a model download).

use unicode_script::Script;

/// One language as a voice speaks it.
#[derive(Debug, PartialEq, Eq)]
pub struct Language {
    /// Its ISO 639 code as espeak-ng names its voices (the part before `-`).
    pub code: &'static str,
    /// Its name in English, as messages say it ("the German voice …").
    pub name: &'static str,
    /// The writing systems its voice reads besides Latin (which every espeak-ng voice
    /// spells) and the common marks, or `None` when not known: then it reads everything.
    pub(super) scripts: Option<&'static [Script]>,
    /// Titles and abbreviations a sentence always reads on from ("Dr.", "Sr.", "z. B."),
    /// lower case, a spaced one without its spaces ("z.b"). Empty: English's apply.
    pub(super) reads_on: &'static [&'static str],
    /// Its month names, where a number's full stop before one makes an ordinal, not a
    /// sentence's end ("am 3. Oktober"). Only German writes dates so among the languages
    /// here: Spanish, French, Italian, Portuguese and Dutch write months in lower case,
    /// which reads on anyway, and English writes no ordinal dot.
    pub(super) months: &'static [&'static str],
}

const fn latin(code: &'static str, name: &'static str) -> Language {
    Language { code, name, scripts: Some(&[]), reads_on: &[], months: &[] }
}

const fn written_in(code: &'static str, name: &'static str, scripts: &'static [Script]) -> Language {
    Language { code, name, scripts: Some(scripts), reads_on: &[], months: &[] }
}

const fn with_titles(code: &'static str, name: &'static str, reads_on: &'static [&'static str]) -> Language {
    Language { code, name, scripts: Some(&[]), reads_on, months: &[] }
}

/// English, whose titles also stand for a language without its own list.
pub static ENGLISH: Language = with_titles(
    "en",
    "English",
    &["dr", "mr", "mrs", "ms", "mx", "st", "prof", "mt", "rev", "fr", "gen", "capt", "lt", "sgt", "vs", "e.g", "i.e"],
);

/// A voice whose language is not known: English's titles, every writing system read.
pub static UNKNOWN: Language = Language { code: "", name: "", scripts: None, reads_on: &[], months: &[] };

use Script::*;

static LANGUAGES: &[Language] = &[
    Language {
        code: "de",
        name: "German",
        scripts: Some(&[]),
        reads_on: &[
            "dr", "prof", "hr", "fr", "frl", "nr", "st", "str", "z.b", "u.a", "d.h", "bzw", "bspw", "vgl", "ca",
            "inkl", "evtl", "ggf", "sog", "z.t", "u.u", "dipl",
        ],
        months: &[
            "januar",
            "jänner",
            "februar",
            "feber",
            "märz",
            "april",
            "mai",
            "juni",
            "juli",
            "august",
            "september",
            "oktober",
            "november",
            "dezember",
        ],
    },
    with_titles(
        "es",
        "Spanish",
        &[
            "sr", "sra", "srta", "sres", "sras", "dr", "dra", "dña", "dn", "ud", "uds", "vd", "vds", "lic", "ing",
            "prof", "sto", "sta", "av", "avda", "p.ej",
        ],
    ),
    with_titles(
        "fr",
        "French",
        &["mm", "mme", "mmes", "mlle", "mlles", "mgr", "me", "dr", "pr", "st", "ste", "p.ex", "c.-à-d", "cf"],
    ),
    with_titles(
        "it",
        "Italian",
        &[
            "sig", "sig.ra", "sig.na", "sigg", "dott", "dott.ssa", "prof", "prof.ssa", "avv", "ing", "arch", "geom",
            "rag", "mons", "p.es", "es", "cfr",
        ],
    ),
    with_titles(
        "pt",
        "Portuguese",
        &["sr", "sra", "srta", "dr", "dra", "prof", "profa", "eng", "exmo", "exma", "av", "p.ex"],
    ),
    with_titles(
        "nl",
        "Dutch",
        &[
            "dhr", "mevr", "mw", "mr", "dr", "drs", "ir", "ing", "prof", "st", "bijv", "d.w.z", "o.a", "m.a.w",
            "i.p.v", "t.a.v",
        ],
    ),
    written_in("ar", "Arabic", &[Arabic]),
    written_in("fa", "Persian", &[Arabic]),
    written_in("ur", "Urdu", &[Arabic]),
    written_in("sd", "Sindhi", &[Arabic]),
    written_in("ug", "Uyghur", &[Arabic]),
    written_in("ps", "Pashto", &[Arabic]),
    written_in("he", "Hebrew", &[Hebrew]),
    written_in("ru", "Russian", &[Cyrillic]),
    written_in("uk", "Ukrainian", &[Cyrillic]),
    written_in("be", "Belarusian", &[Cyrillic]),
    written_in("bg", "Bulgarian", &[Cyrillic]),
    written_in("mk", "Macedonian", &[Cyrillic]),
    written_in("sr", "Serbian", &[Cyrillic]),
    written_in("kk", "Kazakh", &[Cyrillic]),
    written_in("ky", "Kyrgyz", &[Cyrillic]),
    written_in("tt", "Tatar", &[Cyrillic]),
    written_in("ba", "Bashkir", &[Cyrillic]),
    written_in("mn", "Mongolian", &[Cyrillic]),
    written_in("el", "Greek", &[Greek]),
    written_in("grc", "Ancient Greek", &[Greek]),
    written_in("hy", "Armenian", &[Armenian]),
    written_in("ka", "Georgian", &[Georgian]),
    written_in("hi", "Hindi", &[Devanagari]),
    written_in("mr", "Marathi", &[Devanagari]),
    written_in("ne", "Nepali", &[Devanagari]),
    written_in("sa", "Sanskrit", &[Devanagari]),
    written_in("kok", "Konkani", &[Devanagari]),
    written_in("bn", "Bengali", &[Bengali]),
    written_in("as", "Assamese", &[Bengali]),
    written_in("bpy", "Bishnupriya Manipuri", &[Bengali]),
    written_in("pa", "Punjabi", &[Gurmukhi]),
    written_in("gu", "Gujarati", &[Gujarati]),
    written_in("or", "Odia", &[Oriya]),
    written_in("ta", "Tamil", &[Tamil]),
    written_in("te", "Telugu", &[Telugu]),
    written_in("kn", "Kannada", &[Kannada]),
    written_in("ml", "Malayalam", &[Malayalam]),
    written_in("si", "Sinhala", &[Sinhala]),
    written_in("th", "Thai", &[Thai]),
    written_in("lo", "Lao", &[Lao]),
    written_in("km", "Khmer", &[Khmer]),
    written_in("my", "Burmese", &[Myanmar]),
    written_in("am", "Amharic", &[Ethiopic]),
    written_in("chr", "Cherokee", &[Cherokee]),
    written_in("ja", "Japanese", &[Han, Hiragana, Katakana]),
    written_in("cmn", "Chinese", &[Han, Bopomofo]),
    written_in("zh", "Chinese", &[Han, Bopomofo]),
    written_in("yue", "Cantonese", &[Han]),
    written_in("hak", "Hakka", &[Han]),
    written_in("ko", "Korean", &[Hangul, Han]),
    latin("af", "Afrikaans"),
    latin("ca", "Catalan"),
    latin("cs", "Czech"),
    latin("cy", "Welsh"),
    latin("da", "Danish"),
    latin("eo", "Esperanto"),
    latin("et", "Estonian"),
    latin("eu", "Basque"),
    latin("fi", "Finnish"),
    latin("ga", "Irish"),
    latin("gd", "Scottish Gaelic"),
    latin("gl", "Galician"),
    latin("hr", "Croatian"),
    latin("bs", "Bosnian"),
    latin("hu", "Hungarian"),
    latin("id", "Indonesian"),
    latin("ms", "Malay"),
    latin("is", "Icelandic"),
    latin("la", "Latin"),
    latin("lb", "Luxembourgish"),
    latin("lt", "Lithuanian"),
    latin("lv", "Latvian"),
    latin("mt", "Maltese"),
    latin("nb", "Norwegian"),
    latin("no", "Norwegian"),
    latin("pl", "Polish"),
    latin("ro", "Romanian"),
    latin("sk", "Slovak"),
    latin("sl", "Slovenian"),
    latin("sq", "Albanian"),
    latin("sv", "Swedish"),
    latin("sw", "Swahili"),
    latin("tr", "Turkish"),
    latin("az", "Azerbaijani"),
    latin("uz", "Uzbek"),
    latin("vi", "Vietnamese"),
];

impl Language {
    /// The language of a voice whose espeak-ng language is `tag` ("de", "en-us", "pt_BR",
    /// "cmn"); [`UNKNOWN`] for one not listed here.
    pub fn of(tag: &str) -> &'static Language {
        let family = tag.split(['-', '_']).next().unwrap_or_default().to_ascii_lowercase();
        if family == ENGLISH.code {
            return &ENGLISH;
        }
        LANGUAGES.iter().find(|l| l.code == family).unwrap_or(&UNKNOWN)
    }

    /// The titles and abbreviations it reads on from: its own, else English's.
    pub fn titles(&self) -> &'static [&'static str] {
        if self.reads_on.is_empty() { ENGLISH.reads_on } else { self.reads_on }
    }

    /// Its month names, lower case, where a number's full stop before one is an ordinal's.
    pub fn months(&self) -> &'static [&'static str] {
        self.months
    }

    /// Every language listed, English first (for what reads their rules elsewhere, such as
    /// the web studio's copy of [`crate::text::stops`]'s tables).
    pub fn all() -> impl Iterator<Item = &'static Language> {
        std::iter::once(&ENGLISH).chain(LANGUAGES.iter())
    }

    /// Every language with titles of its own (for a rule that holds in any of them).
    pub(super) fn with_own_titles() -> impl Iterator<Item = &'static Language> {
        std::iter::once(&ENGLISH).chain(LANGUAGES.iter().filter(|l| !l.reads_on.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voice_s_language_is_found_by_its_family() {
        assert_eq!(Language::of("de").name, "German");
        assert_eq!(Language::of("en-us").name, "English");
        assert_eq!(Language::of("pt_BR").name, "Portuguese");
        assert_eq!(Language::of("cmn").name, "Chinese");
        assert_eq!(Language::of("xx"), &UNKNOWN);
        assert_eq!(Language::of(""), &UNKNOWN);
        assert_eq!(Language::of("xx").titles(), ENGLISH.reads_on);
    }

    #[test]
    fn every_language_is_listed_once() {
        let mut codes: Vec<&str> = LANGUAGES.iter().map(|l| l.code).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(before, codes.len());
    }
}
