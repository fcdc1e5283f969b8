//! What reelbox knows of a voice's language, one row each: its name for messages and
//! which full stops it reads on through. A voice's
//! language is the `espeak.voice` of its `.onnx.json` ("de", "en-us", "cmn").
//!
//! The titles are hand lists, kept small: the sentence splitters on crates.io were tried
//! first (2025: `sentencex` 0.1.33, maintained, split "M. Dupont", "Dña. Ana", "p. ex.",
//! "Mevr. de Vries" and "1.º de mayo" and read on through "etc. Luego"; `srx`, `punkt` and
//! `nnsplit` are unmaintained or need trained data or a model download).

/// One language as a voice speaks it.
#[derive(Debug, PartialEq, Eq)]
pub struct Language {
    /// Its ISO 639 code as espeak-ng names its voices (the part before `-`).
    pub code: &'static str,
    /// Its name in English, as messages say it ("the German voice …").
    pub name: &'static str,
    /// Titles and abbreviations a sentence always reads on from ("Dr.", "Sr.", "z. B."),
    /// lower case, a spaced one without its spaces ("z.b"). Empty: English's apply.
    pub(super) reads_on: &'static [&'static str],
    /// Its month names, where a number's full stop before one makes an ordinal, not a
    /// sentence's end ("am 3. Oktober"). Only German writes dates so among the languages
    /// here: Spanish, French, Italian, Portuguese and Dutch write months in lower case,
    /// which reads on anyway, and English writes no ordinal dot.
    pub(super) months: &'static [&'static str],
}

const fn with_titles(code: &'static str, name: &'static str, reads_on: &'static [&'static str]) -> Language {
    Language { code, name, reads_on, months: &[] }
}

/// English, whose titles also stand for a language without its own list.
pub static ENGLISH: Language = with_titles(
    "en",
    "English",
    &["dr", "mr", "mrs", "ms", "mx", "st", "prof", "mt", "rev", "fr", "gen", "capt", "lt", "sgt", "vs", "e.g", "i.e"],
);

/// A voice whose language is not known: English's titles.
pub static UNKNOWN: Language = Language { code: "", name: "", reads_on: &[], months: &[] };

static LANGUAGES: &[Language] = &[
    Language {
        code: "de",
        name: "German",
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
    pub(super) fn titles(&self) -> &'static [&'static str] {
        if self.reads_on.is_empty() { ENGLISH.reads_on } else { self.reads_on }
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
