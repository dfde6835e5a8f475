//! poscloud: provisions, operates and removes a florist's POS server on AWS.
//! Layers: cli → commands → (spec, plan, apply, teardown, lock) → aws (the only SDK user).

pub mod apply;
pub mod aws;
pub mod cli;
pub mod commands;
pub mod error;
pub mod journal;
pub mod lock;
pub mod ops;
pub mod phases;
pub mod plan;
pub mod remote;
pub mod report;
pub mod resources;
pub mod spec;
pub mod teardown;
pub mod time;
pub mod ui;
pub mod userdata;

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Which top-level modules each one names (`crate::x`), read from src/: comments and
    /// test modules left out (a test may reach up to read what it checks).
    fn edges() -> BTreeMap<String, BTreeSet<String>> {
        fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    files(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for path in all {
            let rel = path.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let module = first.trim_end_matches(".rs").to_string();
            if module == "main" || module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            let targets = graph.entry(module.clone()).or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for piece in line.split("crate::").skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module {
                        targets.insert(name);
                    }
                }
            }
        }
        graph
    }

    /// A cycle of `graph`, as the modules on it, if there is one.
    fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            m: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == m) {
                let mut c = path[i..].to_vec();
                c.push(m.to_string());
                return Some(c);
            }
            if !done.insert(m.to_string()) {
                return None;
            }
            path.push(m.to_string());
            for next in graph.get(m).into_iter().flatten() {
                if let Some(c) = visit(next, graph, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        graph
            .keys()
            .find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
    }

    #[test]
    fn the_module_graph_has_no_cycle() {
        let graph = edges();
        // `cargo test --lib module_graph -- --nocapture` lists the edges.
        for (m, to) in &graph {
            println!(
                "{m} -> {}",
                to.iter().cloned().collect::<Vec<_>>().join(" ")
            );
        }
        assert!(
            graph.len() > 10 && graph["commands"].contains("aws"),
            "{graph:?}"
        );
        if let Some(c) = cycle(&graph) {
            panic!("import cycle: {}", c.join(" -> "));
        }
    }

    #[test]
    fn a_cycle_is_found() {
        let graph: BTreeMap<String, BTreeSet<String>> = [
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec!["a"]),
            ("d", vec!["a"]),
        ]
        .into_iter()
        .map(|(m, to)| (m.into(), to.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(cycle(&graph).unwrap().join(" -> "), "a -> b -> c -> a");
        let mut acyclic = graph.clone();
        acyclic.get_mut("c").unwrap().clear();
        assert_eq!(cycle(&acyclic), None);
    }
}
