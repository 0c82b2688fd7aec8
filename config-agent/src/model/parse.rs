//! Reads App Mesh resources from YAML or JSON text, in either of App Mesh's two shapes:
//! - the output of `aws appmesh describe-*`: `{"virtualNode": {"meshName": …, "virtualNodeName": …,
//!   "spec": {…}, "metadata": {…}, "status": {…}}}`;
//! - the `--cli-input-json` input of `create-*` / `update-*`: `{"meshName": …,
//!   "virtualNodeName": …, "spec": {…}}`, whose kind follows from its name keys.
//!
//! A file may hold several resources: YAML documents separated by `---`, or a JSON (or YAML) list.
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Kind, Origin, Problem, Res, spec};

/// One resource read from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedResource {
    Mesh(Res<spec::MeshSpec>),
    VirtualNode(Res<spec::VirtualNodeSpec>),
    VirtualRouter(Res<spec::VirtualRouterSpec>),
    Route(Res<spec::RouteSpec>),
    VirtualService(Res<spec::VirtualServiceSpec>),
    VirtualGateway(Res<spec::VirtualGatewaySpec>),
    GatewayRoute(Res<spec::GatewayRouteSpec>),
}

/// Keys App Mesh puts beside `spec` that say nothing about routing; accepted and ignored.
const IGNORED_KEYS: [&str; 7] = [
    "metadata",
    "status",
    "tags",
    "clientToken",
    "meshOwner",
    "resourceOwner",
    "arn",
];

