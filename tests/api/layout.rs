//! The source tree keeps the shape docs/architecture.md describes: no
//! import cycle between top-level modules or between siblings, no giant
//! files. Read from `src/` itself, so a change that breaks the layout
//! fails here with the cycle or the file named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lines a source file may have, its tests apart.
const MAX_FILE_LINES: usize = 600;

struct Module {
    /// `proxy::ownership` for `src/proxy/ownership.rs`.
    path: Vec<String>,
    file: PathBuf,
    /// The file without its `#[cfg(test)] mod tests`.
    code: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn modules(root: &Path) -> Vec<Module> {
    let root = root.to_owned();
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().path();
            if file.is_dir() {
                dirs.push(file);
                continue;
            }
            if file.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = file.strip_prefix(&root).unwrap().with_extension("");
            let mut path: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if path.last().is_some_and(|l| l == "mod") {
                path.pop();
            }
            if matches!(path.as_slice(), [one] if one == "lib" || one == "main") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let code = match text.find("#[cfg(test)]\nmod tests {") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            out.push(Module { path, file, code });
        }
    }
    out
}

/// Every module path a module names (`crate::a::b::…`, `super::…`,
/// `self::…`, brace groups expanded), as segments from the crate root.
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for prefix in ["crate::", "super::", "self::"] {
        for (i, _) in code.match_indices(prefix) {
            let preceded = code[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if preceded {
                continue;
            }
            // Where the path starts: the root, this module, or its parent.
            let base: Vec<String> = match prefix {
                "crate::" => Vec::new(),
                "self::" => module.to_vec(),
                _ => module[..module.len().saturating_sub(1)].to_vec(),
            };
            let mut rest = &code[i + prefix.len()..];
            let mut base = base;
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            for path in expand(rest) {
                out.push(base.iter().cloned().chain(path).collect());
            }
        }
    }
    out
}

/// The paths at the start of `rest` (`a::b::C;`, `a::{b, c::D}`).
fn expand(rest: &str) -> Vec<Vec<String>> {
    let mut path = Vec::new();
    let mut rest = rest;
    loop {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            break;
        }
        rest = &rest[name.len()..];
        path.push(name);
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => return vec![path],
        }
    }
    let Some(group) = rest.strip_prefix('{') else {
        return vec![path];
    };
    let (mut depth, mut end) = (1, group.len());
    for (i, c) in group.char_indices() {
        depth += match c {
            '{' => 1,
            '}' => -1,
            _ => 0,
        };
        if depth == 0 {
            end = i;
            break;
        }
    }
    let inner = &group[..end];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    let mut out = vec![path.clone()];
    for item in items {
        let item = item.trim();
        if item.is_empty() || item == "self" || item == "*" {
            continue;
        }
        for sub in expand(item) {
            out.push(path.iter().cloned().chain(sub).collect());
        }
    }
    out
}

/// A cycle in `edges`, if there is one, as the nodes along it.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut found = stack[from..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Some(_) => {}
                None => {
                    if let Some(found) = visit(next, edges, state, stack) {
                        return Some(found);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node) {
            if let Some(found) = visit(node, edges, &mut state, &mut Vec::new()) {
                return Some(found);
            }
        }
    }
    None
}

/// Edges between siblings: for each module `a::b::c` naming `a::d::…`,
/// the edge `b -> d` under parent `a` (top-level modules under the root).
fn sibling_edges(modules: &[Module]) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let known: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    let mut by_parent: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for m in modules {
        for target in references(&m.path, &m.code) {
            // The longest prefix of the path that is a module.
            let Some(len) = (1..=target.len())
                .rev()
                .find(|&n| known.contains(&target[..n]))
            else {
                continue;
            };
            let target = &target[..len];
            let common = m
                .path
                .iter()
                .zip(target)
                .take_while(|(a, b)| a == b)
                .count();
            if common >= m.path.len() || common >= target.len() {
                continue; // a module naming itself, an ancestor or a descendant
            }
            by_parent
                .entry(m.path[..common].join("::"))
                .or_default()
                .entry(m.path[common].clone())
                .or_default()
                .insert(target[common].clone());
        }
    }
    by_parent
}

#[test]
fn no_module_imports_its_way_back_to_itself() {
    let modules = modules(&src());
    assert!(modules.len() > 50, "src/ was not read");
    let found = cycles(&modules);
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

fn cycles(modules: &[Module]) -> Vec<String> {
    let mut found = Vec::new();
    for (parent, edges) in sibling_edges(modules) {
        if let Some(cycle) = cycle(&edges) {
            let under = if parent.is_empty() { "crate" } else { &parent };
            found.push(format!("{under}: {}", cycle.join(" -> ")));
        }
    }
    found
}

#[test]
fn the_check_finds_cycles_between_top_modules_and_between_siblings() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("lib.rs", "mod a; mod b; mod c; mod d;"),
        ("a.rs", "use crate::b::Thing;"),
        ("b.rs", "pub fn f() { crate::a::g() }"),
        ("c/mod.rs", "mod x; mod y;"),
        ("c/x.rs", "use super::y::{Y, z::Z};"),
        (
            "c/y.rs",
            "use crate::c::{x::X, self};\n#[cfg(test)]\nmod tests { use crate::d; }",
        ),
        ("d.rs", "use crate::c::x::X;"),
        // An out-of-line test module does not end the file's code.
        ("g/mod.rs", "mod e; mod f;"),
        ("g/e.rs", "#[cfg(test)]\nmod tests;\nuse super::f::F;"),
        ("g/f.rs", "use crate::g::e::E;"),
    ];
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let mut found = cycles(&modules(dir.path()));
    found.sort();
    assert_eq!(
        found,
        ["c: x -> y -> x", "crate: a -> b -> a", "g: e -> f -> e"]
    );
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &["a"][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| s.to_string()).collect()))
    .collect();
    let found = cycle(&edges).unwrap();
    assert_eq!(found.first(), found.last());
    assert_eq!(found.len(), 4);
    let module = ["proxy".to_owned(), "capture".to_owned()];
    let code = "use crate::store::{Store, x::Y};\nuse super::exchange::Exchange;";
    assert_eq!(
        references(&module, code),
        [
            vec!["store"],
            vec!["store", "Store"],
            vec!["store", "x", "Y"],
            vec!["proxy", "exchange", "Exchange"],
        ]
    );
}

#[test]
fn no_source_file_is_a_giant() {
    let big: Vec<String> = modules(&src())
        .into_iter()
        .filter(|m| m.code.lines().count() > MAX_FILE_LINES)
        .map(|m| format!("{} ({} lines)", m.file.display(), m.code.lines().count()))
        .collect();
    assert!(
        big.is_empty(),
        "files over {MAX_FILE_LINES} lines (tests apart):\n{}",
        big.join("\n")
    );
}

/// The Dockerfile builds the dependencies against a stub crate first: it
/// must stub every target Cargo.toml names, or that layer fails to build.
#[test]
fn the_dockerfile_stubs_every_named_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let mut named = 0;
    let mut section = "";
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let Some(name) = line.strip_prefix("name = ") else {
            continue;
        };
        let dir = match section {
            "[[bench]]" => "benches",
            "[[example]]" => "examples",
            "[[test]]" => "tests",
            _ => continue,
        };
        let stub = format!("{dir}/{}.rs", name.trim_matches('"'));
        assert!(
            dockerfile.contains(&stub),
            "the Dockerfile does not stub {stub}"
        );
        named += 1;
    }
    assert!(named > 0, "no [[bench]] read from Cargo.toml");
}
