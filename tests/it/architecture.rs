//! The architecture's measurable rules, checked on the source tree: folders of `src/` import
//! each other one way only (no circle between folders), no file passes 500 lines, and the
//! library keeps its error chains (no `Result<_, String>` outside the binary's `src/cli`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).expect("under src").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).expect("read source");
            (rel, text)
        })
        .collect()
}

/// The top-level module a file belongs to: `store/quota.rs` → `store`, `time.rs` → `time`.
fn folder(rel: &str) -> String {
    let first = rel.split('/').next().unwrap_or(rel);
    first.trim_end_matches(".rs").to_string()
}

/// `crate::X` paths a file names, as the set of X.
fn crate_imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// A circle in `graph` through `start`, if any, as the path that closes it.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut closed = path.clone();
                closed.push(start.to_string());
                return Some(closed);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn folders_of_src_import_each_other_one_way_only() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in sources() {
        let from = folder(&rel);
        if from == "lib" || from == "main" {
            continue;
        }
        for to in crate_imports(&text) {
            if to != from {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    let circles: Vec<String> = graph.keys().filter_map(|start| circle(&graph, start)).map(|c| c.join(" → ")).collect();
    assert!(circles.is_empty(), "folders import each other in a circle: {circles:#?}");
}

#[test]
fn no_source_file_passes_500_lines() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > 500)
        .map(|(rel, text)| format!("{rel}: {} lines", text.lines().count()))
        .collect();
    assert!(long.is_empty(), "split these along a seam you can name: {long:#?}");
}

#[test]
fn library_errors_are_typed_not_strings() {
    let mut found = Vec::new();
    for (rel, text) in sources() {
        if rel.starts_with("cli/") || rel == "main.rs" {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let compact: String = line.split_whitespace().collect();
            if compact.contains(",String>") && compact.contains("Result<") {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "library functions return String errors: {found:#?}");
}
