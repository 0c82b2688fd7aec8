# syntax=docker/dockerfile:1
# ferry-proxy, the sidecar. Build from the repository root:
#   docker build -f docker/proxy.Dockerfile -t ferry-proxy .        # the App Mesh drop-in (last stage)
#   docker build -f docker/proxy.Dockerfile --target distroless -t ferry-proxy:distroless .
#   docker build -f docker/proxy.Dockerfile --build-arg PGO=0 -t ferry-proxy .  # no PGO: ~half the build time
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The profile-guided build (scripts/pgo-build.sh): the proxy is built instrumented, trained on
# HTTP/1.1, HTTP/2, gRPC and TCP traffic on the build container's loopback, and rebuilt with the
# profile (it fetches rustup's llvm-tools for llvm-profdata). --build-arg PGO=0: the plain build.
ARG PGO=1
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    if [ "$PGO" = 1 ]; then \
      scripts/pgo-build.sh --out /out; \
    else \
      cargo build --release --locked -p ferry-proxy \
      && install -D target/release/ferry-proxy /out/ferry-proxy; \
    fi

# No shell, no package manager: for Kubernetes pods that probe the admin port with httpGet
# (/ready) and run interception from the default image's init container.
FROM gcr.io/distroless/cc-debian12 AS distroless
COPY --from=build /out/ferry-proxy /usr/bin/ferry-proxy
USER 1337:1337
EXPOSE 15000 15001 9901
ENTRYPOINT ["/usr/bin/ferry-proxy"]

# The default target replaces the App Mesh Envoy image as it is: task definitions and pod specs
# run `curl ... /server_info | grep state | grep -q LIVE` inside it as their health check, and the
# Kubernetes init container runs `ferry-proxy init-iptables` from it, so it carries sh, curl,
# grep and iptables on a Debian slim base.
FROM debian:bookworm-slim AS proxy
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl iptables \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ferry-proxy /usr/bin/ferry-proxy
COPY docker/entrypoint.sh /usr/bin/ferry-entrypoint
# App Mesh's convention: the proxy runs as UID 1337, which the interception rules skip.
USER 1337:1337
EXPOSE 15000 15001 9901
ENTRYPOINT ["/usr/bin/ferry-entrypoint"]
