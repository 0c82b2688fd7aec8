//! Every validation rule has a failing example: `tests/validation/cases/NAME.yaml` adds one broken
//! resource to the valid `tests/validation/base/`, and `NAME.expected` is the whole error the agent
//! gives (file, line and column, resource, field path, message). `FERRY_BLESS=1` rewrites the
//! expected files after an intended change: review their diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::PathBuf;

use ferry_agent::store;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/validation")
}

fn read_dir(sub: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir().join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "json")
            )
        })
        .map(|p| {
            let name = format!("{sub}/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_base_is_valid() {
    store::load_files(&read_dir("base")).unwrap();
}

#[test]
fn every_rule_rejects_its_example_with_the_expected_error() {
    let bless = std::env::var_os("FERRY_BLESS").is_some();
    let base = read_dir("base");
    let cases = read_dir("cases");
    assert!(cases.len() > 100, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (name, text) in &cases {
        let mut files = base.clone();
        files.push((name.clone(), text.clone()));
        let actual = match store::load_files(&files) {
            Ok(_) => {
                failures.push(format!("{name}: accepted, but it breaks a rule"));
                continue;
            }
            Err(p) => {
                for problem in &p.0 {
                    if problem.file != *name {
                        failures.push(format!("{name}: a problem in another file: {problem}"));
                    }
                }
                format!("{p}\n")
            }
        };
        let expected_path = dir().join(format!("{}.expected", name.rsplit_once('.').unwrap().0));
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            if bless {
                std::fs::write(&expected_path, &actual).unwrap();
            } else {
                failures.push(format!(
                    "{name}:\n  expected: {expected}  actual:   {actual}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
