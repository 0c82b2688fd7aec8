//! What the API knows of each resource kind: its collection in URLs and lists, its ARN, and the
//! App Mesh shapes built from a stored resource object (describe output, list refs).
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::time;
use crate::model::{Kind, Model, Origin};

/// A resource the API names: kind, mesh, parent (the router of a route, the gateway of a gateway
/// route; else empty) and name (the mesh's own name for a mesh).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    pub mesh: String,
    pub parent: String,
    pub name: String,
}

impl Target {
    pub fn arn(&self, region: &str, account: &str) -> String {
        let base = format!("arn:aws:appmesh:{region}:{account}:mesh/{}", self.mesh);
        match self.kind {
            Kind::Mesh => base,
            Kind::Route => format!("{base}/virtualRouter/{}/route/{}", self.parent, self.name),
            Kind::GatewayRoute => format!(
                "{base}/virtualGateway/{}/gatewayRoute/{}",
                self.parent, self.name
            ),
            k => format!("{base}/{}/{}", k.describe_key(), self.name),
        }
    }

    /// The resource an ARN names (any region and account: the agent serves one of each).
    pub fn from_arn(arn: &str) -> Result<Target, ApiError> {
        let bad = || ApiError::bad_request(format!("resourceArn {arn:?} is not an App Mesh ARN"));
        let mut p = arn.splitn(6, ':');
        let (Some("arn"), Some(_), Some("appmesh"), Some(_), Some(_), Some(res)) =
            (p.next(), p.next(), p.next(), p.next(), p.next(), p.next())
        else {
            return Err(bad());
        };
        let s: Vec<&str> = res.split('/').collect();
        let t = |kind, mesh: &str, parent: &str, name: &str| Target {
            kind,
            mesh: mesh.to_owned(),
            parent: parent.to_owned(),
            name: name.to_owned(),
        };
        Ok(match s.as_slice() {
            ["mesh", m] => t(Kind::Mesh, m, "", m),
            ["mesh", m, "virtualRouter", r, "route", n] => t(Kind::Route, m, r, n),
            ["mesh", m, "virtualGateway", g, "gatewayRoute", n] => t(Kind::GatewayRoute, m, g, n),
            ["mesh", m, k, n] => {
                let kind = Kind::ALL
                    .into_iter()
                    .find(|x| x.describe_key() == *k && x.parent_key().is_none())
                    .filter(|x| *x != Kind::Mesh)
                    .ok_or_else(bad)?;
                t(kind, m, "", n)
            }
            _ => return Err(bad()),
        })
    }

    /// `virtualNode front (mesh m)`, for messages.
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Mesh => format!("mesh {}", self.name),
            Kind::Route => format!(
                "route {} (mesh {}, virtualRouter {})",
                self.name, self.mesh, self.parent
            ),
            Kind::GatewayRoute => format!(
                "gatewayRoute {} (mesh {}, virtualGateway {})",
                self.name, self.mesh, self.parent
            ),
            k => format!("{k} {} (mesh {})", self.name, self.mesh),
        }
    }
}

/// The key of a kind's list in `List*` output: `virtualNodes`, `routes`, ...
pub fn list_key(kind: Kind) -> &'static str {
    match kind {
        Kind::Mesh => "meshes",
        Kind::VirtualNode => "virtualNodes",
        Kind::VirtualRouter => "virtualRouters",
        Kind::Route => "routes",
        Kind::VirtualService => "virtualServices",
        Kind::VirtualGateway => "virtualGateways",
        Kind::GatewayRoute => "gatewayRoutes",
    }
}

/// Every resource of `kind` in `model` with where it was read from, sorted by (mesh, parent, name).
pub fn entries(model: &Model, kind: Kind) -> Vec<(Target, &Origin)> {
    fn t(kind: Kind, mesh: &str, parent: &str, name: &str) -> Target {
        Target {
            kind,
            mesh: mesh.to_owned(),
            parent: parent.to_owned(),
            name: name.to_owned(),
        }
    }
    match kind {
        Kind::Mesh => model
            .meshes
            .values()
            .map(|r| (t(kind, &r.name, "", &r.name), &r.origin))
            .collect(),
        Kind::VirtualNode => model
            .nodes
            .values()
            .map(|r| (t(kind, &r.mesh, "", &r.name), &r.origin))
            .collect(),
        Kind::VirtualRouter => model
            .routers
            .values()
            .map(|r| (t(kind, &r.mesh, "", &r.name), &r.origin))
            .collect(),
        Kind::Route => model
            .routes
            .values()
            .map(|r| (t(kind, &r.mesh, &r.parent, &r.name), &r.origin))
            .collect(),
        Kind::VirtualService => model
            .services
            .values()
            .map(|r| (t(kind, &r.mesh, "", &r.name), &r.origin))
            .collect(),
        Kind::VirtualGateway => model
            .gateways
            .values()
            .map(|r| (t(kind, &r.mesh, "", &r.name), &r.origin))
            .collect(),
        Kind::GatewayRoute => model
            .gateway_routes
            .values()
            .map(|r| (t(kind, &r.mesh, &r.parent, &r.name), &r.origin))
            .collect(),
    }
}

