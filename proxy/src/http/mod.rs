//! The HTTP request path: serving a connection, routing each request, forwarding it upstream.
mod activity;
mod body;
mod conn;
mod conn_timer;
mod field_spans;
mod forward;
mod framing;
mod h1_server;
mod h2_refusals;
mod handler;
mod headers;
mod rewind;
mod upgrade;

pub use activity::{ConnActivity, Tracked};
pub use body::{
    BoxError, Buffered, ClientBody, Completion, LogContext, RequestBody, ResponseBody, UpstreamBody,
};
pub use conn::{ConnInfo, ListenerCtx, serve_connection};
pub(crate) use field_spans::{FieldSpans, Span, field_spans};
pub use framing::{FramingVerdict, Watched, ambiguous_request};
/// Public for the fuzz targets (fuzz/): the request-head reader of Ferry's own HTTP/1.1 server.
pub use h1_server::{Head as RequestHead, HeadLimits, RequestMeta, parse as parse_request_head};
pub use handler::handle;
/// Public for the fuzz targets (fuzz/) as much as for the handler.
pub use headers::{
    X_REQUEST_ID, add_forwarding, client_ip_value, ensure_request_id, is_hop_by_hop,
    strip_hop_by_hop, wants_upgrade,
};
