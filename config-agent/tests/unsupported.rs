//! Valid App Mesh that Ferry cannot serve is refused at compile time, per proxy, with the file,
//! resource and field (ACM and SDS exist only inside App Mesh; one TLS setting per node; a gateway
//! always reaches its targets by name).
#![allow(clippy::unwrap_used, clippy::expect_used)]
use ferry_agent::compile::{self, Identity, Options};
use ferry_agent::store;

const BASE: &str = "mesh: { meshName: m, spec: {} }\n---\nmeshName: m\nvirtualNodeName: b\nspec:\n  listeners: [{ portMapping: { port: 80, protocol: http } }]\n  serviceDiscovery: { dns: { hostname: b.m.local } }\n---\nmeshName: m\nvirtualServiceName: b.m.local\nspec: { provider: { virtualNode: { virtualNodeName: b } } }\n";

fn compile_error(extra: &str, id: &str) -> String {
    let files = vec![
        ("base.yaml".to_owned(), BASE.to_owned()),
        ("x.yaml".to_owned(), extra.to_owned()),
    ];
    let model = store::load_files(&files).unwrap_or_else(|p| panic!("{p}"));
    compile::compile(&model, &Identity::parse(id).unwrap(), Options::default())
        .expect_err("not compilable")
        .to_string()
}

#[test]
fn acm_certificates_are_refused() {
    let e = compile_error(
        "meshName: m\nvirtualNodeName: x\nspec:\n  listeners:\n    - portMapping: { port: 80, protocol: http }\n      tls: { mode: STRICT, certificate: { acm: { certificateArn: arn:aws:acm:x } } }\n  serviceDiscovery: { dns: { hostname: x } }\n",
        "m/virtualNode/x",
    );
    assert_eq!(
        e,
        "x.yaml:6:43: virtualNode x (mesh m): spec.listeners[0].tls.certificate.acm: ACM certificates and ACM Private CA trust exist only inside App Mesh: export the certificate (or CA chain) to PEM files and use file instead"
    );
}

#[test]
fn sds_trust_in_a_client_policy_is_refused() {
    let e = compile_error(
        "meshName: m\nvirtualNodeName: x\nspec:\n  backends:\n    - virtualService:\n        virtualServiceName: b.m.local\n        clientPolicy: { tls: { validation: { trust: { sds: { secretName: ca } } } } }\n",
        "m/virtualNode/x",
    );
    assert_eq!(
        e,
        "x.yaml:7:55: virtualNode x (mesh m): spec.backends[0].virtualService.clientPolicy.tls.validation.trust.sds: SDS secrets are not supported by Ferry yet: mount the PEM files and use file instead"
    );
}

#[test]
fn listeners_of_one_node_must_share_their_tls() {
    let e = compile_error(
        "meshName: m\nvirtualNodeName: x\nspec:\n  listeners:\n    - portMapping: { port: 80, protocol: http }\n    - portMapping: { port: 81, protocol: http }\n      tls: { mode: STRICT, certificate: { file: { certificateChain: /c, privateKey: /k } } }\n  serviceDiscovery: { dns: { hostname: x } }\n",
        "m/virtualNode/x",
    );
    assert!(
        e.starts_with("x.yaml:7:7: virtualNode x (mesh m): spec.listeners[1].tls: its TLS differs from spec.listeners[0].tls"),
        "{e}"
    );
}

#[test]
fn a_gateway_route_keeping_the_host_is_refused() {
    let e = compile_error(
        "meshName: m\nvirtualGatewayName: g\nspec: { listeners: [{ portMapping: { port: 8080, protocol: http } }] }\n---\nmeshName: m\nvirtualGatewayName: g\ngatewayRouteName: r\nspec:\n  httpRoute:\n    match: { prefix: / }\n    action:\n      target: { virtualService: { virtualServiceName: b.m.local } }\n      rewrite: { hostname: { defaultTargetHostname: DISABLED } }\n",
        "m/virtualGateway/g",
    );
    assert!(
        e.starts_with("x.yaml:13:30: gatewayRoute r (mesh m, virtualGateway g): spec.httpRoute.action.rewrite.hostname.defaultTargetHostname: DISABLED is not supported"),
        "{e}"
    );
}
