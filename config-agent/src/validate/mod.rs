//! App Mesh's own rules: ranges, required fields, unions with exactly one member, weights,
//! references that must exist, port rules when a node, router or gateway has several listeners,
//! and the API's 1..10 limits. Every problem names the file (and line), the resource and the field
//! path. A model with any problem is refused whole.
mod gateway;
mod node;
mod route;

pub use gateway::gateway_route_kind;
pub use route::{GRPC_RETRY_EVENTS, HTTP_RETRY_EVENTS, TCP_RETRY_EVENTS, route_kind};

use crate::model::{
    Duration, HeaderMatch, Kind, Model, PortMapping, Problem, Problems, Res, VirtualServiceSpec,
};

/// Checks the whole model; `Ok` when App Mesh would have accepted every resource.
pub fn validate(model: &Model) -> Result<(), Problems> {
    let mut v = Checker {
        model,
        out: Vec::new(),
    };
    v.meshes_exist();
    for n in model.nodes.values() {
        v.at(n, Kind::VirtualNode).node();
    }
    for r in model.routers.values() {
        v.at(r, Kind::VirtualRouter).router();
    }
    for r in model.routes.values() {
        v.at(r, Kind::Route).route();
    }
    for s in model.services.values() {
        v.at(s, Kind::VirtualService).service();
    }
    for g in model.gateways.values() {
        v.at(g, Kind::VirtualGateway).gateway();
    }
    for r in model.gateway_routes.values() {
        v.at(r, Kind::GatewayRoute).gateway_route();
    }
    if v.out.is_empty() {
        Ok(())
    } else {
        Err(Problems(v.out))
    }
}

pub(crate) struct Checker<'m> {
    model: &'m Model,
    out: Vec<Problem>,
}

impl<'m> Checker<'m> {
    fn at<'c, S>(&'c mut self, res: &'m Res<S>, kind: Kind) -> At<'c, 'm, S> {
        At {
            model: self.model,
            res,
            kind,
            out: &mut self.out,
        }
    }

    fn meshes_exist(&mut self) {
        let m = self.model;
        for r in m.nodes.values() {
            missing_mesh(m, r, Kind::VirtualNode, &mut self.out);
        }
        for r in m.routers.values() {
            missing_mesh(m, r, Kind::VirtualRouter, &mut self.out);
        }
        for r in m.routes.values() {
            missing_mesh(m, r, Kind::Route, &mut self.out);
        }
        for r in m.services.values() {
            missing_mesh(m, r, Kind::VirtualService, &mut self.out);
        }
        for r in m.gateways.values() {
            missing_mesh(m, r, Kind::VirtualGateway, &mut self.out);
        }
        for r in m.gateway_routes.values() {
            missing_mesh(m, r, Kind::GatewayRoute, &mut self.out);
        }
    }
}

fn missing_mesh<S>(m: &Model, r: &Res<S>, kind: Kind, out: &mut Vec<Problem>) {
    if !m.meshes.contains_key(&r.mesh) {
        let mesh = &r.mesh;
        out.push(r.problem(
            kind,
            "meshName",
            format!(
                "mesh {mesh:?} is not defined: add a mesh resource ({{\"mesh\": {{\"meshName\": \"{mesh}\", \"spec\": {{}}}}}})"
            ),
        ));
    }
}

/// Checks on one resource.
pub(crate) struct At<'c, 'm, S> {
    model: &'m Model,
    res: &'m Res<S>,
    kind: Kind,
    out: &'c mut Vec<Problem>,
}

impl<S> At<'_, '_, S> {
    fn err(&mut self, field: &str, message: impl Into<String>) {
        let p = self.res.problem(self.kind, field, message);
        self.out.push(p);
    }

    fn name_length(&mut self) {
        let key = self.kind.name_key();
        if self.res.name.len() > 255 {
            self.err(key, "names are 1..255 characters");
        }
    }

    /// `value` within `lo..=hi`.
    fn range(&mut self, field: &str, value: i64, lo: i64, hi: i64) -> bool {
        if value < lo || value > hi {
            self.err(field, format!("{value} is out of range {lo}..{hi}"));
            return false;
        }
        true
    }

    fn at_least(&mut self, field: &str, value: i64, lo: i64) {
        if value < lo {
            self.err(field, format!("{value} is below the minimum {lo}"));
        }
    }

    fn duration(&mut self, field: &str, d: &Duration) {
        if d.value < 0 {
            self.err(
                &format!("{field}.value"),
                format!("{} is negative: durations are 0 or more", d.value),
            );
        }
    }

    fn opt_duration(&mut self, field: &str, d: Option<&Duration>) {
        if let Some(d) = d {
            self.duration(field, d);
        }
    }

    /// A string field of `lo..=hi` characters.
    fn length(&mut self, field: &str, s: &str, lo: usize, hi: usize) -> bool {
        let n = s.chars().count();
        if n < lo || n > hi {
            if n == 0 {
                self.err(field, format!("must not be empty (1..{hi} characters)"));
            } else {
                self.err(
                    field,
                    format!("is {n} characters long: the limit is {lo}..{hi}"),
                );
            }
            return false;
        }
        true
    }

    /// A list of at most `max` items (an empty list means the field is not used).
    fn max_items(&mut self, field: &str, n: usize, max: usize) {
        if n > max {
            self.err(field, format!("has {n} items: at most {max} are allowed"));
        }
    }

