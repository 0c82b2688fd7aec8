//! ferry-agent, the control plane, is not built yet: it is issue #4 (App Mesh resources in, a
//! routing table per proxy out, streamed over gRPC). This crate only reserves its place in the
//! workspace; it exposes nothing and no binary, so nothing pretends to work.
#![forbid(unsafe_code)]
