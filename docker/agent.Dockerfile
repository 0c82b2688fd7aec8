# syntax=docker/dockerfile:1
# ferry-agent, the control plane. Build from the repository root:
#   docker build -f docker/agent.Dockerfile -t ferry-agent .
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ferry-agent \
 && install -D target/release/ferry-agent /out/ferry-agent

# Distroless and non-root: the agent needs no shell; its probes are HTTP (/ready, /live).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ferry-agent /usr/bin/ferry-agent
EXPOSE 15010 15011
ENTRYPOINT ["/usr/bin/ferry-agent"]
# Resources from a mounted directory (a ConfigMap, a volume); every address reachable from other
# containers.
CMD ["serve", "--resources", "/resources", "--grpc-addr", "0.0.0.0:15010", "--admin-addr", "0.0.0.0:15011"]
