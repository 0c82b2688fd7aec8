"""Steps of the App Mesh API tests (tests/tests/appmesh_api.rs), driven by the real boto3.

    python steps.py STEP ENDPOINT [ARGS...]

Each step asserts what App Mesh's API promises and exits non-zero with the reason if it does not;
what the Rust side needs next is printed as one JSON line on stdout.
"""
import json
import sys
import threading

import boto3
import botocore.config
import botocore.exceptions

MESH = "color-mesh"
ROUTER = "color-router"
SERVICE = "color.mesh.local"


def client(endpoint, key="AKIDFERRYTEST", secret="ferry-test-secret"):
    return boto3.client(
        "appmesh",
        endpoint_url=endpoint,
        region_name="us-west-2",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def expect_error(code, fn, *args, **kwargs):
    """Calls fn, which must fail with App Mesh error `code`; returns the error message."""
    try:
        fn(*args, **kwargs)
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}: {e}"
        return e.response["Error"]["Message"]
    raise AssertionError(f"expected {code}, but the call succeeded")


def node_spec(port):
    return {
        "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": "127.0.0.1"}},
    }


def split_spec(blue, green):
    return {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {
                "weightedTargets": [
                    {"virtualNode": "color-blue", "weight": blue},
                    {"virtualNode": "color-green", "weight": green},
                ]
            },
        }
    }


def check_metadata(data, arn_tail, version):
    m = data["metadata"]
    assert m["arn"] == f"arn:aws:appmesh:us-east-1:000000000000:mesh/{arn_tail}", m["arn"]
    assert m["version"] == version, m
    assert m["meshOwner"] == m["resourceOwner"] == "000000000000", m
    assert len(m["uid"]) == 36, m
    assert m["createdAt"] <= m["lastUpdatedAt"], m
    assert data["status"]["status"] == "ACTIVE", data


