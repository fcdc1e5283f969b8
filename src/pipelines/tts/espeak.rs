//! espeak-ng, loaded at run time (`libespeak-ng.so.1`; building needs no -dev package).
//! espeak-ng keeps global state (current voice, a look-ahead character, the decoder), so
//! every call goes through one process-wide mutex.
//!
//! The pinned espeak-ng that `reelbox setup` installs into `<data>/espeak-ng/` (Piper 1.8's
//! own build, [`PINNED_VERSION`], which the binary carries) is tried first, with its own
//! data; the system's library is the fallback (`reelbox doctor` warns when it is not 1.52).

// Loads libespeak-ng by hand and calls it through raw pointers; each unsafe block says why
// it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::clause::{self, Terminator};

/// Library names tried in order.
pub const LIBRARY_NAMES: &[&str] = &["libespeak-ng.so.1", "libespeak-ng.so"];
/// The pinned build's version, as its `espeak_Info` says: espeak-ng at the commit Piper 1.8
/// builds (`setup::espeak::SOURCE_COMMIT`), after the 1.52.0 release.
pub const PINNED_VERSION: &str = "1.52.0.1";
/// What installs the pinned espeak-ng, said wherever the system's is found in its place.
pub const SETUP_PINS: &str =
    "reelbox setup   (as root on a packaged install; installs Piper's espeak-ng 1.52.0.1 into the data dir)";
/// The pinned library's file name inside [`pinned_dir`].
pub const PINNED_LIBRARY: &str = "libespeak-ng.so.1";
/// The pinned data directory's name inside [`pinned_dir`].
pub const PINNED_DATA: &str = "espeak-ng-data";

/// Where `reelbox setup` installs the pinned espeak-ng: `<data>/espeak-ng/`.
pub fn pinned_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("espeak-ng")
}

const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
/// `espeakCHARS_AUTO`, as Piper passes: UTF-8 when valid, which Rust strings always are.
const CHARS_AUTO: c_int = 0;
const PHONEMES_IPA: c_int = 0x02;

/// espeak-ng could not be loaded or refused a call.
#[derive(Debug, thiserror::Error)]
pub enum EspeakError {
    #[error(
        "espeak-ng is not installed (tried {tried}): {source}; fix: `reelbox setup`, or `sudo apt-get install libespeak-ng1 espeak-ng-data` (dnf: espeak-ng)"
    )]
    NotInstalled {
        tried: String,
        #[source]
        source: LoadCause,
    },
    #[error("espeak-ng cannot start (is its data installed? ESPEAK_DATA_PATH={data:?}); fix: install espeak-ng-data")]
    Initialize { data: Option<String> },
    #[error("espeak-ng has no voice {voice:?}; fix: install espeak-ng-data, or check the voice's espeak.voice")]
    Voice { voice: String },
    #[error("text contains a NUL character")]
    Nul,
}

/// Why the espeak-ng library did not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadCause {
    #[error(transparent)]
    Open(libloading::Error),
    #[error("missing symbol: {0}")]
    Symbol(#[source] libloading::Error),
    #[error("not loaded")]
    NotLoaded,
}

type InitializeFn = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type SetVoiceFn = unsafe extern "C" fn(*const c_char) -> c_int;
type TextToPhonemesFn = unsafe extern "C" fn(*mut *const c_void, c_int, c_int) -> *const c_char;
type TextToPhonemesTermFn = unsafe extern "C" fn(*mut *const c_void, c_int, c_int, *mut c_int) -> *const c_char;
type InfoFn = unsafe extern "C" fn(*mut *const c_char) -> *const c_char;

struct Espeak {
    // Kept alive for the function pointers below.
    _lib: libloading::Library,
    set_voice: SetVoiceFn,
    to_phonemes: TextToPhonemesFn,
    to_phonemes_term: Option<TextToPhonemesTermFn>,
    version: String,
    data_dir: String,
    /// The library file, or the system name it was found by.
    library: String,
    pinned: bool,
    voice: Option<String>,
}

// SAFETY: the raw function pointers are only called with the global mutex held.
unsafe impl Send for Espeak {}

/// One library to try: a path or system name, and the data directory to pass.
struct Candidate {
    library: String,
    data: Option<CString>,
    pinned: bool,
}

fn candidates(pinned: Option<&Path>) -> Vec<Candidate> {
    let mut out = Vec::new();
    if let Some(dir) = pinned {
        let lib = dir.join(PINNED_LIBRARY);
        let data = dir.join(PINNED_DATA);
        if lib.is_file() && data.is_dir() {
            let data = CString::new(data.display().to_string()).ok();
            out.push(Candidate { library: lib.display().to_string(), data, pinned: true });
        }
    }
    out.extend(LIBRARY_NAMES.iter().map(|n| Candidate { library: (*n).to_string(), data: None, pinned: false }));
    out
}

