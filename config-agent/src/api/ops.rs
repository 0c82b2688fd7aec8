//! The App Mesh operations. Reads answer from the model the agent serves; writes are serialised
//! (one at a time), build on the directory as it is on disk now, validate the whole resulting
//! model exactly as a file change is validated, write the files atomically, and reload the store
//! before answering (the body is the resource's data object: botocore's output shapes make it
//! the payload), so that a read after a write sees it and the proxies get it at once.
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::files::{self, FileOp};
use super::resources::{Identity, Meta, RawReader, Target, count_in_mesh, entries, find, list_key};
use super::sigv4::Credentials;
use crate::model::{Kind, Model, Origin, Problems};
use crate::server::AgentMetrics;
use crate::store::{self, Store};

/// App Mesh allows 50 tags per resource.
const MAX_TAGS: usize = 50;

/// How the API is set up.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub identity: Identity,
    /// When set, every request must carry a valid SigV4 signature made with this key.
    pub credentials: Option<Credentials>,
    /// Without credentials, accept writes anyway (local use).
    pub allow_unauthenticated: bool,
    /// Resources one mesh may hold (App Mesh's quotas are per kind and lower; this only guards
    /// the agent against a runaway script).
    pub max_resources_per_mesh: usize,
}

/// The API's state: the store it reads and writes, its settings, and the lock that serialises
/// writes.
pub struct Api {
    pub store: Arc<Store>,
    pub config: ApiConfig,
    pub metrics: Arc<AgentMetrics>,
    writing: Mutex<()>,
}

/// A resource as its file holds it now.
struct Stored {
    origin: Origin,
    obj: Map<String, Value>,
    meta: Meta,
}

enum Change {
    Put(Map<String, Value>),
    Delete,
}

/// What a write does, decided from the directory as it is.
struct Plan {
    change: Option<Change>,
    response: Value,
}

/// A write's request fields.
pub struct WriteRequest {
    pub spec: Option<Value>,
    pub tags: Option<Value>,
    pub client_token: Option<String>,
    /// `If-Match: VERSION`: the write applies only to that version (a Ferry extension; App Mesh
    /// has none, and always applies the last write).
    pub if_match: Option<i64>,
}

fn check_tags(tags: &Value) -> Result<&Vec<Value>, ApiError> {
    let list = tags
        .as_array()
        .ok_or_else(|| ApiError::bad_request("tags: expected a list of {key, value}"))?;
    for (i, t) in list.iter().enumerate() {
        let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
        if key.is_empty() || key.len() > 128 {
            return Err(ApiError::bad_request(format!(
                "tags[{i}].key: required, 1 to 128 characters"
            )));
        }
        if t.get("value").is_some_and(|v| !v.is_string()) {
            return Err(ApiError::bad_request(format!(
                "tags[{i}].value: must be a string"
            )));
        }
    }
    if list.len() > MAX_TAGS {
        return Err(ApiError::too_many_tags(format!(
            "a resource can have at most {MAX_TAGS} tags, not {}",
            list.len()
        )));
    }
    Ok(list)
}

impl Api {
    pub fn new(store: Arc<Store>, metrics: Arc<AgentMetrics>, config: ApiConfig) -> Arc<Api> {
        Arc::new(Api {
            store,
            config,
            metrics,
            writing: Mutex::new(()),
        })
    }

    fn id(&self) -> &Identity {
        &self.config.identity
    }

    fn arn(&self, t: &Target) -> String {
        t.arn(&self.id().region, &self.id().account)
    }

    fn served(&self) -> Arc<Model> {
        self.store.current().model.clone().unwrap_or_default()
    }

    /// NotFound for `t`, naming the missing mesh or parent when that is what is missing.
    fn not_found(model: &Model, t: &Target) -> ApiError {
        if t.kind != Kind::Mesh && !model.meshes.contains_key(&t.mesh) {
            return ApiError::not_found(format!("mesh {} not found", t.mesh));
        }
        if let Some(e) = Self::missing_parent(model, t.kind, &t.mesh, &t.parent) {
            return e;
        }
        ApiError::not_found(format!("{} not found", t.describe()))
    }

    fn missing_parent(model: &Model, kind: Kind, mesh: &str, parent: &str) -> Option<ApiError> {
        let (pk, exists) = match kind {
            Kind::Route => (Kind::VirtualRouter, model.router(mesh, parent).is_some()),
            Kind::GatewayRoute => (Kind::VirtualGateway, model.gateway(mesh, parent).is_some()),
            _ => return None,
        };
        (!exists).then(|| ApiError::not_found(format!("{pk} {parent} (mesh {mesh}) not found")))
    }

