//! bench-runner's module graph points one way (issue 12): commands → run → hypervisor, host,
//! provenance → guest → scenario, cmd, names. This test reads the source as text and fails on
//! any cycle between modules at file level — a `crate::`/`super::` path from one file's
//! module to another's, or a parent calling a child of its own that reaches back into it.
//! `#[cfg(test)] mod tests` blocks at a file's end and comments are not counted.
//!
//! `cargo test -p zvbench --test modules -- --nocapture` prints the graph that
//! docs/architecture.md shows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`host::storage`, `""` for the crate root) → its file's text.
type Sources = BTreeMap<String, (PathBuf, String)>;

/// Module path → the modules it refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn read_sources(src: &Path) -> Sources {
    let mut out = Sources::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("main.rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            out.insert(parts.join("::"), (path, code_of(&text)));
        }
    }
    out
}

/// The text without its trailing test module and without `//` comments.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths that start at `text[at..]`: `a::b::c` → [[a, b, c]]; a group
/// `::{a::b, c}` → [[a, b], [c]] (each name's own path; nested groups are not followed).
fn paths_after(text: &str, at: usize) -> Vec<Vec<&str>> {
    let ident = |r: &str| {
        r.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(r.len())
    };
    let mut parts = Vec::new();
    let mut rest = &text[at..];
    while let Some(r) = rest.strip_prefix("::") {
        if let Some(group) = r.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            return inner
                .split(',')
                .map(|item| {
                    let mut p = parts.clone();
                    p.extend(item.trim().split("::").map(|s| &s[..ident(s)]));
                    p.retain(|s: &&str| !s.is_empty() && *s != "self");
                    p
                })
                .collect();
        }
        let end = ident(r);
        if end == 0 {
            break;
        }
        parts.push(&r[..end]);
        rest = &r[end..];
    }
    vec![parts]
}

/// Whether `text[i..]` starts a path word `word` (not the tail of a longer name or path).
fn word_at(text: &str, i: usize, word: &str) -> bool {
    let before = text[..i].chars().next_back();
    text[i..].starts_with(word)
        && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn graph(sources: &Sources) -> Graph {
    let mut g = Graph::new();
    for (module, (file, text)) in sources {
        let is_dir_module = file.ends_with("mod.rs") || file.ends_with("lib.rs");
        let me: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
        // `super` from a.rs or from a/mod.rs both name a's parent.
        let parent: Vec<&str> = me[..me.len().saturating_sub(1)].to_vec();
        let mut deps = BTreeSet::new();
        for (i, _) in text.match_indices("::") {
            let (base, start) = if i >= 5 && word_at(text, i - 5, "crate") {
                (Vec::new(), i)
            } else if i >= 5 && word_at(text, i - 5, "super") {
                (parent.clone(), i)
            } else {
                continue;
            };
            for path in paths_after(text, start) {
                let mut full = base.clone();
                full.extend(path);
                if let Some(target) = longest_module(sources, &full) {
                    if target != *module && !target.is_empty() {
                        deps.insert(target);
                    }
                }
            }
        }
        if is_dir_module {
            for child in declared_children(text) {
                let path = if module.is_empty() {
                    child.to_string()
                } else {
                    format!("{module}::{child}")
                };
                let called = text
                    .match_indices(&format!("{child}::"))
                    .any(|(i, _)| word_at(text, i, child));
                if sources.contains_key(&path) && called {
                    deps.insert(path);
                }
            }
        }
        g.insert(module.clone(), deps);
    }
    g
}

fn longest_module(sources: &Sources, path: &[&str]) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|k| path[..k].join("::"))
        .find(|m| sources.contains_key(m))
}

/// `mod x;` and `pub mod x;` declarations.
fn declared_children(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';')
        })
        .collect()
}

/// Every cycle's modules (strongly connected components of more than one module, or a module
/// that refers to itself), found with Tarjan's algorithm.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.g.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self.stack.iter().rposition(|&m| m == v).unwrap();
                let scc: Vec<String> = self.stack.drain(at..).map(str::to_string).collect();
                if scc.len() > 1 {
                    self.found.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found
}

#[test]
fn bench_runner_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = read_sources(&src);
    assert!(
        sources.contains_key("run") && sources.contains_key("scenario"),
        "bench-runner's source was not found under {}",
        src.display()
    );
    let g = graph(&sources);
    for (m, deps) in &g {
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        println!(
            "{} -> {}",
            if m.is_empty() { "(crate)" } else { m },
            deps.join(" ")
        );
    }
    let found = cycles(&g);
    assert!(
        found.is_empty(),
        "module cycles in bench-runner (each list refers around in a circle): {found:?}"
    );
}

/// The checker itself finds the kinds of cycle it is there for.
#[test]
fn the_checker_sees_a_cycle_through_crate_paths_and_a_child_reaching_back() {
    let mut s = Sources::new();
    let file = |p: &str, t: &str| (PathBuf::from(p), code_of(t));
    s.insert(
        "".into(),
        file("lib.rs", "pub mod a;\npub mod b;\npub mod p;"),
    );
    s.insert(
        "a".into(),
        file("a.rs", "use crate::b::thing; // crate::p::x"),
    );
    s.insert("b".into(), file("b.rs", "fn f() { crate::a::g() }"));
    s.insert(
        "p".into(),
        file("p/mod.rs", "pub mod kid;\nfn f() { kid::go() }"),
    );
    s.insert("p::kid".into(), file("p/kid.rs", "use super::Options;"));
    s.insert(
        "p::sib".into(),
        file("p/sib.rs", "use super::{kid::go, kid2};"),
    );
    s.insert("p::kid2".into(), file("p/kid2.rs", ""));
    let g = graph(&s);
    assert!(!g["a"].contains("p"), "a comment counted: {g:?}");
    // A group of siblings through `super` names the siblings, not the parent.
    let sib: Vec<&str> = g["p::sib"].iter().map(String::as_str).collect();
    assert_eq!(sib, ["p::kid", "p::kid2"], "{g:?}");
    let mut found = cycles(&g);
    found.iter_mut().for_each(|c| c.sort());
    found.sort();
    assert_eq!(found, vec![vec!["a", "b"], vec!["p", "p::kid"]], "{g:?}");
    s.insert(
        "b".into(),
        file(
            "b.rs",
            "fn f() {}\n#[cfg(test)]\nmod tests { use crate::a; }",
        ),
    );
    s.insert(
        "p".into(),
        file("p/mod.rs", "pub mod kid;\nfn f() { rekid::go() }"),
    );
    assert!(cycles(&graph(&s)).is_empty(), "{:?}", graph(&s));
}

/// Library code reports through `observe` (issue 12): only the CLI's edge — `main.rs`,
/// `commands/` — and `observe` itself print.
#[test]
fn only_the_cli_edge_prints() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let printing: Vec<String> = read_sources(&src)
        .into_iter()
        .filter(|(m, _)| !(m.starts_with("commands") || m == "observe"))
        .filter(|(_, (_, code))| code.contains("println!(") || code.contains("print!("))
        .map(|(m, (file, _))| format!("{m} ({})", file.display()))
        .collect();
    assert!(
        printing.is_empty(),
        "modules that print instead of going through crate::observe: {printing:?}"
    );
}