fn load(pinned: Option<&Path>) -> Result<Espeak, EspeakError> {
    let mut last_err = None;
    for candidate in candidates(pinned) {
        let name = &candidate.library;
        // SAFETY: loading runs espeak-ng's initialisers, which only set up its globals.
        let lib = match unsafe { libloading::Library::new(name) } {
            Ok(lib) => lib,
            Err(e) => {
                last_err = Some(e);
                continue;
            }
        };
        // SAFETY: the signatures match espeak-ng's speak_lib.h for every release since 1.49.
        unsafe {
            let sym_err =
                |e: libloading::Error| EspeakError::NotInstalled { tried: name.clone(), source: LoadCause::Symbol(e) };
            let initialize: InitializeFn = *lib.get::<InitializeFn>(b"espeak_Initialize").map_err(sym_err)?;
            let set_voice: SetVoiceFn = *lib.get::<SetVoiceFn>(b"espeak_SetVoiceByName").map_err(sym_err)?;
            let to_phonemes: TextToPhonemesFn =
                *lib.get::<TextToPhonemesFn>(b"espeak_TextToPhonemes").map_err(sym_err)?;
            let to_phonemes_term =
                lib.get::<TextToPhonemesTermFn>(b"espeak_TextToPhonemesWithTerminator").ok().map(|s| *s);
            let info: Option<InfoFn> = lib.get::<InfoFn>(b"espeak_Info").ok().map(|s| *s);
            let data_env = crate::config::env::espeak_data_path();
            // The pinned copy gets its own data (its compiled-in path is the wheel builder's);
            // NULL: espeak-ng uses ESPEAK_DATA_PATH, then its compiled-in default.
            let data_ptr = candidate.data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr());
            if initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_ptr, 0) < 0 {
                let data = candidate.data.as_ref().map(|d| d.to_string_lossy().into_owned()).or(data_env);
                return Err(EspeakError::Initialize { data });
            }
            let (version, data_dir) = match info {
                Some(info) => {
                    let mut data: *const c_char = std::ptr::null();
                    let v = info(&mut data);
                    let v = if v.is_null() { String::new() } else { CStr::from_ptr(v).to_string_lossy().into_owned() };
                    let d = if data.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(data).to_string_lossy().into_owned()
                    };
                    (v, d)
                }
                None => (String::new(), String::new()),
            };
            tracing::debug!(version = %version, data = %data_dir, library = %name, terminator_api = to_phonemes_term.is_some(), "espeak-ng loaded");
            return Ok(Espeak {
                _lib: lib,
                set_voice,
                to_phonemes,
                to_phonemes_term,
                version,
                data_dir,
                library: name.clone(),
                pinned: candidate.pinned,
                voice: None,
            });
        }
    }
    let source = last_err.map_or(LoadCause::NotLoaded, LoadCause::Open);
    Err(EspeakError::NotInstalled { tried: LIBRARY_NAMES.join(", "), source })
}

/// The loaded library; `None` until a load succeeds. A failed load is not remembered, so
/// installing espeak-ng (e.g. by `reelbox setup`) takes effect without a restart.
static ESPEAK: Mutex<Option<Espeak>> = Mutex::new(None);
/// Where the pinned espeak-ng is looked for (set by [`use_pinned`]).
static PINNED_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Makes later loads try the pinned espeak-ng in `dir` (see [`pinned_dir`]) before the
/// system's. A system library loaded earlier is replaced once the pinned one is installed.
pub fn use_pinned(dir: &Path) {
    {
        let mut pinned = PINNED_DIR.lock().unwrap_or_else(|p| p.into_inner());
        if pinned.as_deref() != Some(dir) {
            *pinned = Some(dir.to_path_buf());
        }
    }
    // Checked on every call (one stat), so a copy installed while running takes over.
    let mut guard = ESPEAK.lock().unwrap_or_else(|p| p.into_inner());
    // Dropping the system copy unloads it; the next call loads the pinned one instead.
    if guard.as_ref().is_some_and(|e| !e.pinned) && dir.join(PINNED_LIBRARY).is_file() {
        *guard = None;
    }
}

fn with_espeak<T>(f: impl FnOnce(&mut Espeak) -> Result<T, EspeakError>) -> Result<T, EspeakError> {
    let pinned = PINNED_DIR.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // A panic while phonemizing leaves espeak-ng's state as good as any other call would.
    let mut guard = ESPEAK.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        *guard = Some(load(pinned.as_deref())?);
    }
    match guard.as_mut() {
        Some(e) => f(e),
        None => Err(EspeakError::NotInstalled { tried: LIBRARY_NAMES.join(", "), source: LoadCause::NotLoaded }),
    }
}

/// The loaded espeak-ng's version and data directory, for `reelbox doctor`.
pub fn info() -> Result<(String, String), EspeakError> {
    with_espeak(|e| Ok((e.version.clone(), e.data_dir.clone())))
}

/// Which espeak-ng is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub version: String,
    pub data_dir: String,
    /// The library's path, or the system name it was found by.
    pub library: String,
    /// True for the copy `reelbox setup` installed.
    pub pinned: bool,
}