    fn stored(
        &self,
        reader: &mut RawReader,
        t: &Target,
        origin: &Origin,
    ) -> Result<Stored, ApiError> {
        let obj = reader.object(origin)?;
        let meta = Meta::read(&obj, &origin.file, &self.arn(t));
        Ok(Stored {
            origin: origin.clone(),
            obj,
            meta,
        })
    }

    // === Reads ===

    pub fn describe(&self, t: &Target) -> Result<Value, ApiError> {
        let model = self.served();
        let origin = find(&model, t).ok_or_else(|| Self::not_found(&model, t))?;
        let s = self.stored(&mut RawReader::default(), t, origin)?;
        Ok(self.id().data(t, &s.obj, &s.meta, "ACTIVE"))
    }

    /// `List*`: names in order, `limit` (1..100, default 100) per page, `nextToken` to go on.
    pub fn list(
        &self,
        kind: Kind,
        mesh: &str,
        parent: &str,
        limit: Option<&str>,
        next_token: Option<&str>,
    ) -> Result<Value, ApiError> {
        let model = self.served();
        if kind != Kind::Mesh && !model.meshes.contains_key(mesh) {
            return Err(ApiError::not_found(format!("mesh {mesh} not found")));
        }
        if let Some(e) = Self::missing_parent(&model, kind, mesh, parent) {
            return Err(e);
        }
        let limit = parse_limit(limit)?;
        let after = match next_token {
            Some(tok) => Some(decode_token(tok)?),
            None => None,
        };
        let mut reader = RawReader::default();
        let mut items = Vec::new();
        let mut next = None;
        let all = entries(&model, kind);
        let matching = all.iter().filter(|(t, _)| {
            (kind == Kind::Mesh || t.mesh == mesh)
                && t.parent == parent
                && after.as_ref().is_none_or(|a| t.name.as_str() > a.as_str())
        });
        for (t, origin) in matching {
            if items.len() == limit {
                next = items
                    .last()
                    .and_then(|v: &Value| v.get(kind_name_key(kind)))
                    .and_then(Value::as_str)
                    .map(encode_token);
                break;
            }
            let s = self.stored(&mut reader, t, origin)?;
            items.push(self.id().reference(t, &s.meta));
        }
        let mut out = Map::new();
        out.insert(list_key(kind).into(), Value::Array(items));
        if let Some(n) = next {
            out.insert("nextToken".into(), json!(n));
        }
        Ok(Value::Object(out))
    }

    pub fn list_tags(
        &self,
        arn: &str,
        limit: Option<&str>,
        next_token: Option<&str>,
    ) -> Result<Value, ApiError> {
        let t = Target::from_arn(arn)?;
        let model = self.served();
        let origin = find(&model, &t).ok_or_else(|| Self::not_found(&model, &t))?;
        let s = self.stored(&mut RawReader::default(), &t, origin)?;
        let tags = s
            .obj
            .get("tags")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let limit = parse_limit(limit)?;
        let start = match next_token {
            Some(tok) => decode_token(tok)?
                .parse::<usize>()
                .map_err(|_| ApiError::bad_request("nextToken is not valid"))?,
            None => 0,
        };
        let page: Vec<Value> = tags.iter().skip(start).take(limit).cloned().collect();
        let mut out = json!({ "tags": page });
        if start + limit < tags.len() {
            out["nextToken"] = json!(encode_token(&(start + limit).to_string()));
        }
        Ok(out)
    }

    // === Writes ===

    /// Runs one write: read the directory, plan, validate the whole result, write, reload.
    fn transact(
        &self,
        t: &Target,
        deleting: bool,
        plan: impl FnOnce(&Model, Option<Stored>) -> Result<Plan, ApiError>,
    ) -> Result<Value, ApiError> {
        let _one_at_a_time = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let dir = self.store.dir.clone();
        let files = store::read_files(&dir)
            .map_err(|p| ApiError::internal(format!("cannot read the resources: {p}")))?;
        let model = store::parse_files(&files).map_err(|p| {
            ApiError::bad_request(format!(
                "the resource directory has problems to fix first: {}",
                explain(&p, &dir, "")
            ))
        })?;
        let stored = match find(&model, t) {
            Some(o) => Some(self.stored(&mut RawReader::default(), t, o)?),
            None => None,
        };
        let origin = stored.as_ref().map(|s| s.origin.clone());
        let plan = plan(&model, stored)?;
        let Some(change) = plan.change else {
            return Ok(plan.response);
        };
        let ops = match (origin, change) {
            (Some(o), change) => {
                let text = files
                    .iter()
                    .find(|(p, _)| *p == o.file)
                    .map(|(_, t)| t.as_str())
                    .ok_or_else(|| ApiError::conflict(format!("{} vanished; retry", o.file)))?;
                let replacement = match change {
                    Change::Put(obj) => Some(obj),
                    Change::Delete => None,
                };
                match files::rewrite(text, &o, t.kind, replacement)? {
                    Some(text) => vec![FileOp::Write { path: o.file, text }],
                    None => vec![FileOp::Remove { path: o.file }],
                }
            }
            (None, Change::Put(obj)) => vec![FileOp::Write {
                path: new_path(&dir, t, &files),
                text: files::new_file_text(t.kind, obj),
            }],
            (None, Change::Delete) => return Err(Self::not_found(&model, t)),
        };
        let written = match &ops[0] {
            FileOp::Write { path, .. } | FileOp::Remove { path } => path.clone(),
        };
        let mut next = files;
        files::apply_in_memory(&mut next, &ops);
        if let Err(p) = store::load_files(&next) {
            let why = explain(&p, &dir, &written);
            return Err(if deleting {
                ApiError::in_use(format!("{} is still referenced: {why}", t.describe()))
            } else {
                ApiError::bad_request(why)
            });
        }
        files::apply_on_disk(&dir, &ops)
            .map_err(|e| ApiError::internal(format!("cannot write {written}: {e}")))?;
        tracing::info!(resource = %t.describe(), file = %written, "API write");
        self.store.reload_and_log();
        Ok(plan.response)
    }