/// Where `target` was read from, if the model has it.
pub fn find<'a>(model: &'a Model, target: &Target) -> Option<&'a Origin> {
    let k2 = (target.mesh.clone(), target.name.clone());
    let k3 = (
        target.mesh.clone(),
        target.parent.clone(),
        target.name.clone(),
    );
    match target.kind {
        Kind::Mesh => model.meshes.get(&target.name).map(|r| &r.origin),
        Kind::VirtualNode => model.nodes.get(&k2).map(|r| &r.origin),
        Kind::VirtualRouter => model.routers.get(&k2).map(|r| &r.origin),
        Kind::Route => model.routes.get(&k3).map(|r| &r.origin),
        Kind::VirtualService => model.services.get(&k2).map(|r| &r.origin),
        Kind::VirtualGateway => model.gateways.get(&k2).map(|r| &r.origin),
        Kind::GatewayRoute => model.gateway_routes.get(&k3).map(|r| &r.origin),
    }
}

/// How many resources `mesh` holds, the mesh itself left out.
pub fn count_in_mesh(model: &Model, mesh: &str) -> usize {
    Kind::ALL
        .into_iter()
        .filter(|k| *k != Kind::Mesh)
        .map(|k| {
            entries(model, k)
                .iter()
                .filter(|(t, _)| t.mesh == mesh)
                .count()
        })
        .sum()
}

/// A resource's metadata, as stored in its file (`metadata` beside `spec`, which the parser
/// ignores) or, for a hand-written resource without one, derived: version 1, the file's time,
/// and a uid hashed from the ARN (stable across restarts).
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    pub version: i64,
    pub created: SystemTime,
    pub updated: SystemTime,
    pub uid: String,
}

fn timestamp(v: Option<&Value>) -> Option<SystemTime> {
    match v? {
        Value::Number(n) => time::from_epoch_secs(n.as_f64()?),
        Value::String(s) => time::parse_iso8601(s),
        _ => None,
    }
}

/// A uid in UUID form from 16 bytes.
pub fn uuid_from(bytes: &[u8; 16]) -> String {
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random (version 4) UUID.
pub fn random_uuid() -> String {
    let mut b = [0u8; 16];
    for x in &mut b {
        *x = fastrand::u8(..);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_from(&b)
}

impl Meta {
    pub fn new(now: SystemTime) -> Meta {
        Meta {
            version: 1,
            created: now,
            updated: now,
            uid: random_uuid(),
        }
    }

    pub fn read(obj: &Map<String, Value>, file: &str, arn: &str) -> Meta {
        let m = obj.get("metadata").and_then(Value::as_object);
        let get = |k: &str| m.and_then(|m| m.get(k));
        let file_time = std::fs::metadata(Path::new(file))
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now());
        let created = timestamp(get("createdAt")).unwrap_or(file_time);
        Meta {
            version: get("version").and_then(Value::as_i64).unwrap_or(1),
            created,
            updated: timestamp(get("lastUpdatedAt")).unwrap_or(created),
            uid: get("uid")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    let d = ring::digest::digest(&ring::digest::SHA256, arn.as_bytes());
                    let mut b = [0u8; 16];
                    b.copy_from_slice(&d.as_ref()[..16]);
                    uuid_from(&b)
                }),
        }
    }
}

/// The region and account the agent presents itself as.
#[derive(Clone, Debug)]
pub struct Identity {
    pub region: String,
    pub account: String,
}

impl Identity {
    fn metadata(&self, t: &Target, m: &Meta, timestamps: fn(SystemTime) -> Value) -> Value {
        json!({
            "arn": t.arn(&self.region, &self.account),
            "createdAt": timestamps(m.created),
            "lastUpdatedAt": timestamps(m.updated),
            "meshOwner": self.account,
            "resourceOwner": self.account,
            "uid": m.uid,
            "version": m.version,
        })
    }

