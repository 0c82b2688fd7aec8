//! ferry-agent, the control plane: App Mesh resources in, one routing table per proxy out,
//! streamed to each proxy over gRPC.
//!
//! ```text
//! files (YAML/JSON, describe output or create input)
//!   -> model::parse -> model::Model::build -> validate -> store (watched, last valid kept)
//!   -> compile (per proxy identity, deterministic, versioned by content)
//!   -> server: one gRPC stream per proxy (snapshots, ACK/NACK), admin HTTP (/ready /metrics /proxies)
//! ```
#![forbid(unsafe_code)]

pub mod api;
pub mod compile;
pub mod explain;
pub mod model;
pub mod server;
pub mod store;
pub mod validate;

pub use compile::{CompileError, Compiled, Identity, Options, compile};
pub use model::{Model, Problem, Problems};