def step_build(endpoint, blue_port, green_port):
    """The mesh of the issue: two nodes, a router with a 50/50 route, a service, and a caller."""
    c = client(endpoint)
    mesh = c.create_mesh(meshName=MESH, spec={"egressFilter": {"type": "DROP_ALL"}})["mesh"]
    check_metadata(mesh, MESH, 1)
    c.create_virtual_node(meshName=MESH, virtualNodeName="color-blue", spec=node_spec(int(blue_port)))
    c.create_virtual_node(meshName=MESH, virtualNodeName="color-green", spec=node_spec(int(green_port)))
    router_spec = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}
    c.create_virtual_router(meshName=MESH, virtualRouterName=ROUTER, spec=router_spec)
    route = c.create_route(
        meshName=MESH, virtualRouterName=ROUTER, routeName="color-split", spec=split_spec(50, 50)
    )["route"]
    check_metadata(route, f"{MESH}/virtualRouter/{ROUTER}/route/color-split", 1)
    assert route["spec"] == split_spec(50, 50), route["spec"]
    c.create_virtual_service(
        meshName=MESH,
        virtualServiceName=SERVICE,
        spec={"provider": {"virtualRouter": {"virtualRouterName": ROUTER}}},
    )
    c.create_virtual_node(
        meshName=MESH,
        virtualNodeName="front",
        spec={"backends": [{"virtualService": {"virtualServiceName": SERVICE}}]},
    )

    # Describe each of them.
    d = c.describe_virtual_node(meshName=MESH, virtualNodeName="color-blue")["virtualNode"]
    check_metadata(d, f"{MESH}/virtualNode/color-blue", 1)
    assert d["spec"] == node_spec(int(blue_port)), d["spec"]
    d = c.describe_virtual_router(meshName=MESH, virtualRouterName=ROUTER)["virtualRouter"]
    assert d["spec"] == router_spec and d["virtualRouterName"] == ROUTER, d
    d = c.describe_route(meshName=MESH, virtualRouterName=ROUTER, routeName="color-split")["route"]
    assert d["spec"] == split_spec(50, 50) and d["virtualRouterName"] == ROUTER, d
    d = c.describe_virtual_service(meshName=MESH, virtualServiceName=SERVICE)["virtualService"]
    check_metadata(d, f"{MESH}/virtualService/{SERVICE}", 1)
    assert c.describe_mesh(meshName=MESH)["mesh"]["spec"] == {"egressFilter": {"type": "DROP_ALL"}}

    # Lists, and their pages.
    assert [m["meshName"] for m in c.list_meshes()["meshes"]] == [MESH]
    nodes = ["color-blue", "color-green", "front"]
    assert [n["virtualNodeName"] for n in c.list_virtual_nodes(meshName=MESH)["virtualNodes"]] == nodes
    seen, token, pages = [], None, 0
    while True:
        kw = {"nextToken": token} if token else {}
        page = c.list_virtual_nodes(meshName=MESH, limit=1, **kw)
        seen += [n["virtualNodeName"] for n in page["virtualNodes"]]
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert seen == nodes and pages == 3, (seen, pages)
    paged = c.get_paginator("list_virtual_nodes").paginate(
        meshName=MESH, PaginationConfig={"PageSize": 2}
    )
    assert [len(p["virtualNodes"]) for p in paged] == [2, 1]
    ref = c.list_routes(meshName=MESH, virtualRouterName=ROUTER)["routes"][0]
    assert ref["routeName"] == "color-split" and ref["version"] == 1, ref
    assert [r["virtualRouterName"] for r in c.list_virtual_routers(meshName=MESH)["virtualRouters"]] == [ROUTER]
    assert [s["virtualServiceName"] for s in c.list_virtual_services(meshName=MESH)["virtualServices"]] == [SERVICE]
    expect_error("BadRequestException", c.list_virtual_nodes, meshName=MESH, limit=101)

    # Errors: bad input names the field, and changes nothing.
    msg = expect_error(
        "BadRequestException",
        c.update_route,
        meshName=MESH, virtualRouterName=ROUTER, routeName="color-split", spec=split_spec(190, 0),
    )
    assert "spec.httpRoute.action.weightedTargets[0].weight" in msg, msg
    bad = node_spec(9)
    bad["listeners"][0]["portMapping"]["protocol"] = "htp"
    msg = expect_error("BadRequestException", c.create_virtual_node, meshName=MESH, virtualNodeName="bad", spec=bad)
    assert "spec.listeners[0].portMapping.protocol" in msg, msg
    d = c.describe_route(meshName=MESH, virtualRouterName=ROUTER, routeName="color-split")["route"]
    assert d["metadata"]["version"] == 1 and d["spec"] == split_spec(50, 50), d
    expect_error("NotFoundException", c.describe_virtual_node, meshName=MESH, virtualNodeName="bad")
    expect_error("NotFoundException", c.list_virtual_nodes, meshName="no-such-mesh")
    expect_error("ConflictException", c.create_virtual_router, meshName=MESH, virtualRouterName=ROUTER, spec=router_spec)

    # Deleting what others reference.
    msg = expect_error("ResourceInUseException", c.delete_virtual_node, meshName=MESH, virtualNodeName="color-blue")
    assert "color-split" in msg, msg
    expect_error("ResourceInUseException", c.delete_virtual_router, meshName=MESH, virtualRouterName=ROUTER)
    expect_error("ResourceInUseException", c.delete_mesh, meshName=MESH)
    # A resource nobody references goes, and says so.
    c.create_virtual_node(meshName=MESH, virtualNodeName="spare", spec=node_spec(9))
    gone = c.delete_virtual_node(meshName=MESH, virtualNodeName="spare")["virtualNode"]
    assert gone["status"]["status"] == "DELETED", gone
    expect_error("NotFoundException", c.describe_virtual_node, meshName=MESH, virtualNodeName="spare")

    # A virtual gateway and its gateway route.
    c.create_virtual_gateway(
        meshName=MESH, virtualGatewayName="ingress-gw",
        spec={"listeners": [{"portMapping": {"port": 8443, "protocol": "http"}}]},
    )
    gr_spec = {"httpRoute": {"match": {"prefix": "/"},
                             "action": {"target": {"virtualService": {"virtualServiceName": SERVICE}}}}}
    gr = c.create_gateway_route(
        meshName=MESH, virtualGatewayName="ingress-gw", gatewayRouteName="to-color", spec=gr_spec
    )["gatewayRoute"]
    check_metadata(gr, f"{MESH}/virtualGateway/ingress-gw/gatewayRoute/to-color", 1)
    d = c.describe_gateway_route(meshName=MESH, virtualGatewayName="ingress-gw", gatewayRouteName="to-color")
    assert d["gatewayRoute"]["spec"] == gr_spec, d
    refs = c.list_gateway_routes(meshName=MESH, virtualGatewayName="ingress-gw")["gatewayRoutes"]
    assert [(r["virtualGatewayName"], r["gatewayRouteName"]) for r in refs] == [("ingress-gw", "to-color")]
    assert [g["virtualGatewayName"] for g in c.list_virtual_gateways(meshName=MESH)["virtualGateways"]] == ["ingress-gw"]
    expect_error("ResourceInUseException", c.delete_virtual_gateway, meshName=MESH, virtualGatewayName="ingress-gw")
    msg = expect_error("ResourceInUseException", c.delete_virtual_service, meshName=MESH, virtualServiceName=SERVICE)
    assert "to-color" in msg or "front" in msg, msg
    expect_error("NotFoundException", c.list_gateway_routes, meshName=MESH, virtualGatewayName="nope")
    print(json.dumps({"ok": True}))


