//! Access logs: Envoy format strings or JSON, compiled once per table, written off the request path.
mod format;
mod record;
mod writer;

pub use format::{ENVOY_DEFAULT_FORMAT, Format, FormatError};
pub use record::{CapturedHeaders, LogRecord};
pub use writer::{AccessLogSink, SinkRegistry};
