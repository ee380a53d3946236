//! The layering rule, checked on the source: http -> services -> session/store -> domain, with
//! nothing pointing back up, no circles between those layers, and the device scope built only
//! where the tenant was checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Rank of each top-level module: a file may name modules of a lower rank, or its own module.
/// `session` and `store` share a rank, but only `session` may use `store`.
fn rank(module: &str) -> Option<u8> {
    Some(match module {
        "main" | "lib" | "startup" | "telemetry" => 7,
        "config" => 6,
        "http" => 5,
        "services" => 4,
        "session" | "delivery" => 3,
        "store" => 2,
        "metrics" => 1,
        "domain" => 0,
        _ => return None,
    })
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative
        .components()
        .next()
        .expect("a component")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// Every top-level module a file names through `crate::`, with the line it is named on.
fn named_modules(text: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((name, number + 1));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn layers_point_down_and_do_not_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 30, "the source tree was found");
    let mut violations = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = module_of(&src, file);
        let text = std::fs::read_to_string(file).expect("read file");
        // Tests inside a module may reach anything.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let Some(from_rank) = rank(&from) else {
            violations.push(format!("{}: module {from} has no layer", file.display()));
            continue;
        };
        for (to, line) in named_modules(code) {
            if to == from {
                continue;
            }
            let Some(to_rank) = rank(&to) else {
                continue;
            };
            edges.entry(from.clone()).or_default().insert(to.clone());
            if to_rank >= from_rank && !(from == "session" && to == "store") {
                violations.push(format!(
                    "{}:{line}: {from} (layer {from_rank}) uses {to} (layer {to_rank})",
                    file.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "upward imports:\n{}",
        violations.join("\n")
    );
    // No circle between top-level modules (what the ranks already imply, checked directly).
    fn reaches(
        edges: &BTreeMap<String, BTreeSet<String>>,
        from: &str,
        to: &str,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        if !seen.insert(from.to_owned()) {
            return false;
        }
        edges
            .get(from)
            .is_some_and(|next| next.iter().any(|n| n == to || reaches(edges, n, to, seen)))
    }
    for (from, targets) in &edges {
        for to in targets {
            assert!(
                !reaches(&edges, to, from, &mut BTreeSet::new()),
                "{from} and {to} depend on each other"
            );
        }
    }
}

#[test]
fn the_device_scope_is_built_only_where_the_tenant_was_checked() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let allowed = ["http/device.rs", "store/sessions.rs", "domain/scope.rs"];
    let mut builders = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read file");
        if text.contains("DeviceScope::checked(") {
            let relative = file
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            builders.push(relative);
        }
    }
    assert!(
        builders.iter().any(|b| b == "http/device.rs"),
        "http/device.rs builds scopes: {builders:?}"
    );
    for builder in &builders {
        assert!(
            allowed.contains(&builder.as_str()),
            "{builder} builds a DeviceScope; only {allowed:?} may"
        );
    }
}

#[test]
fn the_import_scan_sees_what_it_must() {
    let found = named_modules("use crate::http::error::ApiError; // crate::store is a comment\n");
    assert_eq!(found, vec![("http".to_owned(), 1)]);
    assert_eq!(rank("services"), Some(4));
    assert!(rank("http") > rank("services") && rank("services") > rank("session"));
}