def step_weights(endpoint, blue, green, version):
    c = client(endpoint)
    r = c.update_route(
        meshName=MESH, virtualRouterName=ROUTER, routeName="color-split",
        spec=split_spec(int(blue), int(green)),
    )["route"]
    check_metadata(r, f"{MESH}/virtualRouter/{ROUTER}/route/color-split", int(version))
    assert r["spec"] == split_spec(int(blue), int(green)), r


def step_describe_route(endpoint):
    r = client(endpoint).describe_route(meshName=MESH, virtualRouterName=ROUTER, routeName="color-split")["route"]
    m = r["metadata"]
    print(json.dumps({"version": m["version"], "uid": m["uid"], "createdAt": m["createdAt"].timestamp(),
                      "spec": r["spec"]}))


def step_auth(endpoint, key, secret):
    good = client(endpoint, key, secret)
    good.create_mesh(meshName="signed")
    assert [m["meshName"] for m in good.list_meshes()["meshes"]] == ["signed"]
    msg = expect_error("InvalidSignatureException", client(endpoint, key, secret + "x").list_meshes)
    assert "signature" in msg.lower(), msg
    expect_error("InvalidSignatureException", client(endpoint, key, "wrong").create_mesh, meshName="evil")
    expect_error("UnrecognizedClientException", client(endpoint, "AKIDOTHER", secret).list_meshes)
    assert [m["meshName"] for m in good.list_meshes()["meshes"]] == ["signed"]


def step_no_auth(endpoint):
    c = client(endpoint)
    assert c.list_meshes()["meshes"] == []
    msg = expect_error("ForbiddenException", c.create_mesh, meshName="m")
    assert "--allow-unauthenticated" in msg, msg
    assert c.list_meshes()["meshes"] == []


