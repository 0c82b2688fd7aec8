//! The route matcher: an arbitrary small table (built as JSON from structured input, compiled as
//! the proxy compiles it) against arbitrary requests. Matching and rewriting may not panic, and a
//! rewritten path must still be a valid request target.
#![no_main]
use arbitrary::Arbitrary;
use ferry_proxy::route::{RequestView, normalize_path};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

#[derive(Arbitrary, Debug)]
enum Str {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(String),
    Range(i64, i64),
    Present(bool),
}

#[derive(Arbitrary, Debug)]
struct HeaderRule {
    name: String,
    rule: Str,
    invert: bool,
}

#[derive(Arbitrary, Debug)]
enum PathRule {
    Any,
    Prefix(String),
    Exact(String),
    Regex(String),
}

#[derive(Arbitrary, Debug)]
struct RouteIn {
    priority: u8,
    path: PathRule,
    headers: Vec<HeaderRule>,
    method: Option<String>,
    scheme: Option<bool>,
    query: Vec<(String, Option<String>)>,
    port: Option<u16>,
    rewrite_prefix: Option<String>,
    grpc: Option<(String, Option<String>)>,
}

#[derive(Arbitrary, Debug)]
struct Request {
    method: String,
    target: String,
    authority: String,
    headers: Vec<(String, Vec<u8>)>,
    https: bool,
    port: u16,
}

#[derive(Arbitrary, Debug)]
struct Input {
    vhosts: Vec<(Vec<String>, Vec<RouteIn>)>,
    requests: Vec<Request>,
}

fn string_match(s: &Str) -> (&'static str, Value) {
    match s {
        Str::Exact(v) => ("exact", json!(v)),
        Str::Prefix(v) => ("prefix", json!(v)),
        Str::Suffix(v) => ("suffix", json!(v)),
        Str::Regex(v) => ("regex", json!(v)),
        Str::Range(a, b) => (
            "range",
            json!({"start": a.to_string(), "end": b.to_string()}),
        ),
        Str::Present(p) => ("present", json!(p)),
    }
}

fn route_json(i: usize, r: &RouteIn) -> Value {
    let mut m = serde_json::Map::new();
    match &r.path {
        PathRule::Any => {}
        PathRule::Prefix(p) => {
            m.insert("prefix".into(), json!(p));
        }
        PathRule::Exact(p) => {
            m.insert("exact".into(), json!(p));
        }
        PathRule::Regex(p) => {
            m.insert("regex".into(), json!(p));
        }
    }
    let headers: Vec<Value> = r
        .headers
        .iter()
        .take(4)
        .map(|h| {
            let (k, v) = string_match(&h.rule);
            json!({"name": h.name, k: v, "invert": h.invert})
        })
        .collect();
    m.insert("headers".into(), json!(headers));
    if let Some(method) = &r.method {
        m.insert("method".into(), json!(method));
    }
    if let Some(https) = r.scheme {
        m.insert("scheme".into(), json!(if https { "https" } else { "http" }));
    }
    let query: Vec<Value> = r
        .query
        .iter()
        .take(4)
        .map(|(name, exact)| match exact {
            Some(v) => json!({"name": name, "exact": v}),
            None => json!({"name": name, "present": true}),
        })
        .collect();
    m.insert("queryParameters".into(), json!(query));
    if let Some(p) = r.port {
        m.insert("port".into(), json!(p));
    }
    if let Some((service, method)) = &r.grpc {
        let mut g = json!({"serviceName": service});
        if let Some(method) = method {
            g["methodName"] = json!(method);
        }
        m.insert("grpc".into(), g);
    }
    let mut action = json!({"weightedTargets": [{"cluster": "c", "weight": 1}]});
    if let Some(p) = &r.rewrite_prefix {
        action["rewrite"] = json!({"prefix": p});
    }
    json!({"name": format!("r{i}"), "priority": r.priority, "match": Value::Object(m), "action": action})
}

fuzz_target!(|input: Input| {
    let mut n = 0;
    let vhosts: Vec<Value> = input
        .vhosts
        .iter()
        .take(3)
        .enumerate()
        .map(|(j, (domains, routes))| {
            let routes: Vec<Value> = routes
                .iter()
                .take(6)
                .map(|r| {
                    n += 1;
                    route_json(n, r)
                })
                .collect();
            json!({"name": format!("v{j}"), "domains": domains.iter().take(3).collect::<Vec<_>>(), "routes": routes})
        })
        .collect();
    let table = json!({
        "listeners": [{"name": "l", "address": "127.0.0.1:0", "virtualHosts": vhosts}],
        "clusters": [{"name": "c", "staticEndpoints": {"endpoints": [{"address": "127.0.0.1:1"}]}}],
    });
    let Ok(table) = ferry_api::decode_json(&table.to_string(), "fuzz.json") else {
        return;
    };
    let Some(rt) = ferry_fuzz::compile(table) else {
        return;
    };
    let Some(listener) = rt.listeners.first() else {
        return;
    };
    let vhosts = &listener.table.vhosts;

    for req in input.requests.iter().take(8) {
        let Ok(method) = Method::from_bytes(req.method.as_bytes()) else {
            continue;
        };
        // Only what hyper would hand the proxy: a valid request target.
        let Ok(uri) = req.target.parse::<http::Uri>() else {
            continue;
        };
        let mut headers = HeaderMap::new();
        for (k, v) in req.headers.iter().take(16) {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_bytes(v),
            ) {
                headers.append(k, v);
            }
        }
        let path = normalize_path(uri.path());
        ferry_fuzz::check_normalized(uri.path(), &path);
        let view = RequestView {
            method: &method,
            path: &path,
            query: uri.query(),
            headers: &headers,
            scheme: if req.https { "https" } else { "http" },
            port: req.port,
        };
        let Some((_, vhost)) = vhosts.find(&req.authority) else {
            continue;
        };
        if let Some(route) = vhost.routes.iter().find(|r| r.matches(&view))
            && let Some(new) = route.rewrite_path(&path)
        {
            // The handler answers 400 when a rewrite is not a valid path; it must never panic.
            let _ = http::uri::PathAndQuery::try_from(new.as_str());
        }
    }
});
