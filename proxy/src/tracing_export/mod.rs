//! Distributed tracing: one span per request on each proxy hop, exported over OTLP/gRPC.
//!
//! The incoming trace context (W3C `traceparent`, else B3, else X-Ray's `x-amzn-trace-id`; see
//! [`context`]) gives the span its trace id and parent. The sampling decision is the caller's when
//! it sent one, else `--trace-sampling` applied to the trace id (as OpenTelemetry's
//! `ParentBased(TraceIdRatioBased)` sampler does, so hops with the same rate agree). A recorded
//! hop writes its span id into the forwarded `traceparent` (W3C: a participating hop updates
//! parent-id), so the next hop nests under it; a request with no context at all gets a new
//! `traceparent`. `tracestate`, B3 and `x-amzn-trace-id` are never touched.
//!
//! Without `--otlp-endpoint` there is no [`Tracer`]: the request path branches on a `None` and
//! does nothing else. Spans are handed to a bounded queue and exported in batches by one task
//! ([`export`]); a dead collector costs dropped spans (counted), never a slower request.
pub mod context;
pub mod export;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferry_api::v1::listener::Direction;
use http::{HeaderMap, Method, Version};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use prometheus::Registry;

pub use context::Incoming;
use context::{FLAG_SAMPLED, Source, TRACEPARENT, traceparent_value};
use export::Queue;
pub use export::{BatchSettings, Exporting};

use crate::flags::ResponseFlags;

#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("--trace-sampling {0} is not a rate between 0.0 and 1.0")]
    Sampling(f64),
    #[error("{name}={value:?} is not {expected}")]
    Env {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot register the tracing metrics: {0}")]
    Metrics(prometheus::Error),
}

/// What `--otlp-endpoint` and friends configure.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The collector's OTLP/gRPC address, `http://host:4317` (`https://` for TLS).
    pub endpoint: String,
    /// The share of new traces recorded, 0.0 to 1.0 (a caller's decision wins).
    pub sampling: f64,
    /// `service.name` of the spans.
    pub service_name: String,
    pub batch: BatchSettings,
}

impl BatchSettings {
    /// The batch settings from the OTel environment (`OTEL_BSP_SCHEDULE_DELAY`,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` and `OTEL_EXPORTER_OTLP_TIMEOUT`,
    /// in milliseconds and counts), defaults for those not set.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<BatchSettings, TracingError> {
        let number = |name: &'static str| -> Result<Option<u64>, TracingError> {
            match var(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(TracingError::Env {
                        name,
                        value: v,
                        expected: "a positive whole number",
                    }),
                },
            }
        };
        let d = BatchSettings::default();
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(BatchSettings {
            max_queue: number("OTEL_BSP_MAX_QUEUE_SIZE")?.map_or(d.max_queue, count),
            max_batch: number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")?.map_or(d.max_batch, count),
            delay: number("OTEL_BSP_SCHEDULE_DELAY")?.map_or(d.delay, Duration::from_millis),
            export_timeout: number("OTEL_EXPORTER_OTLP_TIMEOUT")?
                .map_or(d.export_timeout, Duration::from_millis),
        })
    }
}

/// The endpoint with its scheme: one written without (`collector:4317`) means TLS unless
/// `insecure` (`OTEL_EXPORTER_OTLP_INSECURE=true`), as the OTLP exporter specification says.
pub fn endpoint_with_scheme(endpoint: &str, insecure: bool) -> String {
    let endpoint = endpoint.trim();
    match (endpoint.contains("://"), insecure) {
        (true, _) => endpoint.to_owned(),
        (false, true) => format!("http://{endpoint}"),
        (false, false) => format!("https://{endpoint}"),
    }
}

/// The `service.name` for a node identity: App Mesh's `MESH/virtualNode/NAME` (or its ARN) becomes
/// `MESH/NAME`, the name App Mesh's Envoy gives X-Ray, so existing service maps keep their names.
pub fn service_name_for_node(node: &str) -> String {
    let path = node
        .strip_prefix("arn:")
        .and_then(|arn| arn.split_once(":mesh/").map(|(_, p)| p))
        .unwrap_or(node);
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [mesh, "virtualNode" | "virtualGateway", name] if !mesh.is_empty() && !name.is_empty() => {
            format!("{mesh}/{name}")
        }
        _ => node.to_owned(),
    }
}