def at_once(target, n):
    """Runs target(0) … target(n - 1) on n threads at once and waits for them all."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def step_concurrency(endpoint, limit):
    """Against the hand-written mesh of the test: concurrent writers, If-Match, client tokens."""
    c = client(endpoint)
    route = dict(meshName=MESH, virtualRouterName=ROUTER, routeName="color-split")
    start = c.describe_route(**route)["route"]["metadata"]["version"]
    errors = []

    def updates(i):
        try:
            cc = client(endpoint)
            for j in range(5):
                cc.update_route(spec=split_spec(i + 1, j + 1), **route)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    at_once(updates, 8)
    assert not errors, errors
    end = c.describe_route(**route)["route"]["metadata"]["version"]
    assert end == start + 40, f"lost updates: version {start} + 40 updates = {end}"

    arn = c.describe_virtual_node(meshName=MESH, virtualNodeName="color-blue")["virtualNode"]["metadata"]["arn"]

    def tag(i):
        try:
            client(endpoint).tag_resource(resourceArn=arn, tags=[{"key": f"k{i}", "value": str(i)}])
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    at_once(tag, 8)
    assert not errors, errors
    tags = c.list_tags_for_resource(resourceArn=arn)["tags"]
    assert sorted(t["key"] for t in tags) == [f"k{i}" for i in range(8)], tags
    page = c.list_tags_for_resource(resourceArn=arn, limit=3)
    assert len(page["tags"]) == 3 and page["nextToken"], page
    c.untag_resource(resourceArn=arn, tagKeys=["k0", "k1"])
    assert len(c.list_tags_for_resource(resourceArn=arn)["tags"]) == 6

    # If-Match: a write based on a stale version is refused, one on the current version applies.
    def if_match(version):
        def add(request, **_):
            request.headers["If-Match"] = str(version)
        return add

    stale = client(endpoint)
    stale.meta.events.register("before-sign.app-mesh.UpdateRoute", if_match(end - 1))
    msg = expect_error("ConflictException", stale.update_route, spec=split_spec(1, 1), **route)
    assert f"current version {end}" in msg, msg
    fresh = client(endpoint)
    fresh.meta.events.register("before-sign.app-mesh.UpdateRoute", if_match(end))
    assert fresh.update_route(spec=split_spec(1, 1), **route)["route"]["metadata"]["version"] == end + 1

    # clientToken: a retried create answers as the first time; another token conflicts.
    first = c.create_virtual_node(meshName=MESH, virtualNodeName="twice", spec=node_spec(7), clientToken="tok-1")
    again = c.create_virtual_node(meshName=MESH, virtualNodeName="twice", spec=node_spec(7), clientToken="tok-1")
    assert first["virtualNode"]["metadata"]["uid"] == again["virtualNode"]["metadata"]["uid"]
    expect_error("ConflictException", c.create_virtual_node, meshName=MESH, virtualNodeName="twice",
                 spec=node_spec(7), clientToken="tok-2")

    # Hand-written resources: updated and deleted where they are.
    a = c.describe_virtual_node(meshName=MESH, virtualNodeName="color-blue")["virtualNode"]
    assert a["metadata"]["version"] == 1, a
    spec = a["spec"]
    spec["listeners"][0]["portMapping"]["port"] = 9999
    b = c.update_virtual_node(meshName=MESH, virtualNodeName="color-blue", spec=spec)["virtualNode"]
    assert b["metadata"]["version"] == 2 and b["metadata"]["uid"] == a["metadata"]["uid"], (a, b)
    c.delete_virtual_node(meshName=MESH, virtualNodeName="unused")

    # The agent's limit on resources per mesh.
    n = 0
    try:
        for n in range(int(limit) + 1):
            c.create_virtual_node(meshName=MESH, virtualNodeName=f"filler-{n}", spec=node_spec(7))
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "LimitExceededException", e
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    else:
        raise AssertionError(f"created {n + 1} nodes past the limit {limit}")
    print(json.dumps({"version": end + 1}))


STEPS = {
    "build": step_build,
    "weights": step_weights,
    "describe-route": step_describe_route,
    "auth": step_auth,
    "no-auth": step_no_auth,
    "concurrency": step_concurrency,
}

if __name__ == "__main__":
    STEPS[sys.argv[1]](*sys.argv[2:])
