//! Builds the espeak-ng library reelbox speaks with: espeak-ng at the commit Piper 1.8
//! builds (`assets/espeak-ng/`, see its README), as Piper builds it (no audio output, no
//! MBROLA, Klatt or speech-player), into `$OUT_DIR/libespeak-ng.so.1`. The binary carries
//! it and `reelbox setup` installs it with its data (`src/setup/espeak.rs`): no registry
//! ships that build, and a voice's phonemes differ by espeak-ng build, so Piper's own is
//! the one that makes reelbox say what Piper says. It stays a library of its own, loaded
//! at run time like the system's espeak-ng, never linked into reelbox.

use std::path::{Path, PathBuf};

const SOURCE: &str = "assets/espeak-ng/src";
/// The library's sources, as espeak-ng's `src/libespeak-ng/CMakeLists.txt` lists them
/// without the optional parts Piper leaves out (async, MBROLA, Klatt, speech-player).
const LIBRARY: &[&str] = &[
    "common",
    "mnemonics",
    "error",
    "ieee80",
    "compiledata",
    "compiledict",
    "dictionary",
    "encoding",
    "intonation",
    "langopts",
    "numbers",
    "phoneme",
    "phonemelist",
    "readclause",
    "setlengths",
    "soundicon",
    "spect",
    "ssml",
    "synthdata",
    "synthesize",
    "tr_languages",
    "translate",
    "translateword",
    "voices",
    "wavegen",
    "speech",
    "espeak_api",
];
const UCD: &[&str] = &["case", "categories", "ctype", "proplist", "scripts", "tostring"];
/// What espeak-ng's CMake writes into `config.h` for Piper's options; the version is the
/// one that tree's `project()` names, which `espeak_Info` reports.
const CONFIG_H: &str = "#define HAVE_MKSTEMP 1
#define USE_ASYNC 0
#define USE_KLATT 0
#define USE_LIBPCAUDIO 0
#define USE_LIBSONIC 0
#define USE_MBROLA 0
#define USE_SPEECHPLAYER 0
#define PACKAGE_VERSION \"1.52.0.1\"
";
const LIBRARY_FILE: &str = "libespeak-ng.so.1";

fn main() {
    println!("cargo:rerun-if-changed=assets/espeak-ng");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let library = out.join(LIBRARY_FILE);
    // Only Linux boxes run reelbox; elsewhere (a `cargo check` on a laptop) the binary
    // carries no library and `reelbox setup` says so.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        std::fs::write(&library, b"").expect("write an empty placeholder into OUT_DIR");
        return;
    }
    let config = out.join("config");
    std::fs::create_dir_all(&config).expect("make OUT_DIR/config");
    std::fs::write(config.join("config.h"), CONFIG_H).expect("write config.h");

    let src = Path::new(SOURCE);
    let mut build = cc::Build::new();
    build
        .files(LIBRARY.iter().map(|f| src.join("libespeak-ng").join(format!("{f}.c"))))
        .files(UCD.iter().map(|f| src.join("ucd-tools/src").join(format!("{f}.c"))))
        .include(&config)
        .include(src.join("include"))
        .include(src.join("include/compat"))
        .include(src.join("ucd-tools/src/include"))
        .pic(true)
        // The same code whatever profile reelbox is built in: a debug build must speak as
        // the release does (and espeak-ng at -O0 is slow).
        .opt_level(2)
        .debug(false)
        .warnings(false)
        .extra_warnings(false)
        .cargo_warnings(false)
        .flag("-fvisibility=hidden")
        .flag("-fwrapv")
        .define("_FILE_OFFSET_BITS", "64")
        .define("LIBESPEAK_NG_EXPORT", "1")
        // Only a fallback: reelbox always names the data dir when it initialises espeak-ng.
        .define("PATH_ESPEAK_DATA", "\"/usr/share/espeak-ng-data\"");
    let objects = build.compile_intermediates();
    let status = build
        .get_compiler()
        .to_command()
        .arg("-shared")
        .arg(format!("-Wl,-soname,{LIBRARY_FILE}"))
        .arg("-o")
        .arg(&library)
        .args(&objects)
        .arg("-lm")
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler to link espeak-ng: {e}"));
    assert!(status.success(), "linking espeak-ng into {} failed ({status})", library.display());
}
