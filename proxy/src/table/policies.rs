//! Compiles the resilience policies of a table: retries, outlier detection, health checks and
//! circuit breakers. Each returns the runtime form or an error naming the field.
use std::time::Duration;

use ferry_api::v1::{self, health_check, retry_policy};

use super::compile::{CompileError, duration, err, timeout};
use super::field_path::Field;
use crate::resilience::health::{HealthPolicy, Probe};
use crate::resilience::limits::CircuitBreakers;
use crate::resilience::outlier::OutlierPolicy;
use crate::resilience::retry::{self, RetryPolicy};

fn positive(
    d: Option<&pbjson_types::Duration>,
    path: &str,
    what: &str,
) -> Result<Duration, CompileError> {
    match duration(d, path)? {
        Some(d) if !d.is_zero() => Ok(d),
        _ => err(path, format!("{what} must be set and above zero")),
    }
}

pub fn outlier(o: &v1::OutlierDetection, path: &str) -> Result<OutlierPolicy, CompileError> {
    if o.max_server_errors == 0 {
        return err(format!("{path}.maxServerErrors"), "must be at least 1");
    }
    if o.max_ejection_percent > 100 {
        return err(
            format!("{path}.maxEjectionPercent"),
            "must be within 0..100",
        );
    }
    Ok(OutlierPolicy {
        max_server_errors: o.max_server_errors,
        interval: positive(o.interval.as_ref(), &format!("{path}.interval"), "interval")?,
        base_ejection: positive(
            o.base_ejection_duration.as_ref(),
            &format!("{path}.baseEjectionDuration"),
            "baseEjectionDuration",
        )?,
        max_ejection_percent: o.max_ejection_percent,
    })
}

pub fn health(h: &v1::HealthCheck, path: &str) -> Result<HealthPolicy, CompileError> {
    let http_path = || -> Result<String, CompileError> {
        if h.path.starts_with('/') {
            Ok(h.path.clone())
        } else {
            err(
                format!("{path}.path"),
                "an HTTP health check needs a path starting with '/'",
            )
        }
    };
    let probe = match h.protocol() {
        health_check::Protocol::Unspecified | health_check::Protocol::Http => {
            Probe::Http { path: http_path()? }
        }
        health_check::Protocol::Http2 => Probe::Http2 { path: http_path()? },
        health_check::Protocol::Grpc => Probe::Grpc,
        health_check::Protocol::Tcp => Probe::Tcp,
    };
    let port = match h.port {
        0 => None,
        p => Some(
            u16::try_from(p)
                .or_else(|_| err(format!("{path}.port"), format!("{p} is not a port")))?,
        ),
    };
    if h.healthy_threshold == 0 {
        return err(format!("{path}.healthyThreshold"), "must be at least 1");
    }
    if h.unhealthy_threshold == 0 {
        return err(format!("{path}.unhealthyThreshold"), "must be at least 1");
    }
    Ok(HealthPolicy {
        probe,
        port,
        healthy_threshold: h.healthy_threshold,
        unhealthy_threshold: h.unhealthy_threshold,
        interval: positive(h.interval.as_ref(), &format!("{path}.interval"), "interval")?,
        timeout: positive(h.timeout.as_ref(), &format!("{path}.timeout"), "timeout")?,
    })
}

pub fn breakers(p: &v1::ConnectionPool) -> Option<CircuitBreakers> {
    CircuitBreakers::new(p.max_connections, p.max_pending_requests, p.max_requests)
}

pub fn retry(
    r: &v1::RetryPolicy,
    path: &(impl std::fmt::Display + ?Sized),
) -> Result<Option<RetryPolicy>, CompileError> {
    use retry_policy::{GrpcRetryEvent as G, HttpRetryEvent as H, TcpRetryEvent as T};
    let mut http_events = 0u8;
    for (i, e) in r.http_retry_events().enumerate() {
        http_events |= match e {
            H::ServerError => retry::SERVER_ERROR,
            H::GatewayError => retry::GATEWAY_ERROR,
            H::ClientError => retry::CLIENT_ERROR,
            H::StreamError => retry::STREAM_ERROR,
            H::Unspecified => {
                return err(
                    format!("{path}.httpRetryEvents[{i}]"),
                    "unspecified retry event",
                );
            }
        };
    }
    let mut connection_error = false;
    for (i, e) in r.tcp_retry_events().enumerate() {
        match e {
            T::ConnectionError => connection_error = true,
            T::Unspecified => {
                return err(
                    format!("{path}.tcpRetryEvents[{i}]"),
                    "unspecified retry event",
                );
            }
        }
    }
    let mut grpc_codes = Vec::new();
    for (i, e) in r.grpc_retry_events().enumerate() {
        let name = match e {
            G::Cancelled => "cancelled",
            G::DeadlineExceeded => "deadline-exceeded",
            G::Internal => "internal",
            G::ResourceExhausted => "resource-exhausted",
            G::Unavailable => "unavailable",
            G::Unspecified => {
                return err(
                    format!("{path}.grpcRetryEvents[{i}]"),
                    "unspecified retry event",
                );
            }
        };
        grpc_codes.extend(retry::grpc_code(name));
    }
    if http_events == 0 && !connection_error && grpc_codes.is_empty() {
        return err(
            path,
            "a retry policy needs at least one of httpRetryEvents, tcpRetryEvents, grpcRetryEvents",
        );
    }
    if r.max_retries == 0 {
        return Ok(None);
    }
    let backoff_base = duration(r.backoff_base.as_ref(), &Field(path, "backoffBase"))?
        .unwrap_or(RetryPolicy::DEFAULT_BACKOFF_BASE);
    let backoff_max = duration(r.backoff_max.as_ref(), &Field(path, "backoffMax"))?
        .unwrap_or(RetryPolicy::DEFAULT_BACKOFF_MAX.max(backoff_base));
    if backoff_max < backoff_base {
        return err(
            format!("{path}.backoffMax"),
            "must not be below backoffBase",
        );
    }
    Ok(Some(RetryPolicy {
        max_retries: r.max_retries,
        per_try_timeout: timeout(
            r.per_try_timeout.as_ref(),
            &Field(path, "perTryTimeout"),
            None,
        )?,
        http_events,
        connection_error,
        grpc_codes,
        backoff_base,
        backoff_max,
    }))
}