/// Starts spans for requests and queues them for export when they end.
#[derive(Debug)]
pub struct Tracer {
    /// Trace ids whose random low 63 bits fall below this are sampled (TraceIdRatioBased).
    sample_bound: u64,
    queue: Queue,
    scope: InstrumentationScope,
}

impl Tracer {
    /// Builds the OTLP exporter and starts the exporting task; call within the tokio runtime.
    pub fn start(
        settings: Settings,
        registry: &Registry,
    ) -> Result<(Arc<Tracer>, Exporting), TracingError> {
        use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
        use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
        if !(0.0..=1.0).contains(&settings.sampling) {
            return Err(TracingError::Sampling(settings.sampling));
        }
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .build();
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.batch.export_timeout);
        if settings.endpoint.starts_with("https://") {
            // The system's trust store (SSL_CERT_FILE / SSL_CERT_DIR may point elsewhere).
            builder = builder.with_tls_config(ClientTlsConfig::new().with_native_roots());
        }
        let mut exporter = builder.build()?;
        exporter.set_resource(&resource);
        let (queue, exporting) = export::start(exporter, settings.batch, registry)?;
        let tracer = Tracer {
            sample_bound: sample_bound(settings.sampling),
            queue,
            scope: InstrumentationScope::builder("ferry-proxy")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        };
        Ok((Arc::new(tracer), exporting))
    }

    /// The ratio decision for a trace id, as OpenTelemetry's TraceIdRatioBased sampler makes it.
    fn samples(&self, trace_id: u128) -> bool {
        ((trace_id as u64) >> 1) < self.sample_bound
    }

    /// Starts the span of one request and updates (or adds) the `traceparent` it is forwarded
    /// with. `None` when the request is not sampled.
    pub fn begin(
        self: &Arc<Self>,
        headers: &mut HeaderMap,
        req: &SpanStart<'_>,
    ) -> Option<Box<RequestSpan>> {
        let incoming = context::extract(headers);
        let trace_id = incoming
            .and_then(|i| i.trace_id)
            .unwrap_or_else(|| fastrand::u128(1..));
        let sampled = incoming
            .and_then(|i| i.sampled)
            .unwrap_or_else(|| self.samples(trace_id));
        let span_id = fastrand::u64(1..);
        let w3c_flags = incoming
            .filter(|i| i.source == Source::TraceContext)
            .map(|i| i.flags);
        if sampled {
            let flags = w3c_flags.unwrap_or(0) | FLAG_SAMPLED;
            headers.insert(
                TRACEPARENT.clone(),
                traceparent_value(trace_id, span_id, flags),
            );
        } else if incoming.is_none() {
            // A new trace that is not sampled: say so downstream, so that every hop agrees.
            headers.insert(TRACEPARENT.clone(), traceparent_value(trace_id, span_id, 0));
        }
        if !sampled {
            return None;
        }
        // The caller's tracestate goes with the span (it is meaningful with a traceparent only).
        let trace_state = match w3c_flags {
            Some(_) => incoming_trace_state(headers),
            None => TraceState::NONE,
        };
        Some(Box::new(RequestSpan::new(
            Arc::clone(self),
            SpanContext::new(
                TraceId::from(trace_id),
                SpanId::from(span_id),
                TraceFlags::new(w3c_flags.unwrap_or(0) | FLAG_SAMPLED),
                false,
                trace_state,
            ),
            incoming.and_then(|i| i.parent),
            headers,
            req,
        )))
    }
}

/// The `tracestate` list (its headers joined, as W3C allows it to be split); none when invalid.
fn incoming_trace_state(headers: &HeaderMap) -> TraceState {
    let mut values = headers
        .get_all("tracestate")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let Some(first) = values.next() else {
        return TraceState::NONE;
    };
    let joined;
    let list = match values.next() {
        None => first,
        Some(second) => {
            joined = [first, second]
                .into_iter()
                .chain(values)
                .collect::<Vec<_>>()
                .join(",");
            &joined
        }
    };
    list.parse().unwrap_or(TraceState::NONE)
}

fn sample_bound(rate: f64) -> u64 {
    if rate >= 1.0 {
        1 << 63
    } else {
        (rate.max(0.0) * (1u64 << 63) as f64) as u64
    }
}

/// What the handler knows of a request when it starts.
pub struct SpanStart<'a> {
    pub direction: Direction,
    pub listener: &'a str,
    pub method: &'a Method,
    pub path: &'a str,
    pub scheme: &'static str,
    pub authority: &'a str,
    pub version: Version,
    pub client: SocketAddr,
}

