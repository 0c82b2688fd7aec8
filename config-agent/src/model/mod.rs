//! The App Mesh resource model: the seven resource kinds, where each one was read from, and the
//! whole set the agent serves (a [`Model`]).
pub mod parse;
pub mod spec;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use parse::{ParsedResource, parse_text};
pub use spec::*;

/// The seven App Mesh resource kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Mesh,
    VirtualNode,
    VirtualRouter,
    Route,
    VirtualService,
    VirtualGateway,
    GatewayRoute,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Mesh,
        Kind::VirtualNode,
        Kind::VirtualRouter,
        Kind::Route,
        Kind::VirtualService,
        Kind::VirtualGateway,
        Kind::GatewayRoute,
    ];

    /// The key of `aws appmesh describe-*` output (`{"virtualNode": {...}}`).
    pub fn describe_key(self) -> &'static str {
        match self {
            Kind::Mesh => "mesh",
            Kind::VirtualNode => "virtualNode",
            Kind::VirtualRouter => "virtualRouter",
            Kind::Route => "route",
            Kind::VirtualService => "virtualService",
            Kind::VirtualGateway => "virtualGateway",
            Kind::GatewayRoute => "gatewayRoute",
        }
    }

    /// The key holding the resource's own name (`virtualNodeName`).
    pub fn name_key(self) -> &'static str {
        match self {
            Kind::Mesh => "meshName",
            Kind::VirtualNode => "virtualNodeName",
            Kind::VirtualRouter => "virtualRouterName",
            Kind::Route => "routeName",
            Kind::VirtualService => "virtualServiceName",
            Kind::VirtualGateway => "virtualGatewayName",
            Kind::GatewayRoute => "gatewayRouteName",
        }
    }

    /// The key naming the parent resource (routes live in a router, gateway routes in a gateway).
    pub fn parent_key(self) -> Option<&'static str> {
        match self {
            Kind::Route => Some("virtualRouterName"),
            Kind::GatewayRoute => Some("virtualGatewayName"),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe_key())
    }
}

/// Where a resource was read from, to point errors at the line to edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    /// The YAML document (or the whole JSON file) the resource is in.
    pub doc_text: Arc<str>,
    /// Lines before that document in the file.
    pub line_offset: usize,
    /// The path of the resource object inside the document: "" (the document itself),
    /// "virtualNode" (describe output), "[2].route" (third element of a list), ...
    pub json_path: String,
}

impl Origin {
    /// The 1-based line and column of `field_path` (relative to the resource object).
    pub fn position(&self, field_path: &str) -> Option<(usize, usize)> {
        let full = match (self.json_path.is_empty(), field_path.is_empty()) {
            (true, _) => field_path.to_owned(),
            (false, true) => self.json_path.clone(),
            (false, false) if field_path.starts_with('[') => {
                format!("{}{field_path}", self.json_path)
            }
            (false, false) => format!("{}.{field_path}", self.json_path),
        };
        ferry_api::locate(&self.doc_text, &full).map(|p| (p.line + self.line_offset, p.column))
    }
}

/// One resource of kind-specific spec `S`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Res<S> {
    pub mesh: String,
    pub name: String,
    /// The virtual router of a route, the virtual gateway of a gateway route; else empty.
    pub parent: String,
    pub spec: S,
    pub origin: Origin,
}

/// What a problem is about: a resource, shown as `route color-route (mesh m, virtualRouter r)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub kind: Kind,
    pub mesh: String,
    pub name: String,
    pub parent: String,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == Kind::Mesh {
            return write!(f, "mesh {}", self.name);
        }
        write!(f, "{} {} (mesh {}", self.kind, self.name, self.mesh)?;
        match self.kind {
            Kind::Route => write!(f, ", virtualRouter {}", self.parent)?,
            Kind::GatewayRoute => write!(f, ", virtualGateway {}", self.parent)?,
            _ => {}
        }
        f.write_str(")")
    }
}

impl<S> Res<S> {
    pub fn subject(&self, kind: Kind) -> Subject {
        Subject {
            kind,
            mesh: self.mesh.clone(),
            name: self.name.clone(),
            parent: self.parent.clone(),
        }
    }

