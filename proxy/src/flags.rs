//! Envoy-style response flags: why a request ended the way it did, in the access log
//! (`%RESPONSE_FLAGS%`) so an operator can tell a proxy-made 503 from an upstream's own.
use std::fmt;

/// A set of response flags; `Display` writes Envoy's short codes comma-separated, or `-`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseFlags(u16);

impl ResponseFlags {
    pub const NONE: ResponseFlags = ResponseFlags(0);
    /// NR: no route (or virtual host) matched.
    pub const NO_ROUTE: ResponseFlags = ResponseFlags(1 << 0);
    /// UH: the cluster had no healthy endpoint.
    pub const NO_HEALTHY_UPSTREAM: ResponseFlags = ResponseFlags(1 << 1);
    /// UF: connecting to the upstream failed.
    pub const UPSTREAM_CONNECT_FAILURE: ResponseFlags = ResponseFlags(1 << 2);
    /// UT: the upstream did not answer within the request timeout.
    pub const UPSTREAM_TIMEOUT: ResponseFlags = ResponseFlags(1 << 3);
    /// UC: the upstream connection ended before the response completed.
    pub const UPSTREAM_CONNECTION_TERMINATION: ResponseFlags = ResponseFlags(1 << 4);
    /// UO: an upstream connection-pool or request limit overflowed (circuit breaking).
    pub const UPSTREAM_OVERFLOW: ResponseFlags = ResponseFlags(1 << 5);
    /// URX: the retry limit was reached.
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: ResponseFlags = ResponseFlags(1 << 6);
    /// DC: the downstream closed the connection before the response completed.
    pub const DOWNSTREAM_CONNECTION_TERMINATION: ResponseFlags = ResponseFlags(1 << 7);
    /// UR: the upstream reset the stream.
    pub const UPSTREAM_REMOTE_RESET: ResponseFlags = ResponseFlags(1 << 8);
    /// DPE: the downstream request had a protocol error.
    pub const DOWNSTREAM_PROTOCOL_ERROR: ResponseFlags = ResponseFlags(1 << 9);
    /// UPE: the upstream response had a protocol error.
    pub const UPSTREAM_PROTOCOL_ERROR: ResponseFlags = ResponseFlags(1 << 10);
    /// SI: the stream idle timeout was reached.
    pub const STREAM_IDLE_TIMEOUT: ResponseFlags = ResponseFlags(1 << 11);

    const CODES: [(ResponseFlags, &'static str); 12] = [
        (Self::NO_ROUTE, "NR"),
        (Self::NO_HEALTHY_UPSTREAM, "UH"),
        (Self::UPSTREAM_CONNECT_FAILURE, "UF"),
        (Self::UPSTREAM_TIMEOUT, "UT"),
        (Self::UPSTREAM_CONNECTION_TERMINATION, "UC"),
        (Self::UPSTREAM_OVERFLOW, "UO"),
        (Self::UPSTREAM_RETRY_LIMIT_EXCEEDED, "URX"),
        (Self::DOWNSTREAM_CONNECTION_TERMINATION, "DC"),
        (Self::UPSTREAM_REMOTE_RESET, "UR"),
        (Self::DOWNSTREAM_PROTOCOL_ERROR, "DPE"),
        (Self::UPSTREAM_PROTOCOL_ERROR, "UPE"),
        (Self::STREAM_IDLE_TIMEOUT, "SI"),
    ];

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: ResponseFlags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn insert(&mut self, other: ResponseFlags) {
        self.0 |= other.0;
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = ResponseFlags;
    fn bitor(self, rhs: ResponseFlags) -> ResponseFlags {
        ResponseFlags(self.0 | rhs.0)
    }
}

impl ResponseFlags {
    /// Writes Envoy's codes, comma-separated ("UF,URX"), or "-" for none. Generic so that the
    /// access log's `String` gets plain appends, without `core::fmt`'s machinery.
    pub fn write_codes<W: fmt::Write>(self, out: &mut W) -> fmt::Result {
        if self.is_empty() {
            return out.write_str("-");
        }
        let mut first = true;
        for (flag, code) in Self::CODES {
            if self.contains(flag) {
                if !first {
                    out.write_str(",")?;
                }
                out.write_str(code)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_codes(f)
    }
}

#[cfg(test)]
mod tests {
    use super::ResponseFlags as F;

    #[test]
    fn displays_envoy_codes() {
        assert_eq!(F::NONE.to_string(), "-");
        assert_eq!(F::NO_ROUTE.to_string(), "NR");
        assert_eq!(
            (F::UPSTREAM_CONNECT_FAILURE | F::UPSTREAM_RETRY_LIMIT_EXCEEDED).to_string(),
            "UF,URX"
        );
    }
}
