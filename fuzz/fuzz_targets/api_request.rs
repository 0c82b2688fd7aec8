//! The agent's App Mesh API: what a client sends, and the file rewrites a write makes.
//! - First byte 0: an HTTP request (`METHOD PATH?QUERY`, header lines, a blank line, the body):
//!   the operation it names, its SigV4 check, an ARN in the query, a timestamp in the body.
//!   None may panic.
//! - First byte 1 (JSON) or 2 (YAML): a resource file. Removing any one of its resources (as a
//!   delete through the API does) must leave a file that parses to the other resources.
#![no_main]
use std::time::{Duration, SystemTime};

use ferry_agent::api::files::rewrite;
use ferry_agent::api::resources::Target;
use ferry_agent::api::sigv4::{Credentials, Signed, verify};
use ferry_agent::model::{Kind, Origin, ParsedResource, parse_text};
use libfuzzer_sys::fuzz_target;

fn request(text: &str) {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let Some(first) = lines.next() else {
        return;
    };
    let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let _ = ferry_agent::api::operation(&method, path);
    let mut headers = http::HeaderMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':')
            && let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.trim().as_bytes()),
                http::HeaderValue::from_str(v.trim()),
            )
        {
            headers.append(k, v);
        }
    }
    let creds = Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
    };
    let req = Signed {
        method: method.as_str(),
        raw_path: path,
        raw_query: query,
        authority: Some("127.0.0.1:9080"),
        headers: &headers,
        body: body.as_bytes(),
    };
    let _ = verify(
        &creds,
        &req,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160),
    );
    if let Some(q) = query {
        let _ = Target::from_arn(q);
    }
    let _ = ferry_agent::api::time::parse_iso8601(body);
}

fn kind_origin(r: &ParsedResource) -> (Kind, &Origin) {
    match r {
        ParsedResource::Mesh(x) => (Kind::Mesh, &x.origin),
        ParsedResource::VirtualNode(x) => (Kind::VirtualNode, &x.origin),
        ParsedResource::VirtualRouter(x) => (Kind::VirtualRouter, &x.origin),
        ParsedResource::Route(x) => (Kind::Route, &x.origin),
        ParsedResource::VirtualService(x) => (Kind::VirtualService, &x.origin),
        ParsedResource::VirtualGateway(x) => (Kind::VirtualGateway, &x.origin),
        ParsedResource::GatewayRoute(x) => (Kind::GatewayRoute, &x.origin),
    }
}

fn removal(file: &str, text: &str) {
    let json = file.ends_with(".json");
    let Ok(resources) = parse_text(file, text, json) else {
        return;
    };
    for r in resources.iter().take(4) {
        let (kind, origin) = kind_origin(r);
        let out = match rewrite(text, origin, kind, None) {
            Ok(out) => out,
            Err(e) => panic!("cannot remove {kind} at {:?}: {e}", origin.json_path),
        };
        match out {
            None => assert_eq!(resources.len(), 1, "the file was removed with others in it"),
            Some(new) => match parse_text(file, &new, json) {
                Ok(left) => assert_eq!(left.len(), resources.len() - 1, "{new}"),
                Err(p) => panic!("the rewritten file does not parse: {p:?}\n{new}"),
            },
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mode {
        0 => request(text),
        1 => removal("fuzz.json", text),
        2 => removal("fuzz.yaml", text),
        _ => {}
    }
});
