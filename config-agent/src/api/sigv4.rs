//! AWS Signature Version 4, verified: the canonical request is rebuilt from what arrived, the
//! signing key derived from the configured secret (HMAC-SHA256 chain over date, region, service),
//! and the signature compared in constant time. `ring` does the hashing: it is already in the
//! build (rustls' provider), maintained, and has a constant-time HMAC verify.
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use ring::{digest, hmac};

use super::error::ApiError;
use super::time;

/// The access key the agent accepts.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<hidden>")
            .finish()
    }
}

/// How far a request's `X-Amz-Date` may be from the agent's clock, as AWS allows.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, ApiError> {
    let bad = |m: &str| ApiError::missing_auth(format!("malformed Authorization header: {m}"));
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or_else(|| bad("only AWS4-HMAC-SHA256 is supported"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or_else(|| bad("no Credential"))?;
    let mut scope = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(bad(
            "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed
            .ok_or_else(|| bad("no SignedHeaders"))?
            .split(';')
            .collect(),
        signature: signature.ok_or_else(|| bad("no Signature"))?,
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sign(key: &[u8], data: &str) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
}

/// `%XX`-decodes (not `+`: SigV4 treats it as itself).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// SigV4's URI encoding: every byte but `A-Za-z0-9-_.~` (and `/` when `keep_slash`) as `%XX`.
fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// RFC 3986 dot-segment removal plus the collapse of `//`, as AWS services (and botocore) do.
fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut s = String::from(if path.starts_with('/') { "/" } else { "" });
    s.push_str(&out.join("/"));
    if path.ends_with('/') && !out.is_empty() {
        s.push('/');
    }
    s
}

/// The canonical URI of a non-S3 service: the path as sent (already percent-encoded), normalized,
/// then encoded once more.
fn canonical_uri(raw_path: &str) -> String {
    uri_encode(normalize_path(raw_path).as_bytes(), true)
}

fn canonical_query(raw_query: Option<&str>) -> String {
    let Some(q) = raw_query.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = q
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn trim_all(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a request looks like to the verifier.
pub struct Signed<'a> {
    pub method: &'a str,
    /// The path as it arrived (percent-encoded).
    pub raw_path: &'a str,
    pub raw_query: Option<&'a str>,
    /// HTTP/2's `:authority`, which stands for the `host` header a client signed.
    pub authority: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Verifies `req`'s SigV4 signature against `creds` at time `now`.
pub fn verify(creds: &Credentials, req: &Signed<'_>, now: SystemTime) -> Result<(), ApiError> {
    let Some(auth) = req.headers.get(http::header::AUTHORIZATION) else {
        return Err(ApiError::missing_auth(
            "Missing Authentication Token: this agent requires SigV4-signed requests",
        ));
    };
    let auth = auth
        .to_str()
        .map_err(|_| ApiError::missing_auth("the Authorization header is not text"))?;
    let a = parse_authorization(auth)?;
    if a.access_key_id != creds.access_key_id {
        return Err(ApiError::unrecognized_client(
            "The security token included in the request is invalid.",
        ));
    }
    if a.service != "appmesh" {
        return Err(ApiError::invalid_signature(format!(
            "Credential should be scoped to correct service: 'appmesh', not '{}'",
            a.service
        )));
    }
    let header_text = |name: &str| -> Vec<String> {
        req.headers
            .get_all(name)
            .iter()
            .map(|v| trim_all(&String::from_utf8_lossy(v.as_bytes())))
            .collect()
    };
    let amz_date = header_text("x-amz-date")
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::missing_auth("X-Amz-Date is required with a SigV4 signature"))?;
    let when = time::parse_amz_date(&amz_date).ok_or_else(|| {
        ApiError::invalid_signature(format!(
            "X-Amz-Date {amz_date:?} is not YYYYMMDD'T'HHMMSS'Z'"
        ))
    })?;
    let skew = now.duration_since(when).unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        return Err(ApiError::invalid_signature(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            time::amz_date(now - MAX_SKEW),
            time::amz_date(now)
        )));
    }
    if !amz_date.starts_with(a.date) {
        return Err(ApiError::invalid_signature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            a.date,
            amz_date.get(..8).unwrap_or_default()
        )));
    }
    if !a.signed_headers.contains(&"host") {
        return Err(ApiError::invalid_signature(
            "'Host' must be a signed header",
        ));
    }
    let body_hash = sha256_hex(req.body);
    if let Some(claimed) = header_text("x-amz-content-sha256").first()
        && *claimed != body_hash
    {
        return Err(ApiError::invalid_signature(
            "X-Amz-Content-SHA256 does not match the body (unsigned payloads are not accepted)",
        ));
    }
    let mut canonical_headers = String::new();
    for name in &a.signed_headers {
        let mut values = header_text(name);
        if *name == "host" && values.is_empty() {
            values.extend(req.authority.map(str::to_owned));
        }
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.raw_path),
        canonical_query(req.raw_query),
        canonical_headers,
        a.signed_headers.join(";"),
        body_hash
    );
    let scope = format!("{}/{}/{}/aws4_request", a.date, a.region, a.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac_sign(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        a.date,
    );
    let k_region = hmac_sign(k_date.as_ref(), a.region);
    let k_service = hmac_sign(k_region.as_ref(), a.service);
    let k_signing = hmac_sign(k_service.as_ref(), "aws4_request");
    let given = unhex(a.signature)
        .ok_or_else(|| ApiError::invalid_signature("the Signature is not hexadecimal"))?;
    hmac::verify(
        &hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref()),
        string_to_sign.as_bytes(),
        &given,
    )
    .map_err(|_| {
        ApiError::invalid_signature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example (IAM ListUsers, "Signature Version 4 signing process").
    #[test]
    fn aws_documented_example() {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        };
        let mut headers = HeaderMap::new();
        headers.insert("host", "iam.amazonaws.com".parse().unwrap());
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
                .parse()
                .unwrap(),
        );
        let req = Signed {
            method: "GET",
            raw_path: "/",
            raw_query: Some("Action=ListUsers&Version=2010-05-08"),
            authority: None,
            headers: &headers,
            body: b"",
        };
        let now = time::parse_amz_date("20150830T123600Z").unwrap();
        // The example is scoped to IAM; everything but the service check must pass.
        let e = verify(&creds, &req, now).unwrap_err();
        assert!(e.message.contains("'appmesh'"), "{e}");
        let a =
            parse_authorization(headers.get("authorization").unwrap().to_str().unwrap()).unwrap();
        assert_eq!(a.signed_headers, ["content-type", "host", "x-amz-date"]);
        // Recompute the example's signature with the verifier's own steps.
        let canonical = format!(
            "GET\n/\n{}\ncontent-type:application/x-www-form-urlencoded; charset=utf-8\nhost:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n{}",
            canonical_query(req.raw_query),
            sha256_hex(b"")
        );
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let sts = format!(
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let k = hmac_sign(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830");
        let k = hmac_sign(k.as_ref(), "us-east-1");
        let k = hmac_sign(k.as_ref(), "iam");
        let k = hmac_sign(k.as_ref(), "aws4_request");
        assert_eq!(
            hex(hmac_sign(k.as_ref(), &sts).as_ref()),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(normalize_path("/a//b/./c/../d/"), "/a/b/d/");
        assert_eq!(
            canonical_uri("/v20190125/meshes/a%20b"),
            "/v20190125/meshes/a%2520b"
        );
        assert_eq!(
            canonical_query(Some("resourceArn=arn%3Aaws%3Aappmesh&limit=2")),
            "limit=2&resourceArn=arn%3Aaws%3Aappmesh"
        );
        assert_eq!(trim_all("  a   b "), "a b");
    }
}
