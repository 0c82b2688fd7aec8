//! Compile golden tests: resource files -> the expected routing table of every proxy identity.
//!
//! Each `tests/golden/CASE/resources/` (and `examples/mesh/resources/`, as case `color`) is loaded and
//! validated, and each of its identities compiled; the YAML must equal
//! `tests/golden/CASE/expected/MESH__KIND__NAME.yaml` (warnings, if any, in `.warnings`). After an
//! intended change, `FERRY_BLESS=1 cargo test -p ferry-agent --test golden` rewrites the expected
//! files: review their diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::{Path, PathBuf};

use ferry_agent::compile::{self, Identity, Options};
use ferry_agent::store;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cases() -> Vec<(String, PathBuf, PathBuf)> {
    let mut out = vec![(
        "color".to_owned(),
        root().join("../examples/mesh/resources"),
        root().join("tests/golden/color/expected"),
    )];
    for case in ["routes", "security", "gateway"] {
        let dir = root().join("tests/golden").join(case);
        out.push((case.to_owned(), dir.join("resources"), dir.join("expected")));
    }
    out
}

fn check(expected_path: &Path, actual: &str, failures: &mut Vec<String>) {
    let bless = std::env::var_os("FERRY_BLESS").is_some();
    let expected = std::fs::read_to_string(expected_path).unwrap_or_default();
    if expected == actual {
        return;
    }
    if bless {
        std::fs::create_dir_all(expected_path.parent().unwrap()).unwrap();
        if actual.is_empty() {
            let _ = std::fs::remove_file(expected_path);
        } else {
            std::fs::write(expected_path, actual).unwrap();
        }
        return;
    }
    failures.push(format!(
        "{} differs (FERRY_BLESS=1 rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}",
        expected_path.display()
    ));
}