    /// A problem at `field` (a path relative to the resource: `spec.listeners[0].portMapping`).
    pub fn problem(&self, kind: Kind, field: &str, message: impl Into<String>) -> Problem {
        Problem {
            file: self.origin.file.clone(),
            position: self.origin.position(field),
            subject: Some(Box::new(self.subject(kind))),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// A reason the resources cannot be served: the file (and line), the resource, the field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub position: Option<(usize, usize)>,
    pub subject: Option<Box<Subject>>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if let Some(s) = &self.subject {
            write!(f, ": {s}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Problem {}

/// Several problems, one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

pub type Key2 = (String, String);
pub type Key3 = (String, String, String);

/// Every resource the agent knows, keyed by (mesh, [parent,] name); sorted, so that everything
/// derived from a model is deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub meshes: BTreeMap<String, Res<MeshSpec>>,
    pub nodes: BTreeMap<Key2, Res<VirtualNodeSpec>>,
    pub routers: BTreeMap<Key2, Res<VirtualRouterSpec>>,
    pub routes: BTreeMap<Key3, Res<RouteSpec>>,
    pub services: BTreeMap<Key2, Res<VirtualServiceSpec>>,
    pub gateways: BTreeMap<Key2, Res<VirtualGatewaySpec>>,
    pub gateway_routes: BTreeMap<Key3, Res<GatewayRouteSpec>>,
}

fn k2(mesh: &str, name: &str) -> Key2 {
    (mesh.to_owned(), name.to_owned())
}

impl Model {
    /// Gathers parsed resources; a resource defined twice is a problem naming both places.
    pub fn build(resources: Vec<ParsedResource>) -> Result<Model, Problems> {
        let mut m = Model::default();
        let mut problems = Vec::new();
        for r in resources {
            let dup = match r {
                ParsedResource::Mesh(x) => insert(&mut m.meshes, x.name.clone(), x, Kind::Mesh),
                ParsedResource::VirtualNode(x) => {
                    insert(&mut m.nodes, k2(&x.mesh, &x.name), x, Kind::VirtualNode)
                }
                ParsedResource::VirtualRouter(x) => {
                    insert(&mut m.routers, k2(&x.mesh, &x.name), x, Kind::VirtualRouter)
                }
                ParsedResource::Route(x) => {
                    let key = (x.mesh.clone(), x.parent.clone(), x.name.clone());
                    insert(&mut m.routes, key, x, Kind::Route)
                }
                ParsedResource::VirtualService(x) => insert(
                    &mut m.services,
                    k2(&x.mesh, &x.name),
                    x,
                    Kind::VirtualService,
                ),
                ParsedResource::VirtualGateway(x) => insert(
                    &mut m.gateways,
                    k2(&x.mesh, &x.name),
                    x,
                    Kind::VirtualGateway,
                ),
                ParsedResource::GatewayRoute(x) => {
                    let key = (x.mesh.clone(), x.parent.clone(), x.name.clone());
                    insert(&mut m.gateway_routes, key, x, Kind::GatewayRoute)
                }
            };
            problems.extend(dup);
        }
        if problems.is_empty() {
            Ok(m)
        } else {
            Err(Problems(problems))
        }
    }

    pub fn node(&self, mesh: &str, name: &str) -> Option<&Res<VirtualNodeSpec>> {
        self.nodes.get(&k2(mesh, name))
    }

    pub fn router(&self, mesh: &str, name: &str) -> Option<&Res<VirtualRouterSpec>> {
        self.routers.get(&k2(mesh, name))
    }

    pub fn service(&self, mesh: &str, name: &str) -> Option<&Res<VirtualServiceSpec>> {
        self.services.get(&k2(mesh, name))
    }

    pub fn gateway(&self, mesh: &str, name: &str) -> Option<&Res<VirtualGatewaySpec>> {
        self.gateways.get(&k2(mesh, name))
    }

    /// The routes of router `router` in `mesh`, by name.
    pub fn routes_of<'a>(
        &'a self,
        mesh: &'a str,
        router: &'a str,
    ) -> impl Iterator<Item = &'a Res<RouteSpec>> + 'a {
        self.routes
            .values()
            .filter(move |r| r.mesh == mesh && r.parent == router)
    }

    /// The gateway routes of gateway `gateway` in `mesh`, by name.
    pub fn gateway_routes_of<'a>(
        &'a self,
        mesh: &'a str,
        gateway: &'a str,
    ) -> impl Iterator<Item = &'a Res<GatewayRouteSpec>> + 'a {
        self.gateway_routes
            .values()
            .filter(move |r| r.mesh == mesh && r.parent == gateway)
    }

    /// Number of resources of every kind.
    pub fn len(&self) -> usize {
        self.meshes.len()
            + self.nodes.len()
            + self.routers.len()
            + self.routes.len()
            + self.services.len()
            + self.gateways.len()
            + self.gateway_routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every proxy identity the model can serve: MESH/virtualNode/NAME and MESH/virtualGateway/NAME.
    pub fn identities(&self) -> Vec<String> {
        let nodes = self
            .nodes
            .values()
            .map(|n| format!("{}/virtualNode/{}", n.mesh, n.name));
        let gateways = self
            .gateways
            .values()
            .map(|g| format!("{}/virtualGateway/{}", g.mesh, g.name));
        nodes.chain(gateways).collect()
    }
}

fn insert<K: Ord, S>(
    map: &mut BTreeMap<K, Res<S>>,
    key: K,
    res: Res<S>,
    kind: Kind,
) -> Option<Problem> {
    if let Some(first) = map.get(&key) {
        let (line, _) = first.origin.position("").unwrap_or((0, 0));
        let at = if line > 0 {
            format!("{}:{line}", first.origin.file)
        } else {
            first.origin.file.clone()
        };
        let name_key = kind.name_key();
        return Some(res.problem(kind, name_key, format!("defined twice: also in {at}")));
    }
    map.insert(key, res);
    None
}
