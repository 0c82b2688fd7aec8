//! Envoy access-log format strings, text or JSON, compiled once when a routing table is loaded so
//! that writing a line on the request path parses nothing and, in the common case, allocates
//! nothing beyond growing the output buffer.
//!
//! Supported command operators, with Envoy's semantics:
//!
//! - `%START_TIME%`, UTC, `2026-11-21T23:59:01.123Z`; `%START_TIME(fmt)%` takes a strftime subset:
//!   `%Y %m %d %H %M %S %s %z %F %T %%`, `%f` (nanoseconds), `%1f`..`%9f` (that many fraction
//!   digits, truncated) and `%E1S`..`%E9S` (seconds with that many fraction digits). Any other
//!   conversion is rejected with a [`FormatError`] when the table is loaded.
//! - `%REQ(X)%`, `%REQ(X?Y)%` (X, or Y when X is absent), `%RESP(X)%`, `%RESP(X?Y)%`, each with an
//!   optional `:N` suffix that truncates the value to N bytes (`%REQ(USER-AGENT):10%`). Header
//!   names are case-insensitive. In `REQ`, `:METHOD`, `:PATH`, `:AUTHORITY` (alias `HOST`) and
//!   `:SCHEME` come from the record, not the header map; `X-ENVOY-ORIGINAL-PATH` is always absent
//!   because Ferry never rewrites the path that way. In `RESP`, `:STATUS` is the response code and
//!   `X-ENVOY-UPSTREAM-SERVICE-TIME` is the record's upstream service time in milliseconds.
//! - `%METHOD%`, `%PROTOCOL%`, `%RESPONSE_CODE%` (0 when no response was sent),
//!   `%RESPONSE_FLAGS%`, `%BYTES_RECEIVED%`, `%BYTES_SENT%`, `%DURATION%` (milliseconds),
//!   `%UPSTREAM_HOST%`, `%UPSTREAM_CLUSTER%`, `%ROUTE_NAME%`, `%DOWNSTREAM_REMOTE_ADDRESS%`,
//!   `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`, `%DOWNSTREAM_LOCAL_ADDRESS%`,
//!   `%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%`.
//!
//! A missing value is written `-` (JSON `null` when the JSON value is that operator alone);
//! `%%` is a literal percent sign.
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_api::civil_time::CivilTime;
use http::HeaderName;

use super::LogRecord;

/// Envoy's default access-log line, used when a listener asks for a text log without a format.
pub const ENVOY_DEFAULT_FORMAT: &str = concat!(
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" ",
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ",
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" ",
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n",
);

/// A format string that could not be compiled. Offsets are byte offsets of the operator's opening
/// `%` in the string the user wrote (for JSON, in that field's value).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("unknown command operator %{name}% at offset {offset}")]
    UnknownOperator { name: String, offset: usize },
    #[error("command operator %{name} at offset {offset} is not closed by '%'")]
    Unterminated { name: String, offset: usize },
    #[error("stray '%' at offset {offset}: write %% for a literal percent sign")]
    StrayPercent { offset: usize },
    #[error("bad argument to %{name}% at offset {offset}: {reason}")]
    BadArgument {
        name: String,
        offset: usize,
        reason: String,
    },
    #[error("bad length limit on %{name}% at offset {offset}: {reason}")]
    BadLength {
        name: String,
        offset: usize,
        reason: String,
    },
    #[error("in JSON field {key:?}: {inner}")]
    InJsonField {
        key: String,
        inner: Box<FormatError>,
    },
    #[error("duplicate JSON field {key:?}")]
    DuplicateJsonField { key: String },
}

/// A compiled access-log format: text (Envoy format string) or JSON (one object per line).
#[derive(Clone, Debug)]
pub struct Format {
    body: Body,
    request_headers: Vec<HeaderName>,
    response_headers: Vec<HeaderName>,
}

#[derive(Clone, Debug)]
enum Body {
    Text(Vec<Segment>),
    Json(Vec<JsonField>),
}

#[derive(Clone, Debug)]
enum Segment {
    Literal(String),
    Op(Operator),
}

#[derive(Clone, Debug)]
struct JsonField {
    /// `"key":`, preceded by `,` for all but the first field; escaped at compile time.
    prefix: String,
    value: JsonValue,
}

#[derive(Clone, Debug)]
enum JsonValue {
    /// The value is exactly one operator: typed (number, string or null).
    Single(Operator),
    /// Anything else is a string; literals here are already JSON-escaped.
    Template(Vec<Segment>),
}

#[derive(Clone, Debug)]
struct Operator {
    kind: OpKind,
    /// Truncate the value to this many bytes (at a character boundary).
    max_len: Option<usize>,
}

#[derive(Clone, Debug)]
enum OpKind {
    StartTime(TimeFormat),
    Header {
        primary: Source,
        fallback: Option<Source>,
    },
    Protocol,
    ResponseCode,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    RouteName,
    DownstreamRemote,
    DownstreamRemoteWithoutPort,
    DownstreamLocal,
    DownstreamLocalWithoutPort,
}

/// Where a `REQ(...)`/`RESP(...)` value comes from.
#[derive(Clone, Debug)]
enum Source {
    Method,
    Path,
    Authority,
    Scheme,
    RequestHeader(HeaderName),
    ResponseHeader(HeaderName),
    Status,
    UpstreamServiceTime,
    /// A header Ferry never sets (x-envoy-original-path): always missing.
    Never,
}

#[derive(Clone, Debug)]
enum TimeFormat {
    /// `%Y-%m-%dT%H:%M:%S.%3fZ`, Envoy's default.
    Default,
    Custom(Vec<TimePart>),
}

#[derive(Clone, Debug)]
enum TimePart {
    Literal(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    EpochSeconds,
    /// This many digits (1..=9) of the fraction of a second, truncated.
    Fraction(u32),
}

impl Format {
    /// Compiles an Envoy format string; empty means [`ENVOY_DEFAULT_FORMAT`]. A trailing newline
    /// is added when missing: an access-log file holds one line per entry.
    pub fn text(fmt: &str) -> Result<Format, FormatError> {
        let fmt = if fmt.is_empty() {
            ENVOY_DEFAULT_FORMAT
        } else {
            fmt
        };
        let mut request_headers = Vec::new();
        let mut segments = parse_segments(fmt, &mut request_headers)?;
        if !fmt.ends_with('\n') {
            match segments.last_mut() {
                Some(Segment::Literal(last)) => last.push('\n'),
                _ => segments.push(Segment::Literal("\n".to_owned())),
            }
        }
        Ok(Format::new(Body::Text(segments), request_headers))
    }