/// Parses `text` (YAML, or JSON when `json`); `file` names it in problems.
pub fn parse_text(file: &str, text: &str, json: bool) -> Result<Vec<ParsedResource>, Vec<Problem>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let docs = if json {
        match serde_json::from_str::<Value>(text) {
            Ok(v) => vec![(Arc::<str>::from(text), 0, v)],
            Err(e) => {
                return Err(vec![Problem {
                    file: file.to_owned(),
                    position: Some((e.line(), e.column())),
                    subject: None,
                    field: String::new(),
                    message: strip_json_position(&e.to_string()),
                }]);
            }
        }
    } else {
        let mut docs = Vec::new();
        for (offset, doc) in yaml_documents(text) {
            if doc.trim().is_empty() || doc.lines().all(is_blank_or_comment) {
                continue;
            }
            // YAML 1.2 booleans only: a node named `n` or `off` is a name, not `false`.
            let mut options = serde_saphyr::options::Options::default();
            options.strict_booleans = true;
            match serde_saphyr::from_str_with_options::<Value>(&doc, options) {
                Ok(v) => docs.push((Arc::<str>::from(doc.as_str()), offset, v)),
                Err(e) => problems.push(Problem {
                    file: file.to_owned(),
                    position: e.location().map(|l| {
                        (
                            usize::try_from(l.line()).unwrap_or(0) + offset,
                            usize::try_from(l.column()).unwrap_or(0),
                        )
                    }),
                    subject: None,
                    field: String::new(),
                    message: first_line(&e.without_snippet().to_string()),
                }),
            }
        }
        docs
    };
    for (doc_text, offset, value) in docs {
        let items: Vec<(String, Value)> = match value {
            Value::Null => continue,
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("[{i}]"), v))
                .collect(),
            v => vec![(String::new(), v)],
        };
        for (path, item) in items {
            let origin = Origin {
                file: file.to_owned(),
                doc_text: Arc::clone(&doc_text),
                line_offset: offset,
                json_path: path,
            };
            match resource(item, origin) {
                Ok(r) => out.push(r),
                Err(p) => problems.push(p),
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// Splits YAML text into documents at `---` lines; each with the number of lines before it.
pub(crate) fn yaml_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---"
            || line.starts_with("--- ")
            || line.starts_with("---\t")
            || line == "..."
            || line.starts_with("... ");
        if is_marker {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 1;
            // "--- {inline: doc}" keeps its content on the marker line.
            if let Some(rest) = line.strip_prefix("---")
                && !rest.trim().is_empty()
                && !rest.trim_start().starts_with('#')
            {
                start = i;
                current.push_str(&" ".repeat(3));
                current.push_str(rest);
                current.push('\n');
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs
}

fn problem_at(origin: &Origin, field: &str, message: impl Into<String>) -> Problem {
    Problem {
        file: origin.file.clone(),
        position: origin.position(field),
        subject: None,
        field: field.to_owned(),
        message: message.into(),
    }
}

/// One resource object in either shape.
fn resource(value: Value, mut origin: Origin) -> Result<ParsedResource, Problem> {
    let Value::Object(mut obj) = value else {
        return Err(problem_at(
            &origin,
            "",
            "expected an App Mesh resource (an object such as {\"virtualNode\": {...}} or {\"meshName\": ..., \"virtualNodeName\": ..., \"spec\": {...}})",
        ));
    };
    // Describe shape: a single key naming the kind.
    if obj.len() == 1
        && let Some(kind) = Kind::ALL
            .into_iter()
            .find(|k| obj.contains_key(k.describe_key()))
    {
        let key = kind.describe_key();
        let inner = obj.remove(key).unwrap_or(Value::Null);
        origin.json_path = if origin.json_path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", origin.json_path)
        };
        let Value::Object(inner) = inner else {
            return Err(problem_at(
                &origin,
                "",
                format!(
                    "{key}: expected an object with meshName, {} and spec",
                    kind.name_key()
                ),
            ));
        };
        return typed(kind, inner, origin);
    }
    let kind = infer_kind(&obj).ok_or_else(|| {
        problem_at(
            &origin,
            "",
            "cannot tell the resource kind: expected describe output ({\"virtualNode\": {...}}, {\"route\": {...}}, ...) or create input with meshName and the kind's name key (virtualNodeName, routeName + virtualRouterName, ...)",
        )
    })?;
    typed(kind, obj, origin)
}

/// The kind of a `--cli-input-json` object, from its name keys.
fn infer_kind(obj: &Map<String, Value>) -> Option<Kind> {
    let has = |k: &str| obj.contains_key(k);
    if !has("meshName") {
        return None;
    }
    Some(if has("routeName") {
        Kind::Route
    } else if has("gatewayRouteName") {
        Kind::GatewayRoute
    } else if has("virtualNodeName") {
        Kind::VirtualNode
    } else if has("virtualServiceName") {
        Kind::VirtualService
    } else if has("virtualRouterName") {
        Kind::VirtualRouter
    } else if has("virtualGatewayName") {
        Kind::VirtualGateway
    } else {
        Kind::Mesh
    })
}

fn typed(
    kind: Kind,
    mut obj: Map<String, Value>,
    origin: Origin,
) -> Result<ParsedResource, Problem> {
    let string = |obj: &mut Map<String, Value>, key: &str| -> Result<String, Problem> {
        match obj.remove(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(Value::String(_)) => Err(problem_at(&origin, key, "must not be empty")),
            Some(_) => Err(problem_at(&origin, key, "must be a string")),
            None => Err(problem_at(&origin, "", format!("{key} is required"))),
        }
    };
    let mesh = string(&mut obj, "meshName")?;
    let name = if kind == Kind::Mesh {
        mesh.clone()
    } else {
        string(&mut obj, kind.name_key())?
    };
    let parent = match kind.parent_key() {
        Some(k) => string(&mut obj, k)?,
        None => String::new(),
    };
    let spec = obj.remove("spec");
    for key in obj.keys() {
        if !IGNORED_KEYS.contains(&key.as_str()) {
            let mut expected = vec!["meshName"];
            if kind != Kind::Mesh {
                expected.push(kind.name_key());
            }
            expected.extend(kind.parent_key());
            expected.push("spec");
            return Err(problem_at(
                &origin,
                key,
                format!(
                    "unknown field `{key}` for a {kind}: expected {} (metadata, status, tags and clientToken are ignored)",
                    expected.join(", ")
                ),
            ));
        }
    }
    let spec = match spec {
        Some(Value::Null) | None if kind == Kind::Mesh => Value::Object(Map::new()),
        Some(Value::Null) | None => {
            let mut p = problem_at(&origin, "", "spec is required");
            p.subject = Some(Box::new(super::Subject {
                kind,
                mesh: mesh.clone(),
                name: name.clone(),
                parent: parent.clone(),
            }));
            return Err(p);
        }
        Some(v) => v,
    };
    let b = Builder {
        kind,
        mesh,
        name,
        parent,
        origin,
    };
    Ok(match kind {
        Kind::Mesh => ParsedResource::Mesh(b.build(spec)?),
        Kind::VirtualNode => ParsedResource::VirtualNode(b.build(spec)?),
        Kind::VirtualRouter => ParsedResource::VirtualRouter(b.build(spec)?),
        Kind::Route => ParsedResource::Route(b.build(spec)?),
        Kind::VirtualService => ParsedResource::VirtualService(b.build(spec)?),
        Kind::VirtualGateway => ParsedResource::VirtualGateway(b.build(spec)?),
        Kind::GatewayRoute => ParsedResource::GatewayRoute(b.build(spec)?),
    })
}

struct Builder {
    kind: Kind,
    mesh: String,
    name: String,
    parent: String,
    origin: Origin,
}

impl Builder {
    fn build<S: DeserializeOwned>(self, spec: Value) -> Result<Res<S>, Problem> {
        match decode_spec(spec, &self.origin) {
            Ok(spec) => Ok(Res {
                mesh: self.mesh,
                name: self.name,
                parent: self.parent,
                spec,
                origin: self.origin,
            }),
            Err(mut p) => {
                p.subject = Some(Box::new(super::Subject {
                    kind: self.kind,
                    mesh: self.mesh,
                    name: self.name,
                    parent: self.parent,
                }));
                Err(p)
            }
        }
    }
}

fn decode_spec<T: DeserializeOwned>(v: Value, origin: &Origin) -> Result<T, Problem> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let inner = e.path().to_string();
        let field = if inner == "." || inner.is_empty() {
            "spec".to_owned()
        } else {
            format!("spec.{inner}")
        };
        problem_at(origin, &field, e.into_inner().to_string())
    })
}

