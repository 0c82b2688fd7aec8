//! Access logs end to end: Envoy's default line and JSON lines, written to files, with response
//! flags that tell an operator why a request failed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures should be loud
use std::time::Duration;

use ferry_tests::{Client, ProxyProcess, Upstream, UpstreamProtocol, table_yaml};

const ROUTES: &str = "- name: app\n  match: { prefix: /app }\n  action: { weightedTargets: [{ cluster: a, weight: 1 }] }\n- name: gone\n  match: { prefix: /gone }\n  action: { weightedTargets: [{ cluster: dead, weight: 1 }] }\n";

async fn read_lines(path: &std::path::Path, want: usize) -> Vec<String> {
    for _ in 0..250 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= want {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{} never had {want} lines: {:?}",
        path.display(),
        std::fs::read_to_string(path)
    );
}

#[tokio::test]
async fn default_envoy_line_and_json_lines() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text_log = dir.path().join("access.log");
    let json_log = dir.path().join("access.json");
    let base = table_yaml(
        ROUTES,
        &[("a", &[up.addr], "HTTP1"), ("dead", &[dead], "HTTP1")],
    );
    // Two listeners on the same routes: one with the default text line, one with JSON.
    let listener = base.split("clusters:").next().unwrap().to_owned();
    let second = listener
        .replace("listeners:\n", "")
        .replace("name: web", "name: api")
        .replace("    virtualHosts:", &format!(
            "    accessLog:\n      path: {}\n      json:\n        fields:\n          - {{ key: status, value: '%RESPONSE_CODE%' }}\n          - {{ key: flags, value: '%RESPONSE_FLAGS%' }}\n          - {{ key: method, value: '%REQ(:METHOD)%' }}\n          - {{ key: route, value: '%ROUTE_NAME%' }}\n          - {{ key: cluster, value: '%UPSTREAM_CLUSTER%' }}\n          - {{ key: agent, value: '%REQ(USER-AGENT)%' }}\n          - {{ key: bytes, value: '%BYTES_SENT%' }}\n    virtualHosts:",
            json_log.display()
        ))
        .replace("- name: app", "- name: app2")
        .replace("- name: gone", "- name: gone2");
    let first = listener.replace(
        "    virtualHosts:",
        &format!(
            "    accessLog:\n      path: {}\n    virtualHosts:",
            text_log.display()
        ),
    );
    let yaml = format!(
        "{first}{second}clusters:{}",
        base.split("clusters:").nth(1).unwrap()
    );
    let proxy = ProxyProcess::start(&yaml).await.expect("proxy");
    let c = Client::http1();

    let web = proxy.url("web").await;
    let r = c
        .get_with(
            &format!("{web}/app/x?y=1"),
            &[("user-agent", "tester/1.0"), ("x-request-id", "rid-1")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    c.get(&format!("{web}/gone")).await.unwrap();
    c.get(&format!("{web}/nothing")).await.unwrap();
    let lines = read_lines(&text_log, 3).await;
    // [START_TIME] "METHOD PATH PROTOCOL" CODE FLAGS RX TX DURATION UPSTREAM_TIME "XFF" "UA" "REQ-ID" "AUTHORITY" "UPSTREAM_HOST"
    let ok = &lines[0];
    assert!(
        ok.starts_with("[20") && ok.contains("Z] \"GET /app/x?y=1 HTTP/1.1\" 200 - 0 "),
        "{ok}"
    );
    assert!(
        ok.ends_with(&format!(
            "\"127.0.0.1\" \"tester/1.0\" \"rid-1\" \"{}\" \"{}\"",
            web.trim_start_matches("http://"),
            up.addr
        )),
        "{ok}"
    );
    assert!(
        lines[1].contains("\"GET /gone HTTP/1.1\" 503 UF "),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("\"GET /nothing HTTP/1.1\" 404 NR "),
        "{}",
        lines[2]
    );
    assert!(
        lines[2].ends_with("\"-\""),
        "no upstream host for a 404: {}",
        lines[2]
    );
    // A request body is counted in BYTES_RECEIVED.
    let r = c
        .send(
            http::Method::POST,
            &format!("{web}/app/upload"),
            &[],
            bytes::Bytes::from(vec![b'x'; 1234]),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let lines = read_lines(&text_log, 4).await;
    assert!(
        lines[3].contains("\"POST /app/upload HTTP/1.1\" 200 - 1234 "),
        "{}",
        lines[3]
    );

    let api = proxy.url("api").await;
    c.get_with(&format!("{api}/app/1"), &[("user-agent", "json/2")])
        .await
        .unwrap();
    Client::http2()
        .get(&format!("{api}/nothing"))
        .await
        .unwrap();
    let lines = read_lines(&json_log, 2).await;
    let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("json line");
    assert_eq!(first["status"], 200);
    assert_eq!(first["flags"], "-");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["route"], "app2");
    assert_eq!(first["cluster"], "a");
    assert_eq!(first["agent"], "json/2");
    assert!(first["bytes"].as_u64().unwrap() > 0);
    let second: serde_json::Value = serde_json::from_str(&lines[1]).expect("json line");
    assert_eq!(
        (second["status"].as_u64(), second["flags"].as_str()),
        (Some(404), Some("NR"))
    );
}

#[tokio::test]
async fn a_bad_format_string_is_a_config_error() {
    let up = Upstream::start("a", UpstreamProtocol::Http1).await;
    let yaml = table_yaml(ROUTES, &[("a", &[up.addr], "HTTP1"), ("dead", &[up.addr], "HTTP1")])
        .replace("    virtualHosts:", "    accessLog:\n      path: /dev/stdout\n      text: '%NOT_AN_OPERATOR%'\n    virtualHosts:");
    let err = ProxyProcess::start(&yaml)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("listeners[0].accessLog.text") && err.contains("NOT_AN_OPERATOR"),
        "{err}"
    );
}

