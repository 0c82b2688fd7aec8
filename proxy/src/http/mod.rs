//! The HTTP request path: serving a connection, routing each request, forwarding it upstream.
mod body;
mod conn;
mod handler;
mod headers;
mod upgrade;

pub use body::{Completion, LogContext, RequestBody, ResponseBody};
pub use conn::{ConnInfo, ListenerCtx, serve_connection};
pub use handler::handle;