    /// Compiles a JSON format: one object per line with the keys in the given order. Each value
    /// is a format string; a value that is exactly one numeric operator (`RESPONSE_CODE`,
    /// `BYTES_RECEIVED`, `BYTES_SENT`, `DURATION`) is a JSON number, a value that is exactly one
    /// operator is `null` when missing, and everything else is a JSON string.
    pub fn json(fields: &[(String, String)]) -> Result<Format, FormatError> {
        let mut request_headers = Vec::new();
        let mut compiled = Vec::with_capacity(fields.len());
        for (i, (key, value)) in fields.iter().enumerate() {
            if fields[..i].iter().any(|(k, _)| k == key) {
                return Err(FormatError::DuplicateJsonField { key: key.clone() });
            }
            let segments = parse_segments(value, &mut request_headers).map_err(|e| {
                FormatError::InJsonField {
                    key: key.clone(),
                    inner: Box::new(e),
                }
            })?;
            let mut prefix = String::with_capacity(key.len() + 4);
            if i > 0 {
                prefix.push(',');
            }
            prefix.push('"');
            escape_json_into(&mut prefix, key);
            prefix.push_str("\":");
            let value = match <[Segment; 1]>::try_from(segments) {
                Ok([Segment::Op(op)]) => JsonValue::Single(op),
                Ok([literal]) => JsonValue::Template(escape_literals(vec![literal])),
                Err(segments) => JsonValue::Template(escape_literals(segments)),
            };
            compiled.push(JsonField { prefix, value });
        }
        Ok(Format::new(Body::Json(compiled), request_headers))
    }

    fn new(body: Body, request_headers: Vec<HeaderName>) -> Format {
        /// Adds the response headers `op` reads to `names`.
        fn note(op: &Operator, names: &mut Vec<HeaderName>) {
            if let OpKind::Header { primary, fallback } = &op.kind {
                for source in std::iter::once(primary).chain(fallback) {
                    if let Source::ResponseHeader(name) = source
                        && !names.contains(name)
                    {
                        names.push(name.clone());
                    }
                }
            }
        }
        fn note_all(segments: &[Segment], names: &mut Vec<HeaderName>) {
            for segment in segments {
                if let Segment::Op(op) = segment {
                    note(op, names);
                }
            }
        }
        let mut response_headers = Vec::new();
        match &body {
            Body::Text(segments) => note_all(segments, &mut response_headers),
            Body::Json(fields) => {
                for field in fields {
                    match &field.value {
                        JsonValue::Single(op) => note(op, &mut response_headers),
                        JsonValue::Template(segments) => note_all(segments, &mut response_headers),
                    }
                }
            }
        }
        Format {
            body,
            request_headers,
            response_headers,
        }
    }

    /// The response headers this format reads (deduplicated): the proxy keeps only these
    /// past the moment the response head is sent, rather than a copy of the whole head.
    pub fn response_headers(&self) -> &[HeaderName] {
        &self.response_headers
    }

    /// The request headers this format reads (deduplicated, no pseudo-headers): the proxy
    /// captures only these when a request arrives.
    pub fn request_headers(&self) -> &[HeaderName] {
        &self.request_headers
    }

    /// Appends one formatted line, ending in `\n`, to `out`.
    pub fn write(&self, rec: &LogRecord<'_>, out: &mut String) {
        match &self.body {
            Body::Text(segments) => {
                for segment in segments {
                    match segment {
                        Segment::Literal(s) => out.push_str(s),
                        Segment::Op(op) => {
                            if !op.write(rec, out) {
                                out.push('-');
                            }
                        }
                    }
                }
            }
            Body::Json(fields) => {
                out.push('{');
                for field in fields {
                    out.push_str(&field.prefix);
                    field.value.write(rec, out);
                }
                out.push_str("}\n");
            }
        }
    }
}

impl JsonValue {
    fn write(&self, rec: &LogRecord<'_>, out: &mut String) {
        match self {
            JsonValue::Single(op) if op.kind.is_numeric() => {
                if !op.write(rec, out) {
                    out.push_str("null");
                }
            }
            JsonValue::Single(op) => {
                out.push('"');
                let start = out.len();
                if op.write(rec, out) {
                    escape_in_place(out, start);
                    out.push('"');
                } else {
                    // Drop the opening quote.
                    out.truncate(start - 1);
                    out.push_str("null");
                }
            }
            JsonValue::Template(segments) => {
                out.push('"');
                for segment in segments {
                    match segment {
                        Segment::Literal(escaped) => out.push_str(escaped),
                        Segment::Op(op) => {
                            let start = out.len();
                            if op.write(rec, out) {
                                escape_in_place(out, start);
                            } else {
                                out.push('-');
                            }
                        }
                    }
                }
                out.push('"');
            }
        }
    }
}

impl Operator {
    /// Appends the value; returns false, having written nothing, when the value is missing.
    fn write(&self, rec: &LogRecord<'_>, out: &mut String) -> bool {
        let start = out.len();
        if !self.kind.write(rec, out) {
            return false;
        }
        if let Some(max) = self.max_len {
            truncate_at_char_boundary(out, start + max);
        }
        true
    }
}

impl OpKind {
    fn is_numeric(&self) -> bool {
        matches!(
            self,
            OpKind::ResponseCode | OpKind::BytesReceived | OpKind::BytesSent | OpKind::Duration
        )
    }

