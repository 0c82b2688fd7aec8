//! The HTTP request path: serving a connection, routing each request, forwarding it upstream.
mod activity;
mod body;
mod conn;
mod forward;
mod handler;
mod headers;
mod upgrade;

pub use activity::{ConnActivity, Tracked};
pub use body::{
    BoxError, Buffered, Completion, LogContext, RequestBody, ResponseBody, UpstreamBody,
};
pub use conn::{ConnInfo, ListenerCtx, serve_connection};
pub use handler::handle;