/// App Mesh's `logging.accessLog.file.format`, text and JSON, through the agent: every common
/// Envoy operator on a real request gives the expected field.
#[tokio::test]
async fn app_mesh_formats_with_every_operator_through_the_agent() {
    use ferry_tests::{AgentProcess, AgentProxy};
    let api = Upstream::start("api", UpstreamProtocol::Http1).await;
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let text_log = logs.path().join("front.log");
    let json_log = logs.path().join("back.log");
    let port = api.addr.port();
    let text = "%START_TIME(%Y-%m-%d)% %REQ(:METHOD)% %METHOD% %REQ(:PATH)% %REQ(X-TEST)% %REQ(X-NONE?X-TEST)% %RESP(X-UPSTREAM)% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %UPSTREAM_HOST% %UPSTREAM_CLUSTER% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_REMOTE_ADDRESS%\n";
    let json_fields = [
        ("start", "%START_TIME%"),
        ("req", "%REQ(X-TEST)%"),
        ("resp", "%RESP(X-UPSTREAM)%"),
        ("method", "%METHOD%"),
        ("protocol", "%PROTOCOL%"),
        ("code", "%RESPONSE_CODE%"),
        ("flags", "%RESPONSE_FLAGS%"),
        ("rx", "%BYTES_RECEIVED%"),
        ("tx", "%BYTES_SENT%"),
        ("duration", "%DURATION%"),
        ("host", "%UPSTREAM_HOST%"),
        ("cluster", "%UPSTREAM_CLUSTER%"),
        ("client", "%DOWNSTREAM_REMOTE_ADDRESS%"),
        ("line", "%METHOD% %REQ(:PATH)% -> %RESPONSE_CODE%"),
    ];
    let json = json_fields
        .iter()
        .map(|(k, v)| format!("{{ key: {k}, value: '{v}' }}"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        dir.path().join("mesh.yaml"),
        format!(
            "mesh: {{ meshName: shop }}
---
meshName: shop
virtualNodeName: front
spec:
  backends: [{{ virtualService: {{ virtualServiceName: api.shop.local }} }}]
  logging: {{ accessLog: {{ file: {{ path: '{text_path}', format: {{ text: {text:?} }} }} }} }}
---
meshName: shop
virtualNodeName: back
spec:
  backends: [{{ virtualService: {{ virtualServiceName: api.shop.local }} }}]
  logging: {{ accessLog: {{ file: {{ path: '{json_path}', format: {{ json: [{json}] }} }} }} }}
---
meshName: shop
virtualNodeName: api
spec:
  listeners: [{{ portMapping: {{ port: {port}, protocol: http }} }}]
  serviceDiscovery: {{ dns: {{ hostname: 127.0.0.1 }} }}
---
meshName: shop
virtualServiceName: api.shop.local
spec: {{ provider: {{ virtualNode: {{ virtualNodeName: api }} }} }}
",
            text_path = text_log.display(),
            json_path = json_log.display(),
        ),
    )
    .unwrap();
    let agent = AgentProcess::start(dir.path()).await.expect("agent");
    let (s1, s2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let front = AgentProxy::start(&agent.url(), "shop/virtualNode/front", s1.path())
        .await
        .expect("front");
    let back = AgentProxy::start(&agent.url(), "shop/virtualNode/back", s2.path())
        .await
        .expect("back");
    let c = Client::http1();
    let host = format!("api.shop.local:{port}");
    let headers = [("host", host.as_str()), ("x-test", "tv")];
    let cluster = format!("api:{port}");

    let r = c
        .get_with(
            &format!("{}/hello?x=1", front.url("egress").await),
            &headers,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let line = read_lines(&text_log, 1).await.remove(0);
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 17, "{line}");
    let today = f[0];
    assert!(
        today.len() == 10 && today.starts_with("20") && today.as_bytes()[4] == b'-',
        "{line}"
    );
    assert_eq!(
        f[1..12],
        [
            "GET",
            "GET",
            "/hello?x=1",
            "tv",
            "tv",
            "api",
            "HTTP/1.1",
            "200",
            "-",
            "0",
            &r.body.len().to_string()
        ],
        "{line}"
    );
    assert!(f[12].parse::<u64>().is_ok(), "duration in ms: {line}");
    assert_eq!(f[13], api.addr.to_string());
    assert_eq!(f[14], cluster);
    assert_eq!(f[15], "127.0.0.1");
    assert!(f[16].starts_with("127.0.0.1:"), "{line}");

    let r = c
        .get_with(
            &format!("{}/status/404", back.url("egress").await),
            &headers,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let line = read_lines(&json_log, 1).await.remove(0);
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), json_fields.len(), "{line}");
    assert!(v["start"].as_str().unwrap().ends_with('Z'), "{line}");
    assert_eq!(v["req"], "tv");
    assert_eq!(v["resp"], "api");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["code"], 404, "numbers stay numbers: {line}");
    assert_eq!(v["flags"], "-");
    assert_eq!(v["rx"], 0);
    assert_eq!(v["tx"].as_u64(), Some(r.body.len() as u64));
    assert!(v["duration"].is_u64(), "{line}");
    assert_eq!(v["host"], api.addr.to_string());
    assert_eq!(v["cluster"], cluster.as_str());
    assert!(
        v["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{line}"
    );
    assert_eq!(v["line"], "GET /status/404 -> 404");
}