    fn write(&self, rec: &LogRecord<'_>, out: &mut String) -> bool {
        match self {
            OpKind::StartTime(format) => format.write(rec.start_time, out),
            OpKind::Header { primary, fallback } => {
                primary.write(rec, out) || fallback.as_ref().is_some_and(|f| f.write(rec, out))
            }
            // TCP records say "-": keep that a missing value so JSON gets null.
            OpKind::Protocol => rec.protocol != "-" && push_non_empty(out, rec.protocol),
            OpKind::ResponseCode => push_int(out, rec.response_code.unwrap_or(0)),
            // Envoy writes "-" for no flags, in JSON too: a value, not a missing one.
            // Writing to a `String` cannot fail.
            OpKind::ResponseFlags => rec.response_flags.write_codes(out).is_ok(),
            OpKind::BytesReceived => push_int(out, rec.bytes_received),
            OpKind::BytesSent => push_int(out, rec.bytes_sent),
            OpKind::Duration => push_int(out, rec.duration.as_millis()),
            OpKind::UpstreamHost => rec.upstream_host.is_some_and(|a| push_addr(out, a)),
            OpKind::UpstreamCluster => push_non_empty(out, rec.upstream_cluster),
            OpKind::RouteName => push_non_empty(out, rec.route_name),
            OpKind::DownstreamRemote => push_addr(out, rec.downstream_remote),
            OpKind::DownstreamRemoteWithoutPort => push_ip(out, rec.downstream_remote),
            OpKind::DownstreamLocal => push_addr(out, rec.downstream_local),
            OpKind::DownstreamLocalWithoutPort => push_ip(out, rec.downstream_local),
        }
    }
}

impl Source {
    fn write(&self, rec: &LogRecord<'_>, out: &mut String) -> bool {
        match self {
            Source::Method => rec.method.is_some_and(|m| push_non_empty(out, m.as_str())),
            Source::Path => push_non_empty(out, rec.path),
            Source::Authority => push_non_empty(out, rec.authority),
            Source::Scheme => push_non_empty(out, rec.scheme),
            Source::RequestHeader(name) => rec
                .request_headers
                .get(name)
                .is_some_and(|v| push_bytes(out, v.as_bytes())),
            Source::ResponseHeader(name) => rec
                .response_headers
                .and_then(|h| h.get(name))
                .is_some_and(|v| push_bytes(out, v.as_bytes())),
            Source::Status => rec.response_code.is_some_and(|c| push_int(out, c)),
            Source::UpstreamServiceTime => rec
                .upstream_service_time
                .is_some_and(|d| push_int(out, d.as_millis())),
            Source::Never => false,
        }
    }
}

impl TimeFormat {
    fn write(&self, time: SystemTime, out: &mut String) -> bool {
        // A clock before 1970 is broken; log it as missing rather than panic or make up a date.
        let Ok(since_epoch) = time.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let t = CivilTime::from_unix(since_epoch);
        match self {
            TimeFormat::Default => {
                push_padded(out, t.year, 4);
                out.push('-');
                push_padded(out, t.month, 2);
                out.push('-');
                push_padded(out, t.day, 2);
                out.push('T');
                push_padded(out, t.hour, 2);
                out.push(':');
                push_padded(out, t.minute, 2);
                out.push(':');
                push_padded(out, t.second, 2);
                out.push('.');
                push_padded(out, u64::from(t.nanos / 1_000_000), 3);
                out.push('Z');
            }
            TimeFormat::Custom(parts) => {
                for part in parts {
                    match part {
                        TimePart::Literal(s) => out.push_str(s),
                        TimePart::Year => push_padded(out, t.year, 4),
                        TimePart::Month => push_padded(out, t.month, 2),
                        TimePart::Day => push_padded(out, t.day, 2),
                        TimePart::Hour => push_padded(out, t.hour, 2),
                        TimePart::Minute => push_padded(out, t.minute, 2),
                        TimePart::Second => push_padded(out, t.second, 2),
                        TimePart::EpochSeconds => {
                            push_int(out, since_epoch.as_secs());
                        }
                        TimePart::Fraction(digits) => {
                            let value = t.nanos / 10u32.pow(9 - digits);
                            push_padded(out, u64::from(value), *digits as usize);
                        }
                    }
                }
            }
        }
        true
    }
}

// Numbers and addresses are written with `itoa` rather than `core::fmt`: a log line has a
// dozen of them, and through `write!` they were most of the ~7,700 instructions that formatting
// Envoy's default line took (callgrind, issue #7).

/// Appends an integer in decimal.
fn push_int(out: &mut String, value: impl itoa::Integer) -> bool {
    out.push_str(itoa::Buffer::new().format(value));
    true
}

/// Appends `value` in decimal, zero-padded on the left to `width` digits.
fn push_padded(out: &mut String, value: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(value);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

fn push_ipv4(out: &mut String, ip: std::net::Ipv4Addr) {
    let [a, b, c, d] = ip.octets();
    push_int(out, a);
    out.push('.');
    push_int(out, b);
    out.push('.');
    push_int(out, c);
    out.push('.');
    push_int(out, d);
}

/// `ip:port`, as `SocketAddr`'s `Display` writes it (IPv6 goes through that `Display`).
fn push_addr(out: &mut String, addr: SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(v4) => {
            push_ipv4(out, *v4.ip());
            out.push(':');
            push_int(out, v4.port())
        }
        SocketAddr::V6(_) => push_display(out, addr),
    }
}

fn push_display(out: &mut String, value: impl std::fmt::Display) -> bool {
    let _ = write!(out, "{value}");
    true
}

fn push_ip(out: &mut String, addr: SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(v4) => {
            push_ipv4(out, *v4.ip());
            true
        }
        SocketAddr::V6(v6) => push_display(out, v6.ip()),
    }
}

fn push_non_empty(out: &mut String, value: &str) -> bool {
    out.push_str(value);
    !value.is_empty()
}

/// Header values are bytes; the rare non-UTF-8 one is written lossily rather than dropped.
fn push_bytes(out: &mut String, value: &[u8]) -> bool {
    match std::str::from_utf8(value) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(value)),
    }
    true
}

fn truncate_at_char_boundary(out: &mut String, mut end: usize) {
    if end >= out.len() {
        return;
    }
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
}

