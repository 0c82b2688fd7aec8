//! What App Mesh gives a route that does not say otherwise, in the routing table's terms: shared by
//! `ferry-agent`, which compiles App Mesh routes, and the load benchmarks, which measure Ferry as
//! those routes run.
use crate::v1::{self, retry_policy};

/// App Mesh's default retry policy (UG envoy-defaults): 2 retries on connection failures,
/// refused streams and 503 (Ferry's GATEWAY_ERROR: 502/503/504 and resets); gRPC routes also
/// retry UNAVAILABLE.
pub fn retry_policy(grpc: bool) -> v1::RetryPolicy {
    v1::RetryPolicy {
        max_retries: 2,
        http_retry_events: vec![
            retry_policy::HttpRetryEvent::GatewayError as i32,
            retry_policy::HttpRetryEvent::StreamError as i32,
        ],
        tcp_retry_events: vec![retry_policy::TcpRetryEvent::ConnectionError as i32],
        grpc_retry_events: if grpc {
            vec![retry_policy::GrpcRetryEvent::Unavailable as i32]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}
