//! The domain's modules import each other one way: no circle, and nothing imports through
//! the crate root (whose re-exports would hide a circle).
//!
//! Reads every `use` declaration and every `crate::`/`super::` path in `domain/src`,
//! resolves each to the file of the module it names, and looks for a cycle in that graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("domain/src is readable")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `registration/review.rs` -> ["registration", "review"]; `registration/mod.rs` ->
/// ["registration"]; `lib.rs` -> [].
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// Drops comments and string literals so that paths in docs or messages do not count.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').expect("a closing brace")];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p).into_iter().map(|s| format!("{prefix}{s}")))
        .collect()
}

/// Every `crate::`/`super::` path the file names, from `use` trees and inline paths.
fn paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let after = &rest[at + 4..];
        let end = after.find(';').unwrap_or(after.len());
        if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
            found.extend(expand(&after[..end].replace(['\n', ' '], "")));
        }
        rest = &after[end.min(after.len())..];
    }
    for start in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(at) = rest.find(start) {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            found.push(tail[..end].trim_end_matches(':').to_string());
            rest = &tail[end..];
        }
    }
    found
        .into_iter()
        .filter(|p| p.starts_with("crate::") || p.starts_with("super::"))
        .collect()
}

#[test]
fn domain_modules_import_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&root, f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut through_root = Vec::new();
    for file in &files {
        let me = module_of(&root, file);
        let text = std::fs::read_to_string(file).expect("a readable source");
        // Inline unit-test modules (at the end of a file) are not part of the graph.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let code = code_only(text);
        for path in paths(&code) {
            let mut segments: Vec<&str> = path.split("::").collect();
            let mut target: Vec<String> = match segments.first() {
                Some(&"crate") => Vec::new(),
                _ => me[..me.len().saturating_sub(1)].to_vec(),
            };
            segments.remove(0);
            // The longest prefix of the path that is a module file of this crate.
            let mut resolved = target.clone();
            for segment in segments {
                target.push(segment.to_string());
                if modules.contains(&target) {
                    resolved = target.clone();
                } else {
                    break;
                }
            }
            if me.is_empty() {
                continue; // the root only declares modules and re-exports
            }
            if resolved.is_empty() {
                through_root.push(format!("{}: `{path}`", me.join("::")));
                continue;
            }
            if resolved != me {
                edges.entry(me.clone()).or_default().insert(resolved);
            }
        }
    }
    assert!(
        through_root.is_empty(),
        "modules must import from the module that defines a name, not through the crate root:\n{}",
        through_root.join("\n")
    );
    // Depth-first search for a back edge.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        done: &mut BTreeSet<Vec<String>>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut circle: Vec<String> = stack[at..].iter().map(|m| m.join("::")).collect();
            circle.push(node.join("::"));
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, done, stack) {
                return Some(circle);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(circle) = visit(node, &edges, &mut done, &mut Vec::new()) {
            panic!("import circle in domain/: {}", circle.join(" -> "));
        }
    }
    // The graph is not empty: the check really read the imports.
    let event = vec!["event".to_string()];
    assert!(
        edges
            .get(&event)
            .is_some_and(|e| e.contains(&vec!["values".to_string()])),
        "expected event -> values among {edges:?}"
    );
}