/// How a request ended.
pub struct SpanEnd<'a> {
    pub status: Option<u16>,
    pub flags: ResponseFlags,
    pub route: &'a str,
    pub cluster: Option<&'a str>,
    pub upstream: Option<SocketAddr>,
}

/// A recorded span in flight; it ends with the request's response body.
#[derive(Debug)]
pub struct RequestSpan {
    tracer: Arc<Tracer>,
    context: SpanContext,
    parent: Option<u64>,
    kind: SpanKind,
    name: Cow<'static, str>,
    start: SystemTime,
    attributes: Vec<KeyValue>,
}

impl RequestSpan {
    fn new(
        tracer: Arc<Tracer>,
        context: SpanContext,
        parent: Option<u64>,
        headers: &HeaderMap,
        req: &SpanStart<'_>,
    ) -> RequestSpan {
        let kind = match req.direction {
            Direction::Outbound => SpanKind::Client,
            Direction::Inbound | Direction::Unspecified | Direction::Gateway => SpanKind::Server,
        };
        let direction = match req.direction {
            Direction::Outbound => "egress",
            Direction::Gateway => "gateway",
            Direction::Inbound | Direction::Unspecified => "ingress",
        };
        let mut attributes = Vec::with_capacity(20);
        let method = known_method(req.method);
        attributes.push(KeyValue::new(
            "http.request.method",
            method.unwrap_or("_OTHER"),
        ));
        if method.is_none() {
            attributes.push(KeyValue::new(
                "http.request.method_original",
                req.method.as_str().to_owned(),
            ));
        }
        attributes.push(KeyValue::new("url.scheme", req.scheme));
        attributes.push(KeyValue::new("url.path", req.path.to_owned()));
        if kind == SpanKind::Client {
            attributes.push(KeyValue::new(
                "url.full",
                format!("{}://{}{}", req.scheme, req.authority, req.path),
            ));
        } else {
            let (host, port) = split_authority(req.authority);
            attributes.push(KeyValue::new("server.address", host.to_owned()));
            if let Some(p) = port {
                attributes.push(KeyValue::new("server.port", i64::from(p)));
            }
            attributes.push(KeyValue::new("client.address", req.client.ip().to_string()));
        }
        attributes.push(KeyValue::new(
            "network.protocol.version",
            match req.version {
                Version::HTTP_10 => "1.0",
                Version::HTTP_2 => "2",
                _ => "1.1",
            },
        ));
        if let Some(ua) = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            attributes.push(KeyValue::new("user_agent.original", ua.to_owned()));
        }
        attributes.push(KeyValue::new("ferry.listener", req.listener.to_owned()));
        attributes.push(KeyValue::new("ferry.direction", direction));

        let grpc = headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let name: Cow<'static, str> = match (grpc, req.path.strip_prefix('/')) {
            (true, Some(full)) if full.contains('/') => {
                if let Some((service, rpc)) = full.split_once('/') {
                    attributes.push(KeyValue::new("rpc.system", "grpc"));
                    attributes.push(KeyValue::new("rpc.service", service.to_owned()));
                    attributes.push(KeyValue::new("rpc.method", rpc.to_owned()));
                }
                Cow::Owned(full.to_owned())
            }
            // OTel's HTTP span name when no low-cardinality route template is known: the method.
            _ => Cow::Borrowed(method.unwrap_or("HTTP")),
        };
        RequestSpan {
            tracer,
            context,
            parent,
            kind,
            name,
            start: SystemTime::now(),
            attributes,
        }
    }

    /// Notes the gRPC status from the response headers (a trailers-only response) or trailers.
    pub fn grpc_status(&mut self, headers: &HeaderMap) {
        if let Some(code) = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
        {
            self.attributes
                .push(KeyValue::new("rpc.grpc.status_code", code));
        }
    }

    /// Ends the span and queues it for export.
    pub fn end(self, end: &SpanEnd<'_>) {
        let RequestSpan {
            tracer,
            context,
            parent,
            kind,
            name,
            start,
            mut attributes,
        } = self;
        let mut error = false;
        if let Some(status) = end.status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            // OTel: 5xx is an error on a server span; 4xx too on a client span.
            let threshold = if kind == SpanKind::Client { 400 } else { 500 };
            if status >= threshold {
                attributes.push(KeyValue::new("error.type", status.to_string()));
                error = true;
            }
        }
        if !end.route.is_empty() {
            attributes.push(KeyValue::new("ferry.route", end.route.to_owned()));
        }
        if let Some(c) = end.cluster {
            attributes.push(KeyValue::new("ferry.cluster", c.to_owned()));
        }
        if let Some(up) = end.upstream {
            attributes.push(KeyValue::new("ferry.upstream.address", up.to_string()));
            attributes.push(KeyValue::new("network.peer.address", up.ip().to_string()));
            attributes.push(KeyValue::new("network.peer.port", i64::from(up.port())));
            if kind == SpanKind::Client {
                attributes.push(KeyValue::new("server.address", up.ip().to_string()));
                attributes.push(KeyValue::new("server.port", i64::from(up.port())));
            }
        }
        if !end.flags.is_empty() {
            attributes.push(KeyValue::new("ferry.response_flags", end.flags.to_string()));
        }
        let data = SpanData {
            span_context: context,
            parent_span_id: parent.map_or(SpanId::INVALID, SpanId::from),
            parent_span_is_remote: parent.is_some(),
            span_kind: kind,
            name,
            start_time: start,
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            // OTel: an HTTP error status has no description (the status code says it).
            status: if error {
                Status::error("")
            } else {
                Status::Unset
            },
            instrumentation_scope: tracer.scope.clone(),
        };
        tracer.queue.submit(data);
    }
}