impl Loaded {
    /// Why speech may sound off with this copy: any build but Piper's own writes some
    /// words differently, the system's (Debian 12's 1.51, or a 1.52.0 release) and the
    /// 1.52.0 an earlier `reelbox setup` installed alike (`None` for Piper's build).
    pub fn mismatch(&self) -> Option<String> {
        (self.version != PINNED_VERSION).then(|| {
            let which = if self.pinned { "the espeak-ng an earlier `reelbox setup` installed" } else { "the system's espeak-ng" };
            format!(
                "{which}, {} ({}), is used; Piper speaks with espeak-ng {PINNED_VERSION}, so some words may sound different",
                self.version, self.library
            )
        })
    }
}

/// The loaded espeak-ng (loading it when needed).
pub fn loaded() -> Result<Loaded, EspeakError> {
    with_espeak(|e| {
        Ok(Loaded {
            version: e.version.clone(),
            data_dir: e.data_dir.clone(),
            library: e.library.clone(),
            pinned: e.pinned,
        })
    })
}

/// One clause as espeak-ng phonemized it.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// IPA phonemes, language-switch markers removed.
    pub phonemes: String,
    pub terminator: Terminator,
    /// The source text of the clause (with its punctuation).
    pub text: String,
}

/// Phonemizes `text` clause by clause with `voice` (an espeak-ng voice name like `en-us`).
pub fn phonemize(text: &str, voice: &str) -> Result<Vec<Clause>, EspeakError> {
    let c_text = CString::new(text).map_err(|_| EspeakError::Nul)?;
    with_espeak(|e| {
        if e.voice.as_deref() != Some(voice) {
            let c_voice = CString::new(voice).map_err(|_| EspeakError::Nul)?;
            // SAFETY: c_voice is a valid C string for the duration of the call.
            if unsafe { (e.set_voice)(c_voice.as_ptr()) } != 0 {
                return Err(EspeakError::Voice { voice: voice.to_string() });
            }
            e.voice = Some(voice.to_string());
        }
        let base = c_text.as_ptr() as usize;
        let mut ptr: *const c_void = c_text.as_ptr().cast();
        let mut clauses = Vec::new();
        let mut carry = String::new();
        while !ptr.is_null() {
            let start = (ptr as usize).saturating_sub(base).min(text.len());
            let mut term_value: c_int = 0;
            // SAFETY: `ptr` points into `c_text`, which outlives the loop; espeak-ng advances it
            // within the string or sets it to NULL at the end. The returned phoneme string is
            // espeak-ng's static buffer, copied before the next call.
            let phonemes = unsafe {
                let out = match e.to_phonemes_term {
                    Some(f) => f(&mut ptr, CHARS_AUTO, PHONEMES_IPA, &mut term_value),
                    None => (e.to_phonemes)(&mut ptr, CHARS_AUTO, PHONEMES_IPA),
                };
                if out.is_null() { String::new() } else { CStr::from_ptr(out).to_string_lossy().into_owned() }
            };
            let at_end = ptr.is_null();
            let end = if at_end { text.len() } else { (ptr as usize).saturating_sub(base).min(text.len()) };
            let consumed = text.get(start..end).unwrap_or_default();
            let window = format!("{carry}{consumed}");
            let (own_len, recovered) = clause::split_consumed(&window, at_end);
            let terminator = match e.to_phonemes_term {
                Some(_) => clause::from_clause_value(term_value as u32),
                None => recovered,
            };
            let own = window.get(..own_len).unwrap_or_default().to_string();
            carry = window.get(own_len..).unwrap_or_default().to_string();
            clauses.push(Clause { phonemes: strip_language_flags(&phonemes), terminator, text: own });
        }
        Ok(clauses)
    })
}

/// Removes espeak-ng's language-switch markers like `(en)` and `(fr)`.
pub fn strip_language_flags(phonemes: &str) -> String {
    let mut out = String::with_capacity(phonemes.len());
    let mut depth = 0usize;
    for c in phonemes.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_switch_markers_are_removed() {
        assert_eq!(strip_language_flags("(en)hˈɛloʊ(fr) bɔ̃ʒuʁ"), "hˈɛloʊ bɔ̃ʒuʁ");
    }

    #[test]
    fn only_pipers_own_build_speaks_without_a_warning() {
        let loaded = |version: &str, pinned| Loaded {
            version: version.into(),
            data_dir: "/data/espeak-ng/espeak-ng-data".into(),
            library: "libespeak-ng.so.1".into(),
            pinned,
        };
        assert_eq!(loaded(PINNED_VERSION, true).mismatch(), None);
        // What setup installed before it carried Piper's build: the wheel's 1.52.0 release.
        let old = loaded("1.52.0", true).mismatch().expect("an older pinned copy is a mismatch");
        assert!(old.contains("an earlier `reelbox setup`") && old.contains("1.52.0 ("), "{old}");
        for system in ["1.51", "1.52.0"] {
            let why = loaded(system, false).mismatch().expect("the system's is a mismatch");
            assert!(why.starts_with("the system's espeak-ng") && why.contains(PINNED_VERSION), "{why}");
        }
    }
}