    /// A union with exactly one member set; `set` names the members, with whether each is set.
    fn one_of(&mut self, field: &str, set: &[(&str, bool)]) -> bool {
        let n = set.iter().filter(|(_, s)| *s).count();
        if n == 1 {
            return true;
        }
        let names: Vec<&str> = set.iter().map(|(n, _)| *n).collect();
        if n == 0 {
            self.err(field, format!("needs exactly one of {}", names.join(", ")));
        } else {
            let given: Vec<&str> = set.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
            self.err(
                field,
                format!(
                    "takes exactly one of {}, not several ({})",
                    names.join(", "),
                    given.join(" and ")
                ),
            );
        }
        false
    }

    fn port(&mut self, field: &str, port: i64) -> bool {
        self.range(field, port, 1, 65535)
    }

    fn port_mappings<'a>(&mut self, field: &str, listeners: impl Iterator<Item = &'a PortMapping>) {
        let mut seen: Vec<(i64, usize)> = Vec::new();
        for (i, pm) in listeners.enumerate() {
            let f = format!("{field}[{i}].portMapping.port");
            if !self.port(&f, pm.port) {
                continue;
            }
            if let Some((_, first)) = seen.iter().find(|(p, _)| *p == pm.port) {
                let first = *first;
                self.err(
                    &f,
                    format!("port {} is already used by {field}[{first}]", pm.port),
                );
            }
            seen.push((pm.port, i));
        }
    }

    fn regex(&mut self, field: &str, re: &str) {
        if self.length(field, re, 1, 255)
            && let Err(e) = regex::Regex::new(re)
        {
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .trim_start_matches("error: ")
                .to_owned();
            self.err(field, format!("invalid regex: {first}"));
        }
    }

    /// Header (or gRPC metadata) matches: 1..10 of them, names 1..50, one match method each.
    fn header_matches(&mut self, field: &str, headers: &[HeaderMatch]) {
        self.max_items(field, headers.len(), 10);
        for (i, h) in headers.iter().enumerate() {
            let f = format!("{field}[{i}]");
            self.length(&format!("{f}.name"), &h.name, 1, 50);
            let Some(m) = &h.r#match else { continue };
            let mf = format!("{f}.match");
            if !self.one_of(
                &mf,
                &[
                    ("exact", m.exact.is_some()),
                    ("prefix", m.prefix.is_some()),
                    ("suffix", m.suffix.is_some()),
                    ("regex", m.regex.is_some()),
                    ("range", m.range.is_some()),
                ],
            ) {
                continue;
            }
            for (k, v) in [
                ("exact", &m.exact),
                ("prefix", &m.prefix),
                ("suffix", &m.suffix),
            ] {
                if let Some(v) = v {
                    self.length(&format!("{mf}.{k}"), v, 1, 255);
                }
            }
            if let Some(re) = &m.regex {
                self.regex(&format!("{mf}.regex"), re);
            }
            if let Some(r) = &m.range
                && r.start >= r.end
            {
                self.err(
                    &format!("{mf}.range"),
                    format!(
                        "start {} must be below end {} (the range includes start and excludes end)",
                        r.start, r.end
                    ),
                );
            }
        }
    }

    fn virtual_service_exists(&mut self, field: &str, name: &str) -> bool {
        if self.model.service(&self.res.mesh, name).is_none() {
            self.err(
                field,
                format!(
                    "virtualService {name:?} does not exist in mesh {}",
                    self.res.mesh
                ),
            );
            return false;
        }
        true
    }
}

impl At<'_, '_, VirtualServiceSpec> {
    fn service(&mut self) {
        self.name_length();
        let name = &self.res.name;
        let host_ok = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            && !name.starts_with('.')
            && !name.ends_with('.');
        if !host_ok {
            self.err(
                "virtualServiceName",
                format!(
                    "{name:?} is not a host name: a virtual service's name is the host name its clients call"
                ),
            );
        }
        let Some(p) = &self.res.spec.provider else {
            return;
        };
        if !self.one_of(
            "spec.provider",
            &[
                ("virtualNode", p.virtual_node.is_some()),
                ("virtualRouter", p.virtual_router.is_some()),
            ],
        ) {
            return;
        }
        let mesh = self.res.mesh.clone();
        if let Some(n) = &p.virtual_node
            && self.model.node(&mesh, &n.virtual_node_name).is_none()
        {
            self.err(
                "spec.provider.virtualNode.virtualNodeName",
                format!(
                    "virtualNode {:?} does not exist in mesh {mesh}",
                    n.virtual_node_name
                ),
            );
        }
        if let Some(r) = &p.virtual_router
            && self.model.router(&mesh, &r.virtual_router_name).is_none()
        {
            self.err(
                "spec.provider.virtualRouter.virtualRouterName",
                format!(
                    "virtualRouter {:?} does not exist in mesh {mesh}",
                    r.virtual_router_name
                ),
            );
        }
    }
}

/// The ports (and protocols) a virtual service answers on: its router's listeners or its node's.
pub fn service_ports(model: &Model, mesh: &str, service: &str) -> Vec<PortMapping> {
    let Some(s) = model.service(mesh, service) else {
        return Vec::new();
    };
    let Some(p) = &s.spec.provider else {
        return Vec::new();
    };
    if let Some(n) = &p.virtual_node {
        return model
            .node(mesh, &n.virtual_node_name)
            .map(|n| {
                n.spec
                    .listeners
                    .iter()
                    .map(|l| l.port_mapping.clone())
                    .collect()
            })
            .unwrap_or_default();
    }
    if let Some(r) = &p.virtual_router {
        return model
            .router(mesh, &r.virtual_router_name)
            .map(|r| {
                r.spec
                    .listeners
                    .iter()
                    .map(|l| l.port_mapping.clone())
                    .collect()
            })
            .unwrap_or_default();
    }
    Vec::new()
}