fn needs_json_escape(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// Appends `s` as the inside of a JSON string.
fn escape_json_into(out: &mut String, s: &str) {
    let mut run_start = 0;
    for (i, b) in s.bytes().enumerate() {
        if !needs_json_escape(b) {
            continue;
        }
        // Only ASCII bytes are escaped, so `i` is always a character boundary.
        out.push_str(&s[run_start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        run_start = i + 1;
    }
    out.push_str(&s[run_start..]);
}

/// Escapes `out[start..]` for a JSON string; allocates only when something needs escaping.
fn escape_in_place(out: &mut String, start: usize) {
    if out.as_bytes()[start..]
        .iter()
        .copied()
        .any(needs_json_escape)
    {
        let raw = out.split_off(start);
        escape_json_into(out, &raw);
    }
}

fn escape_literals(segments: Vec<Segment>) -> Vec<Segment> {
    segments
        .into_iter()
        .map(|segment| match segment {
            Segment::Literal(s) => {
                let mut escaped = String::with_capacity(s.len());
                escape_json_into(&mut escaped, &s);
                Segment::Literal(escaped)
            }
            op => op,
        })
        .collect()
}

/// Splits a format string into literals and operators; records the request headers it reads.
fn parse_segments(
    src: &str,
    request_headers: &mut Vec<HeaderName>,
) -> Result<Vec<Segment>, FormatError> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut pos = 0;
    while let Some(rel) = src[pos..].find('%') {
        let at = pos + rel;
        literal.push_str(&src[pos..at]);
        if src[at + 1..].starts_with('%') {
            literal.push('%');
            pos = at + 2;
            continue;
        }
        let (op, end) = parse_command(src, at, request_headers)?;
        if !literal.is_empty() {
            segments.push(Segment::Literal(std::mem::take(&mut literal)));
        }
        segments.push(Segment::Op(op));
        pos = end;
    }
    literal.push_str(&src[pos..]);
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    Ok(segments)
}

/// Parses `%NAME%`, `%NAME(ARG)%` or `%NAME(ARG):LEN%` starting at the `%` at byte `at`;
/// returns the operator and the offset just past its closing `%`.
fn parse_command(
    src: &str,
    at: usize,
    request_headers: &mut Vec<HeaderName>,
) -> Result<(Operator, usize), FormatError> {
    let bytes = src.as_bytes();
    let name_end = at
        + 1
        + bytes[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
    let name = &src[at + 1..name_end];
    if name.is_empty() {
        return Err(FormatError::StrayPercent { offset: at });
    }
    let mut pos = name_end;

    let mut arg = None;
    if bytes.get(pos) == Some(&b'(') {
        let Some(close) = src[pos + 1..].find(')') else {
            return Err(FormatError::BadArgument {
                name: name.to_owned(),
                offset: at,
                reason: "'(' is not closed by ')'".to_owned(),
            });
        };
        arg = Some(&src[pos + 1..pos + 1 + close]);
        pos += close + 2;
    }

    let mut max_len = None;
    if bytes.get(pos) == Some(&b':') {
        let digits_len = bytes[pos + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let digits = &src[pos + 1..pos + 1 + digits_len];
        let bad_length = |reason: &str| FormatError::BadLength {
            name: name.to_owned(),
            offset: at,
            reason: reason.to_owned(),
        };
        if digits.is_empty() {
            return Err(bad_length("expected a number of bytes after ':'"));
        }
        let n: usize = digits
            .parse()
            .map_err(|_| bad_length("the number is too large"))?;
        if n == 0 {
            return Err(bad_length("the length must be at least 1"));
        }
        max_len = Some(n);
        pos += 1 + digits_len;
    }

    if bytes.get(pos) != Some(&b'%') {
        return Err(FormatError::Unterminated {
            name: name.to_owned(),
            offset: at,
        });
    }
    let op = build_operator(name, arg, max_len, at, request_headers)?;
    Ok((op, pos + 1))
}

fn build_operator(
    name: &str,
    arg: Option<&str>,
    max_len: Option<usize>,
    offset: usize,
    request_headers: &mut Vec<HeaderName>,
) -> Result<Operator, FormatError> {
    let bad_arg = |reason: String| FormatError::BadArgument {
        name: name.to_owned(),
        offset,
        reason,
    };
    let kind = match name {
        "START_TIME" => OpKind::StartTime(parse_time_format(arg.unwrap_or("")).map_err(bad_arg)?),
        "REQ" | "RESP" => {
            let side = if name == "REQ" {
                Side::Request
            } else {
                Side::Response
            };
            let Some(arg) = arg else {
                return Err(bad_arg(format!(
                    "expected a header name, like %{name}(USER-AGENT)%"
                )));
            };
            let (primary, fallback) = match arg.split_once('?') {
                Some((primary, fallback)) => (primary, Some(fallback)),
                None => (arg, None),
            };
            let primary = parse_source(primary, side, request_headers).map_err(bad_arg)?;
            let fallback = fallback
                .map(|f| parse_source(f, side, request_headers))
                .transpose()
                .map_err(bad_arg)?;
            OpKind::Header { primary, fallback }
        }
        "METHOD" => OpKind::Header {
            primary: Source::Method,
            fallback: None,
        },
        "PROTOCOL" => OpKind::Protocol,
        "RESPONSE_CODE" => OpKind::ResponseCode,
        "RESPONSE_FLAGS" => OpKind::ResponseFlags,
        "BYTES_RECEIVED" => OpKind::BytesReceived,
        "BYTES_SENT" => OpKind::BytesSent,
        "DURATION" => OpKind::Duration,
        "UPSTREAM_HOST" => OpKind::UpstreamHost,
        "UPSTREAM_CLUSTER" => OpKind::UpstreamCluster,
        "ROUTE_NAME" => OpKind::RouteName,
        "DOWNSTREAM_REMOTE_ADDRESS" => OpKind::DownstreamRemote,
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => OpKind::DownstreamRemoteWithoutPort,
        "DOWNSTREAM_LOCAL_ADDRESS" => OpKind::DownstreamLocal,
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => OpKind::DownstreamLocalWithoutPort,
        _ => {
            return Err(FormatError::UnknownOperator {
                name: name.to_owned(),
                offset,
            });
        }
    };
    let takes_arg = matches!(kind, OpKind::StartTime(_)) || matches!(name, "REQ" | "RESP");
    if let (false, Some(arg)) = (takes_arg, arg) {
        return Err(bad_arg(format!(
            "%{name}% takes no argument, found ({arg})"
        )));
    }
    if max_len.is_some() && !matches!(name, "REQ" | "RESP") {
        return Err(FormatError::BadLength {
            name: name.to_owned(),
            offset,
            reason: "only REQ(...) and RESP(...) take a length limit".to_owned(),
        });
    }
    Ok(Operator { kind, max_len })
}

#[derive(Clone, Copy)]
enum Side {
    Request,
    Response,
}

fn parse_source(
    header: &str,
    side: Side,
    request_headers: &mut Vec<HeaderName>,
) -> Result<Source, String> {
    if header.is_empty() {
        return Err("empty header name".to_owned());
    }
    if let Some(pseudo) = header.strip_prefix(':') {
        let pseudo = pseudo.to_ascii_uppercase();
        return match (side, pseudo.as_str()) {
            (Side::Request, "METHOD") => Ok(Source::Method),
            (Side::Request, "PATH") => Ok(Source::Path),
            (Side::Request, "AUTHORITY") => Ok(Source::Authority),
            (Side::Request, "SCHEME") => Ok(Source::Scheme),
            (Side::Request, _) => Err(format!(
                "unsupported pseudo-header {header} (known: :METHOD, :PATH, :AUTHORITY, :SCHEME)"
            )),
            (Side::Response, "STATUS") => Ok(Source::Status),
            (Side::Response, _) => Err(format!(
                "unsupported pseudo-header {header} (known: :STATUS)"
            )),
        };
    }
    let name = HeaderName::from_bytes(header.as_bytes())
        .map_err(|_| format!("{header:?} is not a valid header name"))?;
    Ok(match side {
        Side::Request if name == "x-envoy-original-path" => Source::Never,
        // HTTP/2 requests carry the host only as :authority; the record has it either way.
        Side::Request if name == http::header::HOST => Source::Authority,
        Side::Request => {
            if !request_headers.contains(&name) {
                request_headers.push(name.clone());
            }
            Source::RequestHeader(name)
        }
        Side::Response if name == "x-envoy-upstream-service-time" => Source::UpstreamServiceTime,
        Side::Response => Source::ResponseHeader(name),
    })
}

/// Compiles the strftime subset described in the module documentation.
fn parse_time_format(fmt: &str) -> Result<TimeFormat, String> {
    if fmt.is_empty() {
        return Ok(TimeFormat::Default);
    }
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = fmt.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        // Names the conversion as written, `fmt[i..end]`.
        let unsupported = |end: usize| {
            format!(
                "unsupported time conversion {:?} (supported: %Y %m %d %H %M %S %s %z %F %T %f \
                 %1f..%9f %E1S..%E9S %%)",
                &fmt[i..end]
            )
        };
        let Some((conv_at, conv)) = chars.next() else {
            return Err(unsupported(fmt.len()));
        };
        let new: &[TimePart] = match conv {
            '%' => {
                literal.push('%');
                &[]
            }
            'z' => {
                literal.push_str("+0000");
                &[]
            }
            'Y' => &[TimePart::Year],
            'm' => &[TimePart::Month],
            'd' => &[TimePart::Day],
            'H' => &[TimePart::Hour],
            'M' => &[TimePart::Minute],
            'S' => &[TimePart::Second],
            's' => &[TimePart::EpochSeconds],
            'f' => &[TimePart::Fraction(9)],
            'F' => &[
                TimePart::Year,
                TimePart::Literal(String::from("-")),
                TimePart::Month,
                TimePart::Literal(String::from("-")),
                TimePart::Day,
            ],
            'T' => &[
                TimePart::Hour,
                TimePart::Literal(String::from(":")),
                TimePart::Minute,
                TimePart::Literal(String::from(":")),
                TimePart::Second,
            ],
            '1'..='9' if chars.next_if(|(_, c)| *c == 'f').is_some() => {
                &[TimePart::Fraction(conv as u32 - '0' as u32)]
            }
            'E' => {
                let digits = chars
                    .next_if(|(_, c)| ('1'..='9').contains(c))
                    .map(|(_, d)| d as u32 - '0' as u32);
                match (digits, chars.next_if(|(_, c)| *c == 'S')) {
                    (Some(digits), Some(_)) => &[
                        TimePart::Second,
                        TimePart::Literal(String::from(".")),
                        TimePart::Fraction(digits),
                    ],
                    _ => {
                        let end = chars.peek().map_or(fmt.len(), |(j, c)| j + c.len_utf8());
                        return Err(unsupported(end));
                    }
                }
            }
            _ => return Err(unsupported(conv_at + conv.len_utf8())),
        };
        if !new.is_empty() {
            if !literal.is_empty() {
                parts.push(TimePart::Literal(std::mem::take(&mut literal)));
            }
            parts.extend_from_slice(new);
        }
    }
    if !literal.is_empty() {
        parts.push(TimePart::Literal(literal));
    }
    Ok(TimeFormat::Custom(parts))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::{Duration, UNIX_EPOCH};

    use http::{HeaderValue, Method};

    use crate::access_log::CapturedHeaders;

    use super::*;
    use crate::flags::ResponseFlags;

    /// Owns what a [`LogRecord`] borrows.
    struct Fixture {
        method: Method,
        request_headers: CapturedHeaders,
        response_headers: CapturedHeaders,
    }

    /// 2026-11-21T23:59:01.123456789Z
    const START: Duration = Duration::new(1_795_305_541, 123_456_789);

    impl Fixture {
        fn new() -> Fixture {
            let mut request_headers = CapturedHeaders::default();
            request_headers.insert(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_static("10.1.2.3"),
            );
            request_headers.insert(
                HeaderName::from_static("user-agent"),
                HeaderValue::from_static("curl/8.5.0"),
            );
            request_headers.insert(
                HeaderName::from_static("x-request-id"),
                HeaderValue::from_static("7b6c2f0e-5d1e-4c1b-9d0e"),
            );
            let mut response_headers = CapturedHeaders::default();
            response_headers.insert(
                HeaderName::from_static("content-type"),
                HeaderValue::from_static("text/plain"),
            );
            Fixture {
                method: Method::GET,
                request_headers,
                response_headers,
            }
        }

        fn record(&self) -> LogRecord<'_> {
            LogRecord {
                start_time: UNIX_EPOCH + START,
                method: Some(&self.method),
                path: "/api/v1/orders?id=42",
                protocol: "HTTP/1.1",
                authority: "orders.shop.local:8080",
                scheme: "http",
                request_headers: &self.request_headers,
                response_code: Some(200),
                response_headers: Some(&self.response_headers),
                response_flags: ResponseFlags::NONE,
                bytes_received: 17,
                bytes_sent: 1_234,
                duration: Duration::from_micros(12_987),
                upstream_service_time: Some(Duration::from_micros(10_400)),
                upstream_host: Some(SocketAddr::from((Ipv4Addr::new(10, 0, 3, 7), 9080))),
                upstream_cluster: "orders-v2",
                route_name: "orders-route",
                downstream_remote: SocketAddr::from((Ipv4Addr::new(10, 0, 1, 5), 51234)),
                downstream_local: "[fd00::1]:15000".parse().unwrap(),
            }
        }
    }

    fn render(format: &Format, rec: &LogRecord<'_>) -> String {
        let mut out = String::new();
        format.write(rec, &mut out);
        out
    }

    /// Formats `fmt` as text and strips the newline.
    fn text(fmt: &str, rec: &LogRecord<'_>) -> String {
        let line = render(&Format::text(fmt).unwrap(), rec);
        line.strip_suffix('\n').unwrap().to_owned()
    }

    fn text_err(fmt: &str) -> String {
        Format::text(fmt).unwrap_err().to_string()
    }

    #[test]
    fn default_format_on_a_realistic_record() {
        let fx = Fixture::new();
        let format = Format::text("").unwrap();
        assert_eq!(
            render(&format, &fx.record()),
            "[2026-11-21T23:59:01.123Z] \"GET /api/v1/orders?id=42 HTTP/1.1\" 200 - 17 1234 12 10 \
             \"10.1.2.3\" \"curl/8.5.0\" \"7b6c2f0e-5d1e-4c1b-9d0e\" \"orders.shop.local:8080\" \
             \"10.0.3.7:9080\"\n"
        );
        let names: Vec<&str> = format
            .request_headers()
            .iter()
            .map(|h| h.as_str())
            .collect();
        assert_eq!(names, ["x-forwarded-for", "user-agent", "x-request-id"]);
    }

    #[test]
    fn default_format_with_nothing_known() {
        let fx = Fixture::new();
        let empty = CapturedHeaders::default();
        let rec = LogRecord {
            method: None,
            path: "",
            protocol: "-",
            authority: "",
            scheme: "",
            request_headers: &empty,
            response_code: None,
            response_headers: None,
            response_flags: ResponseFlags::UPSTREAM_CONNECT_FAILURE,
            upstream_service_time: None,
            upstream_host: None,
            ..fx.record()
        };
        assert_eq!(
            render(&Format::text("").unwrap(), &rec),
            "[2026-11-21T23:59:01.123Z] \"- - -\" 0 UF 17 1234 12 - \"-\" \"-\" \"-\" \"-\" \"-\"\n"
        );
    }

    #[test]
    fn each_operator() {
        let fx = Fixture::new();
        let rec = fx.record();
        let cases = [
            ("%START_TIME%", "2026-11-21T23:59:01.123Z"),
            ("%REQ(:METHOD)%", "GET"),
            ("%METHOD%", "GET"),
            ("%REQ(:PATH)%", "/api/v1/orders?id=42"),
            ("%REQ(:AUTHORITY)%", "orders.shop.local:8080"),
            ("%REQ(HOST)%", "orders.shop.local:8080"),
            ("%REQ(:SCHEME)%", "http"),
            ("%REQ(:method)%", "GET"),
            ("%REQ(User-Agent)%", "curl/8.5.0"),
            ("%REQ(X-MISSING)%", "-"),
            ("%REQ(X-ENVOY-ORIGINAL-PATH)%", "-"),
            ("%RESP(CONTENT-TYPE)%", "text/plain"),
            ("%RESP(:STATUS)%", "200"),
            ("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", "10"),
            ("%PROTOCOL%", "HTTP/1.1"),
            ("%RESPONSE_CODE%", "200"),
            ("%RESPONSE_FLAGS%", "-"),
            ("%BYTES_RECEIVED%", "17"),
            ("%BYTES_SENT%", "1234"),
            ("%DURATION%", "12"),
            ("%UPSTREAM_HOST%", "10.0.3.7:9080"),
            ("%UPSTREAM_CLUSTER%", "orders-v2"),
            ("%ROUTE_NAME%", "orders-route"),
            ("%DOWNSTREAM_REMOTE_ADDRESS%", "10.0.1.5:51234"),
            ("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "10.0.1.5"),
            ("%DOWNSTREAM_LOCAL_ADDRESS%", "[fd00::1]:15000"),
            ("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "fd00::1"),
            ("100%% done", "100% done"),
            ("%%%DURATION%%%", "%12%"),
            ("a%DURATION%b%BYTES_SENT%c", "a12b1234c"),
        ];
        for (fmt, want) in cases {
            assert_eq!(text(fmt, &rec), want, "format {fmt:?}");
        }
    }

    #[test]
    fn missing_and_special_values() {
        let fx = Fixture::new();
        let rec = LogRecord {
            response_code: None,
            response_headers: None,
            response_flags: ResponseFlags::NO_ROUTE | ResponseFlags::UPSTREAM_OVERFLOW,
            upstream_cluster: "",
            route_name: "",
            ..fx.record()
        };
        assert_eq!(text("%RESPONSE_CODE%", &rec), "0");
        assert_eq!(text("%RESP(:STATUS)%", &rec), "-");
        assert_eq!(text("%RESP(CONTENT-TYPE)%", &rec), "-");
        assert_eq!(text("%RESPONSE_FLAGS%", &rec), "NR,UO");
        assert_eq!(text("%UPSTREAM_CLUSTER% %ROUTE_NAME%", &rec), "- -");

        let before_epoch = LogRecord {
            start_time: UNIX_EPOCH - Duration::from_secs(1),
            ..rec
        };
        assert_eq!(text("%START_TIME%", &before_epoch), "-");
    }

    #[test]
    fn non_utf8_header_values_are_written_lossily() {
        let mut fx = Fixture::new();
        fx.request_headers.insert(
            HeaderName::from_static("x-raw"),
            HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        assert_eq!(text("%REQ(X-RAW)%", &fx.record()), "caf\u{fffd}");
    }

    #[test]
    fn length_truncation() {
        let mut fx = Fixture::new();
        fx.request_headers.insert(
            HeaderName::from_static("x-name"),
            HeaderValue::from_str("héllo").unwrap(),
        );
        let rec = fx.record();
        assert_eq!(text("%REQ(USER-AGENT):4%", &rec), "curl");
        assert_eq!(text("%REQ(USER-AGENT):100%", &rec), "curl/8.5.0");
        assert_eq!(text("%REQ(:PATH):7%", &rec), "/api/v1");
        assert_eq!(text("%RESP(CONTENT-TYPE):4%", &rec), "text");
        assert_eq!(text("%REQ(X-MISSING?USER-AGENT):3%", &rec), "cur");
        // Bytes, as in Envoy, but never splitting a character: "é" is two bytes.
        assert_eq!(text("%REQ(X-NAME):2%", &rec), "h");
        assert_eq!(text("%REQ(X-NAME):3%", &rec), "hé");
    }

    #[test]
    fn req_fallback() {
        let mut fx = Fixture::new();
        let rec = fx.record();
        assert_eq!(
            text("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", &rec),
            "/api/v1/orders?id=42"
        );
        assert_eq!(text("%REQ(X-MISSING?USER-AGENT)%", &rec), "curl/8.5.0");
        assert_eq!(text("%REQ(USER-AGENT?X-REQUEST-ID)%", &rec), "curl/8.5.0");
        assert_eq!(text("%REQ(X-MISSING?X-ALSO-MISSING)%", &rec), "-");
        assert_eq!(text("%RESP(X-MISSING?CONTENT-TYPE)%", &rec), "text/plain");

        fx.request_headers.insert(
            HeaderName::from_static("x-envoy-original-path"),
            HeaderValue::from_static("/spoofed"),
        );
        assert_eq!(
            text("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", &fx.record()),
            "/api/v1/orders?id=42"
        );
    }

    /// Only these are kept past the moment the response head is sent on, so they must be all
    /// the format reads: in text and JSON formats, in fallbacks, and never the upstream service
    /// time (which is not a header Ferry keeps).
    #[test]
    fn response_headers_are_the_ones_the_format_reads() {
        let format = Format::text(
            "%RESP(Content-Type)% %RESP(content-type)% %RESP(X-A?X-B)% %REQ(X-REQ)% \
             %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% %RESP(:STATUS)%",
        )
        .unwrap();
        let names: Vec<&str> = format
            .response_headers()
            .iter()
            .map(|h| h.as_str())
            .collect();
        assert_eq!(names, ["content-type", "x-a", "x-b"]);

        let fields = [
            ("type".to_owned(), "%RESP(CONTENT-TYPE)%".to_owned()),
            ("both".to_owned(), "%RESP(X-C)% and %RESP(X-D)%".to_owned()),
        ];
        let json = Format::json(&fields).unwrap();
        let names: Vec<&str> = json.response_headers().iter().map(|h| h.as_str()).collect();
        assert_eq!(names, ["content-type", "x-c", "x-d"]);
        assert!(Format::text("").unwrap().response_headers().is_empty());
    }

    #[test]
    fn request_headers_are_deduplicated_lowercase_and_skip_pseudo_headers() {
        let format = Format::text(
            "%REQ(:PATH)% %REQ(User-Agent)% %REQ(USER-AGENT)% %REQ(X-A?x-b)% %REQ(x-b?:METHOD)% \
             %REQ(HOST)% %REQ(X-ENVOY-ORIGINAL-PATH)% %RESP(X-RESP-ONLY)%",
        )
        .unwrap();
        let names: Vec<&str> = format
            .request_headers()
            .iter()
            .map(|h| h.as_str())
            .collect();
        assert_eq!(names, ["user-agent", "x-a", "x-b"]);
    }

    #[test]
    fn newline_is_appended_once() {
        let fx = Fixture::new();
        let rec = fx.record();
        assert_eq!(render(&Format::text("%DURATION%").unwrap(), &rec), "12\n");
        assert_eq!(
            render(&Format::text("x %DURATION%\n").unwrap(), &rec),
            "x 12\n"
        );
        assert_eq!(render(&Format::text("literal").unwrap(), &rec), "literal\n");
    }

    #[test]
    fn start_time_default_matches_humantime() {
        let fx = Fixture::new();
        let format = Format::text("%START_TIME%").unwrap();
        // Epoch, leap days, century rules, and a spread of instants up to the year 2400.
        let mut instants = vec![
            Duration::ZERO,
            Duration::new(951_782_400, 999_999_999), // 2000-02-29
            Duration::new(4_107_542_400, 1_000_000), // 2100-03-01
            Duration::new(13_574_649_599, 0),        // 2400-02-29T23:59:59
        ];
        let mut secs: u64 = 12_345;
        while secs < 13_000_000_000 {
            instants.push(Duration::new(secs, (secs % 1_000_000_000) as u32));
            secs = secs * 3 / 2 + 86_399;
        }
        for since_epoch in instants {
            let t = UNIX_EPOCH + since_epoch;
            let rec = LogRecord {
                start_time: t,
                ..fx.record()
            };
            let want = humantime::format_rfc3339_millis(t).to_string();
            assert_eq!(text("", &rec).get(1..25), Some(want.as_str()));
            assert_eq!(render(&format, &rec), format!("{want}\n"));
        }
    }

    #[test]
    fn start_time_custom_formats() {
        let fx = Fixture::new();
        let rec = fx.record();
        let cases = [
            ("%START_TIME()%", "2026-11-21T23:59:01.123Z"),
            ("%START_TIME(%Y/%m/%d %H:%M:%S)%", "2026/11/21 23:59:01"),
            ("%START_TIME(%s)%", "1795305541"),
            ("%START_TIME(%s.%3f)%", "1795305541.123"),
            (
                "%START_TIME(%1f %6f %9f %f)%",
                "1 123456 123456789 123456789",
            ),
            (
                "%START_TIME(%FT%H:%M:%E3S%z)%",
                "2026-11-21T23:59:01.123+0000",
            ),
            ("%START_TIME(%T %%)%", "23:59:01 %"),
            ("%START_TIME(day %d)%", "day 21"),
        ];
        for (fmt, want) in cases {
            assert_eq!(text(fmt, &rec), want, "format {fmt:?}");
        }
    }

    #[test]
    fn json_mode() {
        let mut fx = Fixture::new();
        fx.request_headers.insert(
            HeaderName::from_static("user-agent"),
            HeaderValue::from_str("evil \"agent\" \\ \t ünïcode").unwrap(),
        );
        let fields: Vec<(String, String)> = [
            ("start_time", "%START_TIME%"),
            ("method", "%REQ(:METHOD)%"),
            ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
            ("response_code", "%RESPONSE_CODE%"),
            ("bytes_received", "%BYTES_RECEIVED%"),
            ("bytes_sent", "%BYTES_SENT%"),
            ("duration", "%DURATION%"),
            (
                "upstream_service_time",
                "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
            ),
            ("response_flags", "%RESPONSE_FLAGS%"),
            ("user_agent", "%REQ(USER-AGENT)%"),
            ("xff", "%REQ(X-MISSING)%"),
            ("mixed", "%REQ(X-MISSING)% \"to\" %UPSTREAM_HOST%"),
            ("constant", "ferry\n"),
            ("empty", ""),
            ("quo\"ted key", "%PROTOCOL%"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let format = Format::json(&fields).unwrap();
        let line = render(&format, &fx.record());
        assert!(line.ends_with("}\n"));
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");

        // serde_json's map sorts keys, so check the order on the raw line.
        let positions: Vec<usize> = fields
            .iter()
            .map(|(k, _)| {
                line.find(&format!("{}:", serde_json::to_string(k).unwrap()))
                    .unwrap()
            })
            .collect();
        assert!(positions.is_sorted(), "keys keep their order: {line}");

        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "start_time": "2026-11-21T23:59:01.123Z",
                "method": "GET",
                "path": "/api/v1/orders?id=42",
                "response_code": 200,
                "bytes_received": 17,
                "bytes_sent": 1234,
                "duration": 12,
                "upstream_service_time": "10",
                "response_flags": "-",
                "user_agent": "evil \"agent\" \\ \t ünïcode",
                "xff": null,
                "mixed": "- \"to\" 10.0.3.7:9080",
                "constant": "ferry\n",
                "empty": "",
                "quo\"ted key": "HTTP/1.1",
            })
        );

        let names: Vec<&str> = format
            .request_headers()
            .iter()
            .map(|h| h.as_str())
            .collect();
        assert_eq!(names, ["user-agent", "x-missing"]);
    }

    #[test]
    fn json_mode_missing_values() {
        let fx = Fixture::new();
        let rec = LogRecord {
            response_code: None,
            upstream_host: None,
            upstream_service_time: None,
            protocol: "-",
            ..fx.record()
        };
        let fields: Vec<(String, String)> = [
            ("code", "%RESPONSE_CODE%"),
            ("host", "%UPSTREAM_HOST%"),
            ("ust", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
            ("protocol", "%PROTOCOL%"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let line = render(&Format::json(&fields).unwrap(), &rec);
        assert_eq!(
            line,
            "{\"code\":0,\"host\":null,\"ust\":null,\"protocol\":null}\n"
        );
        assert_eq!(render(&Format::json(&[]).unwrap(), &rec), "{}\n");
    }

    #[test]
    fn json_escaping_of_control_characters() {
        let mut out = String::new();
        escape_json_into(&mut out, "a\u{1}b\u{1f}\r\n\u{8}");
        assert_eq!(out, "a\\u0001b\\u001f\\r\\n\\u0008");
        let parsed: String = serde_json::from_str(&format!("\"{out}\"")).unwrap();
        assert_eq!(parsed, "a\u{1}b\u{1f}\r\n\u{8}");
    }

    #[test]
    fn errors() {
        let cases = [
            (
                "[%START_TIME% %FOO%]",
                "unknown command operator %FOO% at offset 14",
            ),
            (
                "%REQUEST_DURATION%",
                "unknown command operator %REQUEST_DURATION% at offset 0",
            ),
            ("%req(x)%", "unknown command operator %req% at offset 0"),
            (
                "x %DURATION",
                "command operator %DURATION at offset 2 is not closed by '%'",
            ),
            (
                "%REQ(X) %",
                "command operator %REQ at offset 0 is not closed by '%'",
            ),
            (
                "50% off",
                "stray '%' at offset 2: write %% for a literal percent sign",
            ),
            (
                "trailing %",
                "stray '%' at offset 9: write %% for a literal percent sign",
            ),
            (
                "%REQ(USER-AGENT%",
                "bad argument to %REQ% at offset 0: '(' is not closed by ')'",
            ),
            (
                "%REQ()%",
                "bad argument to %REQ% at offset 0: empty header name",
            ),
            (
                "%REQ(A?)%",
                "bad argument to %REQ% at offset 0: empty header name",
            ),
            (
                "%REQ(?B)%",
                "bad argument to %REQ% at offset 0: empty header name",
            ),
            (
                "%REQ(A?B?C)%",
                "bad argument to %REQ% at offset 0: \"B?C\" is not a valid header name",
            ),
            (
                "%REQ(BAD NAME)%",
                "bad argument to %REQ% at offset 0: \"BAD NAME\" is not a valid header name",
            ),
            (
                "%REQ%",
                "bad argument to %REQ% at offset 0: expected a header name, like %REQ(USER-AGENT)%",
            ),
            (
                "%REQ(:STATUS)%",
                "bad argument to %REQ% at offset 0: unsupported pseudo-header :STATUS (known: :METHOD, :PATH, :AUTHORITY, :SCHEME)",
            ),
            (
                "%RESP(:PATH)%",
                "bad argument to %RESP% at offset 0: unsupported pseudo-header :PATH (known: :STATUS)",
            ),
            (
                "%DURATION(ms)%",
                "bad argument to %DURATION% at offset 0: %DURATION% takes no argument, found (ms)",
            ),
            (
                "%START_TIME(%Y %j)%",
                "bad argument to %START_TIME% at offset 0: unsupported time conversion \"%j\" (supported: %Y %m %d %H %M %S %s %z %F %T %f %1f..%9f %E1S..%E9S %%)",
            ),
            (
                "%START_TIME(%Y%)%",
                "bad argument to %START_TIME% at offset 0: unsupported time conversion \"%\" (supported: %Y %m %d %H %M %S %s %z %F %T %f %1f..%9f %E1S..%E9S %%)",
            ),
            (
                "%START_TIME(%E0S)%",
                "bad argument to %START_TIME% at offset 0: unsupported time conversion \"%E0\" (supported: %Y %m %d %H %M %S %s %z %F %T %f %1f..%9f %E1S..%E9S %%)",
            ),
            (
                "%REQ(X):%",
                "bad length limit on %REQ% at offset 0: expected a number of bytes after ':'",
            ),
            (
                "%REQ(X):ab%",
                "bad length limit on %REQ% at offset 0: expected a number of bytes after ':'",
            ),
            (
                "%REQ(X):0%",
                "bad length limit on %REQ% at offset 0: the length must be at least 1",
            ),
            (
                "%REQ(X):99999999999999999999999%",
                "bad length limit on %REQ% at offset 0: the number is too large",
            ),
            (
                "%REQ(X):5x%",
                "command operator %REQ at offset 0 is not closed by '%'",
            ),
            (
                "%DURATION:3%",
                "bad length limit on %DURATION% at offset 0: only REQ(...) and RESP(...) take a length limit",
            ),
        ];
        for (fmt, want) in cases {
            assert_eq!(text_err(fmt), want, "format {fmt:?}");
        }
        // The example from the documentation: the offset is that of the opening '%'.
        assert_eq!(
            text_err("[%DURATION%]%FOO%"),
            "unknown command operator %FOO% at offset 12"
        );
    }

    #[test]
    fn json_errors() {
        let fields = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let err = Format::json(&fields(&[("ok", "%DURATION%"), ("bad", "x %NOPE%")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "in JSON field \"bad\": unknown command operator %NOPE% at offset 2"
        );
        let err = Format::json(&fields(&[("a", "%DURATION%"), ("a", "%BYTES_SENT%")])).unwrap_err();
        assert_eq!(
            err,
            FormatError::DuplicateJsonField {
                key: "a".to_owned()
            }
        );
        assert_eq!(err.to_string(), "duplicate JSON field \"a\"");
    }
}
