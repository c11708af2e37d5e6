//! The crate's shape: modules that read top-down (no import cycle) and a thin `main.rs`. Since
//! issue 20 a module over 700 lines before its tests is only named, never refused: shape comes
//! from concepts, not from a line budget. Counted like `shared/tools/modgraph.py`:
//! a directory is one module, a module's part before its first `#[cfg(test)]` counts, and any
//! `crate::<module>` in its code (not in a comment or doc link) is a use. Functions, not files, are
//! capped: CI's clippy refuses a non-test function over 100 lines (`clippy.toml`, `lib.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Top-level module -> (non-test lines, modules it uses), of the crate whose sources are in
/// `root` (relative to this crate's folder: `src`, or the emulator's `emulator/src`).
fn modules_of(root: &str) -> BTreeMap<String, (usize, BTreeSet<String>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(root);
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut mods: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let text = fs::read_to_string(&path).unwrap();
        let body = text.split("#[cfg(test)]").next().unwrap();
        let entry = mods.entry(top).or_default();
        entry.0 += body.matches('\n').count();
        // A doc link or comment that names a module is not an import (issue 20), as modgraph counts.
        let code: Vec<&str> = body
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        let body = code.join("\n");
        let body = body.as_str();
        let mut rest = body;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            entry.1.insert(name);
        }
        // `use crate::{a, b::c}`
        for group in body.split("use crate::{").skip(1) {
            let inner = group.split('}').next().unwrap_or("");
            for part in inner.split(',') {
                let name = part.trim().split("::").next().unwrap_or("").to_string();
                if !name.is_empty() {
                    entry.1.insert(name);
                }
            }
        }
    }
    let names: BTreeSet<String> = mods.keys().cloned().collect();
    for (_, uses) in mods.values_mut() {
        uses.retain(|u| names.contains(u) && u != "lib" && u != "main");
    }
    mods
}

/// This crate's top-level modules.
fn modules() -> BTreeMap<String, (usize, BTreeSet<String>)> {
    modules_of("src")
}

/// Panics naming the first import cycle between `mods`' top-level modules.
fn assert_no_cycle(mods: &BTreeMap<String, (usize, BTreeSet<String>)>) {
    // Depth-first search for a back edge; report the cycle's path.
    fn visit(
        m: &str,
        mods: &BTreeMap<String, (usize, BTreeSet<String>)>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("import cycle: {} -> {m}", path[i..].join(" -> "));
        }
        path.push(m.to_string());
        for u in &mods[m].1 {
            if u != m {
                visit(u, mods, path, done);
            }
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in mods.keys().filter(|m| *m != "lib" && *m != "main") {
        visit(m, mods, &mut Vec::new(), &mut done);
    }
}

#[test]
fn no_import_cycle() {
    let mods = modules();
    assert_no_cycle(&mods);
    // The test sees what it should: config sits on top and assembles the settings of the
    // modules below it, which never import it.
    for below in ["machine", "vault", "secrets", "files", "hooks"] {
        assert!(mods["config"].1.contains(below), "{:?}", mods["config"]);
        assert!(!mods[below].1.contains("config"), "{below} imports config");
    }
}

/// The emulator reads top-down too (issue 20): its secrets engines below the request
/// handling, and the answers' forms below both.
#[test]
fn no_import_cycle_in_the_emulator() {
    let mods = modules_of("emulator/src");
    assert!(mods["vault"].1.contains("access"), "{:?}", mods["vault"]);
    assert_no_cycle(&mods);
}

#[test]
fn few_top_level_concepts() {
    // Issue 20: the top level names the concepts (folders when a concept has parts), so a
    // newcomer can read the layout in one screen.
    let mods = modules();
    let top: Vec<&String> = mods
        .keys()
        .filter(|m| *m != "lib" && *m != "main")
        .collect();
    assert!(top.len() <= 14, "{} top-level modules: {top:?}", top.len());
}

#[test]
fn a_thin_main_and_long_modules_named() {
    let mods = modules();
    // Issue 20: shape comes from concepts, not from a line budget. A long module is a hint to
    // look for a second concept in it, printed for the reader, never a wall code is fitted to.
    for (name, (lines, _)) in &mods {
        if name != "lib" && name != "main" && *lines > 700 {
            eprintln!("note: {name} has {lines} lines before its tests; does it hold one concept?");
        }
    }
    assert!(
        mods["main"].0 <= 80,
        "main.rs has {} lines (at most 80)",
        mods["main"].0
    );
    assert!(
        mods["machine"].0 > 100,
        "the count sees the modules: {:?}",
        mods["machine"]
    );
}