    pub fn create(&self, t: &Target, req: WriteRequest) -> Result<Value, ApiError> {
        let spec = match (req.spec, t.kind) {
            (Some(s), _) if !s.is_null() => s,
            (_, Kind::Mesh) => json!({}),
            _ => return Err(ApiError::bad_request("spec is required")),
        };
        if let Some(tags) = &req.tags {
            check_tags(tags)?;
        }
        self.transact(t, false, |model, existing| {
            if let Some(s) = existing {
                let same_token = req.client_token.is_some()
                    && s.obj.get("clientToken").and_then(Value::as_str) == req.client_token.as_deref();
                if same_token {
                    // A retry of the create that made it: answer as then.
                    return Ok(Plan {
                        change: None,
                        response: self.id().data(t, &s.obj, &s.meta, "ACTIVE"),
                    });
                }
                return Err(ApiError::conflict(format!("{} already exists", t.describe())));
            }
            if t.kind != Kind::Mesh {
                if !model.meshes.contains_key(&t.mesh) {
                    return Err(ApiError::not_found(format!("mesh {} not found", t.mesh)));
                }
                if let Some(e) = Self::missing_parent(model, t.kind, &t.mesh, &t.parent) {
                    return Err(e);
                }
                let n = count_in_mesh(model, &t.mesh);
                if n >= self.config.max_resources_per_mesh {
                    return Err(ApiError::limit(format!(
                        "mesh {} already holds {n} resources, the most this agent allows (--api-max-resources-per-mesh)",
                        t.mesh
                    )));
                }
            }
            let meta = Meta::new(SystemTime::now());
            let obj = self.id().stored(t, spec, &meta, req.tags.as_ref(), req.client_token.as_deref());
            let response = self.id().data(t, &obj, &meta, "ACTIVE");
            Ok(Plan {
                change: Some(Change::Put(obj)),
                response,
            })
        })
    }

    fn check_version(s: &Stored, if_match: Option<i64>) -> Result<(), ApiError> {
        match if_match {
            Some(v) if v != s.meta.version => Err(ApiError::conflict(format!(
                "If-Match: version {v} is not the current version {}; describe the resource again and retry",
                s.meta.version
            ))),
            _ => Ok(()),
        }
    }

    pub fn update(&self, t: &Target, req: WriteRequest) -> Result<Value, ApiError> {
        let spec = match (req.spec, t.kind) {
            (Some(s), _) if !s.is_null() => s,
            (_, Kind::Mesh) => json!({}),
            _ => return Err(ApiError::bad_request("spec is required")),
        };
        self.transact(t, false, |model, existing| {
            let s = existing.ok_or_else(|| Self::not_found(model, t))?;
            Self::check_version(&s, req.if_match)?;
            let replay = req.client_token.is_some()
                && s.obj.get("clientToken").and_then(Value::as_str) == req.client_token.as_deref()
                && s.obj.get("spec") == Some(&spec);
            if replay {
                return Ok(Plan {
                    change: None,
                    response: self.id().data(t, &s.obj, &s.meta, "ACTIVE"),
                });
            }
            let meta = Meta {
                version: s.meta.version + 1,
                updated: SystemTime::now(),
                ..s.meta
            };
            let obj = self.id().stored(
                t,
                spec,
                &meta,
                s.obj.get("tags"),
                req.client_token.as_deref(),
            );
            let response = self.id().data(t, &obj, &meta, "ACTIVE");
            Ok(Plan {
                change: Some(Change::Put(obj)),
                response,
            })
        })
    }