fn strip_json_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

fn first_line(msg: &str) -> String {
    msg.lines().next().unwrap_or(msg).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_and_several_documents() {
        let text = r#"
virtualNode:
  meshName: m
  virtualNodeName: a
  spec: {}
  metadata: { version: 3 }
---
meshName: m
virtualRouterName: r
routeName: x
spec:
  httpRoute:
    match: { prefix: / }
    action: { weightedTargets: [{ virtualNode: a, weight: 1 }] }
"#;
        let r = parse_text("f.yaml", text, false).expect("valid");
        assert_eq!(r.len(), 2);
        assert!(matches!(&r[0], ParsedResource::VirtualNode(n) if n.name == "a"));
        assert!(matches!(&r[1], ParsedResource::Route(x) if x.parent == "r" && x.name == "x"));
    }

    #[test]
    fn json_list_and_error_position() {
        let text = "[\n {\"mesh\": {\"meshName\": \"m\", \"spec\": {}}},\n {\"virtualRouter\": {\"meshName\": \"m\", \"virtualRouterName\": \"r\",\n   \"spec\": {\"listeners\": [{\"portMapping\": {\"port\": \"x\", \"protocol\": \"http\"}}]}}}\n]";
        let e = parse_text("f.json", text, true).expect_err("bad port");
        let s = e[0].to_string();
        assert!(s.starts_with("f.json:4:"), "{s}");
        assert!(
            s.contains(
                "virtualRouter r (mesh m): spec.listeners[0].portMapping.port: invalid type"
            ),
            "{s}"
        );
    }

    #[test]
    fn yaml_line_counts_across_documents() {
        let text = "meshName: m\nspec: {}\n---\nmeshName: m\nvirtualNodeName: n\nspec:\n  listeners:\n    - portMapping: { port: 80, protocol: htp }\n";
        let e = parse_text("f.yaml", text, false).expect_err("bad protocol");
        let s = e[0].to_string();
        assert!(s.starts_with("f.yaml:8:"), "{s}");
        assert!(
            s.contains("spec.listeners[0].portMapping.protocol: unknown variant `htp`"),
            "{s}"
        );
    }
}