    fn names(t: &Target, obj: &mut Map<String, Value>) {
        obj.insert("meshName".into(), json!(t.mesh));
        if let Some(pk) = t.kind.parent_key() {
            obj.insert(pk.into(), json!(t.parent));
        }
        if t.kind != Kind::Mesh {
            obj.insert(t.kind.name_key().into(), json!(t.name));
        }
    }

    /// The object `Describe*` returns under the kind's key (`MeshData`, `VirtualNodeData`, ...).
    pub fn data(&self, t: &Target, stored: &Map<String, Value>, m: &Meta, status: &str) -> Value {
        let mut obj = Map::new();
        Self::names(t, &mut obj);
        obj.insert(
            "spec".into(),
            stored
                .get("spec")
                .cloned()
                .filter(|s| !s.is_null())
                .unwrap_or_else(|| json!({})),
        );
        obj.insert(
            "metadata".into(),
            self.metadata(t, m, |s| json!(time::epoch_secs(s))),
        );
        obj.insert("status".into(), json!({ "status": status }));
        Value::Object(obj)
    }

    /// The entry of `List*` output (`MeshRef`, `VirtualNodeRef`, ...).
    pub fn reference(&self, t: &Target, m: &Meta) -> Value {
        let Value::Object(mut obj) = self.metadata(t, m, |s| json!(time::epoch_secs(s))) else {
            return Value::Null;
        };
        obj.remove("uid");
        Self::names(t, &mut obj);
        Value::Object(obj)
    }

    /// The object a resource file holds: describe output (which `ferry-agent` reads like any
    /// dump), with ISO 8601 times as the AWS CLI prints them, and the tags and client token.
    pub fn stored(
        &self,
        t: &Target,
        spec: Value,
        m: &Meta,
        tags: Option<&Value>,
        client_token: Option<&str>,
    ) -> Map<String, Value> {
        let mut obj = Map::new();
        Self::names(t, &mut obj);
        obj.insert("spec".into(), spec);
        obj.insert(
            "metadata".into(),
            self.metadata(t, m, |s| json!(time::iso8601(s))),
        );
        obj.insert("status".into(), json!({ "status": "ACTIVE" }));
        if let Some(tags) = tags.filter(|t| t.as_array().is_some_and(|a| !a.is_empty())) {
            obj.insert("tags".into(), tags.clone());
        }
        if let Some(c) = client_token {
            obj.insert("clientToken".into(), json!(c));
        }
        obj
    }
}

/// Reads resource objects back out of the documents the model was parsed from; each document is
/// parsed once per request however many resources it holds.
#[derive(Default)]
pub struct RawReader {
    docs: HashMap<usize, Arc<Value>>,
}

impl RawReader {
    /// The resource object at `origin` (the inner object of describe output).
    pub fn object(&mut self, origin: &Origin) -> Result<Map<String, Value>, ApiError> {
        let key = Arc::as_ptr(&origin.doc_text).cast::<u8>() as usize;
        let doc = match self.docs.get(&key) {
            Some(d) => Arc::clone(d),
            None => {
                let v = Arc::new(parse_doc(&origin.file, &origin.doc_text).map_err(|e| {
                    ApiError::internal(format!("cannot re-read {}: {e}", origin.file))
                })?);
                self.docs.insert(key, Arc::clone(&v));
                v
            }
        };
        let mut v: &Value = &doc;
        let (index, rest) = split_path(&origin.json_path);
        if let Some(i) = index {
            v = v.get(i).unwrap_or(&Value::Null);
        }
        if let Some(k) = rest {
            v = v.get(k).unwrap_or(&Value::Null);
        }
        v.as_object().cloned().ok_or_else(|| {
            ApiError::internal(format!(
                "{}: the resource at {:?} is no longer an object",
                origin.file, origin.json_path
            ))
        })
    }
}

/// Parses one document as the model's parser does (JSON for `.json` files, else YAML 1.2).
pub fn parse_doc(file: &str, text: &str) -> Result<Value, String> {
    if file.to_ascii_lowercase().ends_with(".json") {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        let mut options = serde_saphyr::options::Options::default();
        options.strict_booleans = true;
        serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| e.to_string())
    }
}

/// An origin's json_path as (index in a top-level list, key of describe output):
/// "" -> (None, None), "virtualNode" -> (None, Some), "[2].route" -> (Some(2), Some("route")).
pub fn split_path(path: &str) -> (Option<usize>, Option<&str>) {
    if let Some(rest) = path.strip_prefix('[')
        && let Some((i, tail)) = rest.split_once(']')
        && let Ok(i) = i.parse()
    {
        let tail = tail.strip_prefix('.').filter(|t| !t.is_empty());
        return (Some(i), tail);
    }
    (None, Some(path).filter(|p| !p.is_empty()))
}