    pub fn delete(&self, t: &Target, if_match: Option<i64>) -> Result<Value, ApiError> {
        self.transact(t, true, |model, existing| {
            let s = existing.ok_or_else(|| Self::not_found(model, t))?;
            Self::check_version(&s, if_match)?;
            if t.kind == Kind::Mesh {
                let n = count_in_mesh(model, &t.name);
                if n > 0 {
                    return Err(ApiError::in_use(format!(
                        "mesh {} still holds {n} resource(s); delete them first",
                        t.name
                    )));
                }
            }
            let inner_in_use = |kind: Kind, what: &str| {
                let n = entries(model, kind)
                    .iter()
                    .filter(|(x, _)| x.mesh == t.mesh && x.parent == t.name)
                    .count();
                (n > 0).then(|| {
                    ApiError::in_use(format!(
                        "{} still has {n} {what}; delete them first",
                        t.describe()
                    ))
                })
            };
            let busy = match t.kind {
                Kind::VirtualRouter => inner_in_use(Kind::Route, "route(s)"),
                Kind::VirtualGateway => inner_in_use(Kind::GatewayRoute, "gateway route(s)"),
                _ => None,
            };
            if let Some(e) = busy {
                return Err(e);
            }
            let response = self.id().data(t, &s.obj, &s.meta, "DELETED");
            Ok(Plan {
                change: Some(Change::Delete),
                response,
            })
        })
    }

    /// TagResource / UntagResource: the tags change, the version does not (as in App Mesh).
    pub fn retag(
        &self,
        arn: &str,
        add: Option<&Value>,
        remove: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let t = Target::from_arn(arn)?;
        if let Some(a) = add {
            check_tags(a)?;
        }
        let remove: Vec<String> = match remove {
            None => Vec::new(),
            Some(v) => v
                .as_array()
                .ok_or_else(|| ApiError::bad_request("tagKeys: expected a list of strings"))?
                .iter()
                .map(|k| {
                    k.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ApiError::bad_request("tagKeys: expected a list of strings"))
                })
                .collect::<Result<_, _>>()?,
        };
        self.transact(&t, false, |model, existing| {
            let s = existing.ok_or_else(|| Self::not_found(model, &t))?;
            let mut tags: Vec<Value> = s
                .obj
                .get("tags")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for new in add.and_then(Value::as_array).into_iter().flatten() {
                let key = new.get("key");
                tags.retain(|old| old.get("key") != key);
                tags.push(new.clone());
            }
            tags.retain(|old| {
                !old.get("key")
                    .and_then(Value::as_str)
                    .is_some_and(|k| remove.iter().any(|r| r == k))
            });
            let tags = Value::Array(tags);
            check_tags(&tags)?;
            let spec = s.obj.get("spec").cloned().unwrap_or_else(|| json!({}));
            let token = s.obj.get("clientToken").and_then(Value::as_str);
            let obj = self.id().stored(&t, spec, &s.meta, Some(&tags), token);
            Ok(Plan {
                change: Some(Change::Put(obj)),
                response: json!({}),
            })
        })
    }
}

fn kind_name_key(kind: Kind) -> &'static str {
    kind.name_key()
}

fn parse_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(100),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit: {l:?} is not between 1 and 100"
            ))),
        },
    }
}

/// Page tokens are the hex of where the next page starts after: opaque to clients, and any name
/// survives the query string.
fn encode_token(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(tok: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("nextToken is not valid");
    if !tok.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..tok.len())
        .step_by(2)
        .map(|i| {
            tok.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    String::from_utf8(bytes).map_err(|_| bad())
}

/// A free path for a new resource: the layout's, else with `~2`, `~3`... when a hand-written
/// file already has that name.
fn new_path(dir: &Path, t: &Target, files: &[(String, String)]) -> String {
    let base = files::layout_path(dir, t);
    let taken = |p: &Path| p.exists() || files.iter().any(|(f, _)| Path::new(f) == p);
    if !taken(&base) {
        return base.display().to_string();
    }
    let stem = base.with_extension("");
    (2..)
        .map(|n| format!("{}~{n}.json", stem.display()))
        .find(|p| !taken(Path::new(p)))
        .unwrap_or_else(|| base.display().to_string())
}

/// Problems as one message: those of the file being written without its name (they are about the
/// request), the others with their file relative to the resource directory.
fn explain(p: &Problems, dir: &Path, written: &str) -> String {
    let prefix = format!("{}/", dir.display());
    p.0.iter()
        .map(|x| {
            if x.file == written {
                let mut s = String::new();
                if let Some(sub) = &x.subject {
                    s.push_str(&format!("{sub}: "));
                }
                if !x.field.is_empty() {
                    s.push_str(&format!("{}: ", x.field));
                }
                s.push_str(&x.message);
                s
            } else {
                let mut x = x.clone();
                if let Some(rel) = x.file.strip_prefix(&prefix) {
                    x.file = rel.to_owned();
                }
                x.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