#[test]
fn every_identity_compiles_to_its_golden_table() {
    let mut failures = Vec::new();
    for (case, resources, expected) in cases() {
        let model = store::load_dir(&resources)
            .unwrap_or_else(|p| panic!("case {case}: resources invalid:\n{p}"));
        let ids = model.identities();
        assert!(!ids.is_empty(), "case {case} has no identities");
        for id in ids {
            let identity = Identity::parse(&id).unwrap();
            let c = compile::compile(&model, &identity, Options::default())
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            let file = id.replace('/', "__");
            let yaml = ferry_api::encode_yaml(&c.table);
            // The YAML is the proxy's file form: it must read back to the very same table.
            let back = ferry_api::decode_yaml(&yaml, &file).unwrap();
            assert_eq!(back, c.table, "{id}: the YAML does not read back");
            check(&expected.join(format!("{file}.yaml")), &yaml, &mut failures);
            let warnings: String = c.warnings.iter().map(|w| format!("{w}\n")).collect();
            check(
                &expected.join(format!("{file}.warnings")),
                &warnings,
                &mut failures,
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_same_resources_give_the_same_version_whatever_the_files_and_their_order() {
    let dir = root().join("tests/golden/routes/resources");
    let model = store::load_dir(&dir).unwrap();
    let id = Identity::parse("routes/virtualNode/client").unwrap();
    let a = compile::compile(&model, &id, Options::default()).unwrap();
    let b = compile::compile(&model, &id, Options::default()).unwrap();
    assert_eq!(a, b);
    // The same files under other names (so read in another order), comments and all.
    let tmp = tempfile::tempdir().unwrap();
    let mut names: Vec<PathBuf> = store::resource_files(&dir).unwrap();
    names.reverse();
    for (i, f) in names.iter().enumerate() {
        let ext = f.extension().unwrap().to_str().unwrap();
        std::fs::copy(f, tmp.path().join(format!("{i:02}-x.{ext}"))).unwrap();
    }
    let shuffled = store::load_dir(tmp.path()).unwrap();
    let c = compile::compile(&shuffled, &id, Options::default()).unwrap();
    assert_eq!(c.table.version, a.table.version);
    assert_eq!(c.table, a.table);
    // A change that matters changes the version.
    let mut changed = model.clone();
    for r in changed.routes.values_mut() {
        if let Some(h) = r.spec.http_route.as_mut()
            && r.name == "headers"
        {
            h.action.weighted_targets[0].weight = 60;
        }
    }
    let d = compile::compile(&changed, &id, Options::default()).unwrap();
    assert_ne!(d.table.version, a.table.version);
}

/// Rewrites every resource of `dir` into the other App Mesh shape (describe output <-> create
/// input) as one JSON list per file.
fn other_shape(dir: &Path, out: &Path) {
    let keys = [
        "mesh",
        "virtualNode",
        "virtualRouter",
        "route",
        "virtualService",
        "virtualGateway",
        "gatewayRoute",
    ];
    for (i, f) in store::resource_files(dir).unwrap().iter().enumerate() {
        let text = std::fs::read_to_string(f).unwrap();
        let mut values: Vec<serde_json::Value> = Vec::new();
        if f.extension().unwrap() == "json" {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            match v {
                serde_json::Value::Array(a) => values.extend(a),
                v => values.push(v),
            }
        } else {
            for doc in text.split("\n---") {
                let v: serde_json::Value = serde_saphyr::from_str(doc).unwrap_or_default();
                match v {
                    serde_json::Value::Array(a) => values.extend(a),
                    serde_json::Value::Null => {}
                    v => values.push(v),
                }
            }
        }
        let converted: Vec<serde_json::Value> = values
            .into_iter()
            .map(|v| {
                let obj = v.as_object().unwrap();
                match keys
                    .iter()
                    .find(|k| obj.len() == 1 && obj.contains_key(**k))
                {
                    // describe -> create input (the kind follows from the name keys)
                    Some(k) => obj[*k].clone(),
                    // create input -> describe, keyed by the kind
                    None => {
                        let kind = if obj.contains_key("routeName") {
                            "route"
                        } else if obj.contains_key("gatewayRouteName") {
                            "gatewayRoute"
                        } else if obj.contains_key("virtualNodeName") {
                            "virtualNode"
                        } else if obj.contains_key("virtualServiceName") {
                            "virtualService"
                        } else if obj.contains_key("virtualRouterName") {
                            "virtualRouter"
                        } else if obj.contains_key("virtualGatewayName") {
                            "virtualGateway"
                        } else {
                            "mesh"
                        };
                        serde_json::json!({ kind: v })
                    }
                }
            })
            .collect();
        std::fs::write(
            out.join(format!("{i}.json")),
            serde_json::to_string_pretty(&converted).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn describe_output_and_create_input_compile_to_the_same_tables() {
    for (case, resources, _) in cases() {
        let tmp = tempfile::tempdir().unwrap();
        other_shape(&resources, tmp.path());
        let a = store::load_dir(&resources).unwrap();
        let b = store::load_dir(tmp.path()).unwrap_or_else(|p| panic!("{case}: {p}"));
        assert_eq!(a.identities(), b.identities());
        for id in a.identities() {
            let id = Identity::parse(&id).unwrap();
            let x = compile::compile(&a, &id, Options::default()).unwrap();
            let y = compile::compile(&b, &id, Options::default()).unwrap();
            assert_eq!(x.table, y.table, "{case}: {id}");
        }
    }
}

#[test]
fn identities_may_be_written_as_app_mesh_arns() {
    let id =
        Identity::parse("arn:aws:appmesh:eu-west-1:111122223333:mesh/color-mesh/virtualNode/front")
            .unwrap();
    assert_eq!(id.to_string(), "color-mesh/virtualNode/front");
    // APPMESH_VIRTUAL_NODE_NAME's form, from App Mesh's older images.
    let old_form = Identity::parse("mesh/color-mesh/virtualNode/front").unwrap();
    assert_eq!(old_form.to_string(), "color-mesh/virtualNode/front");
    assert!(Identity::parse("color-mesh/front").is_err());
    let model = store::load_dir(&root().join("../examples/mesh/resources")).unwrap();
    let e = compile::compile(
        &model,
        &Identity::parse("color-mesh/virtualNode/nope").unwrap(),
        Options::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "color-mesh/virtualNode/nope: there is no virtualNode \"nope\" in mesh color-mesh"
    );
}

#[test]
fn listener_ports_follow_the_options() {
    let model = store::load_dir(&root().join("../examples/mesh/resources")).unwrap();
    let id = Identity::parse("color-mesh/virtualNode/front").unwrap();
    let c = compile::compile(
        &model,
        &id,
        Options {
            ingress_port: 25000,
            egress_port: 25001,
        },
    )
    .unwrap();
    let addrs: Vec<&str> = c
        .table
        .listeners
        .iter()
        .map(|l| l.address.as_str())
        .collect();
    assert_eq!(addrs, ["0.0.0.0:25000", "127.0.0.1:25001"]);
}
