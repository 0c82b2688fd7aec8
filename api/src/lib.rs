//! ferry-api: the routing table shared by ferry-agent (which produces it) and ferry-proxy (which
//! serves it), in three forms of the very same messages: protobuf (the agent stream), and YAML or
//! JSON files in the canonical proto3 JSON mapping (enums by name, durations as "1.5s"); and the
//! agent<->proxy gRPC service (`AgentService`, agent.proto) that streams it.
#![forbid(unsafe_code)]

pub mod appmesh_defaults;
pub mod civil_time;
pub mod file;
mod locate;

/// Generated messages of package `ferry.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/ferry.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/ferry.v1.serde.rs"));
}

pub use file::{DecodeError, Format, decode, decode_json, decode_yaml, encode_json, encode_yaml};
pub use locate::locate;
pub use pbjson_types::Duration;
/// The gRPC stack the service is generated for, so that its users need no second copy.
pub use tonic;
pub use v1::RoutingTable;
pub use v1::agent_service_client::AgentServiceClient;
pub use v1::agent_service_server::{AgentService, AgentServiceServer};