/// The method's name when it is one of HTTP's known methods (a bounded set for span names).
fn known_method(m: &Method) -> Option<&'static str> {
    Some(match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return None,
    })
}

/// `host[:port]` (also `[v6]:port`).
fn split_authority(a: &str) -> (&str, Option<u16>) {
    match a.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.ends_with(']')) => {
            match p.parse() {
                Ok(port) => (h, Some(port)),
                Err(_) => (a, None),
            }
        }
        _ => (a, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_identities_become_app_mesh_service_names() {
        assert_eq!(service_name_for_node("mesh/virtualNode/web"), "mesh/web");
        assert_eq!(
            service_name_for_node(
                "arn:aws:appmesh:us-east-1:123456789012:mesh/shop/virtualGateway/gw"
            ),
            "shop/gw"
        );
        assert_eq!(service_name_for_node("just-a-name"), "just-a-name");
    }

    #[test]
    fn tracestate_headers_are_joined_and_invalid_ones_dropped() {
        let mut h = HeaderMap::new();
        assert_eq!(incoming_trace_state(&h), TraceState::NONE);
        h.append(
            "tracestate",
            http::HeaderValue::from_static("congo=t61rcWkgMzE"),
        );
        h.append(
            "tracestate",
            http::HeaderValue::from_static("rojo=00f067aa0ba902b7"),
        );
        let ts = incoming_trace_state(&h);
        assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(ts.get("rojo"), Some("00f067aa0ba902b7"));
        let mut bad = HeaderMap::new();
        bad.insert(
            "tracestate",
            http::HeaderValue::from_static("no equals sign"),
        );
        assert_eq!(incoming_trace_state(&bad), TraceState::NONE);
    }

    #[test]
    fn endpoints_without_a_scheme_mean_tls_unless_insecure() {
        assert_eq!(
            endpoint_with_scheme("http://c:4317", false),
            "http://c:4317"
        );
        assert_eq!(endpoint_with_scheme("c:4317", false), "https://c:4317");
        assert_eq!(endpoint_with_scheme("c:4317", true), "http://c:4317");
    }

    #[test]
    fn sampling_bound_matches_trace_id_ratio() {
        assert_eq!(sample_bound(0.0), 0);
        assert_eq!(sample_bound(1.0), 1 << 63);
        assert_eq!(sample_bound(0.5), 1 << 62);
    }

    #[test]
    fn batch_settings_from_env() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            BatchSettings::from_env(env(&[])).ok(),
            Some(BatchSettings::default())
        );
        let got = BatchSettings::from_env(env(&[
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
        ]))
        .ok();
        assert_eq!(
            got.map(|b| (b.delay, b.max_queue)),
            Some((Duration::from_millis(200), 10))
        );
        assert!(BatchSettings::from_env(env(&[("OTEL_BSP_MAX_QUEUE_SIZE", "many")])).is_err());
        assert!(BatchSettings::from_env(env(&[("OTEL_BSP_MAX_QUEUE_SIZE", "0")])).is_err());
    }

    #[test]
    fn authorities_split() {
        assert_eq!(split_authority("svc:8080"), ("svc", Some(8080)));
        assert_eq!(split_authority("svc"), ("svc", None));
        assert_eq!(split_authority("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(split_authority("[::1]"), ("[::1]", None));
    }
}
