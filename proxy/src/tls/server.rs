//! TLS termination on a listener. STRICT accepts TLS only; PERMISSIVE tells TLS from plaintext
//! by peeking at the first byte (a TLS handshake record starts with 0x16). With validation, the
//! client must present a certificate signed by the trust bundle, and, when SANs are listed, one
//! of its SANs must be on the list (exact match) — mutual TLS.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounterVec;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::certs::{self, CertInfo};
use super::reload::Reloadable;
use super::{FailureCause, ServerStream, TlsError, provider};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Strict,
    Permissive,
}

/// What the listener's `tls` says, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsSpec {
    pub mode: Mode,
    pub certificate_chain: String,
    pub private_key: String,
    pub trust_chain: Option<String>,
    pub allowed_sans: Vec<String>,
    pub alpn: Vec<Vec<u8>>,
}

pub struct ServerTls {
    pub spec: ServerTlsSpec,
    config: Arc<Reloadable<Arc<ServerConfig>>>,
    failures: IntCounterVec,
    listener: String,
}

fn build(spec: &ServerTlsSpec) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certs::load_certs(&spec.certificate_chain)?;
    let key = certs::load_key(&spec.private_key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &spec.trust_chain {
        None => builder.with_no_client_auth(),
        Some(trust) => {
            let roots = certs::load_roots(trust)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::File {
                    path: trust.clone(),
                    message: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::File {
            path: spec.private_key.clone(),
            message: format!("the key does not fit the certificate chain: {e}"),
        })?;
    config.alpn_protocols = spec.alpn.clone();
    Ok(Arc::new(config))
}

impl ServerTls {
    /// Loads the files (an error is a config error) and watches them for rotation.
    pub fn new(
        spec: ServerTlsSpec,
        listener: &str,
        failures: IntCounterVec,
    ) -> Result<ServerTls, TlsError> {
        let mut files = vec![
            PathBuf::from(&spec.certificate_chain),
            PathBuf::from(&spec.private_key),
        ];
        files.extend(spec.trust_chain.iter().map(PathBuf::from));
        let for_build = spec.clone();
        let config = Reloadable::new(
            format!("listener {listener}"),
            files,
            Box::new(move || build(&for_build)),
        )?;
        Ok(ServerTls {
            spec,
            config,
            failures,
            listener: listener.to_owned(),
        })
    }

    fn fail(&self, cause: FailureCause, detail: &dyn std::fmt::Display) {
        self.failures
            .with_label_values(&[&self.listener, cause.label()])
            .inc();
        tracing::info!(listener = %self.listener, cause = cause.label(), "TLS handshake refused: {detail}");
    }

    /// Accepts a connection: TLS (per mode), or plaintext in PERMISSIVE mode. `None` when the
    /// handshake failed (already counted and logged).
    pub async fn accept(&self, stream: TcpStream, timeout: Duration) -> Option<ServerStream> {
        if self.spec.mode == Mode::Permissive {
            let mut first = [0u8; 1];
            let peeked = tokio::time::timeout(timeout, stream.peek(&mut first)).await;
            match peeked {
                Ok(Ok(1)) if first[0] != 0x16 => return Some(ServerStream::Plain(stream)),
                Ok(Ok(1)) => {}
                _ => return None,
            }
        }
        let acceptor = TlsAcceptor::from(self.config.load().as_ref().clone());
        let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                self.fail(FailureCause::of_io(&e), &e);
                return None;
            }
            Err(_) => {
                self.fail(
                    FailureCause::Handshake,
                    &"no handshake within the header read timeout",
                );
                return None;
            }
        };
        if !self.spec.allowed_sans.is_empty() {
            let presented = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(certs::sans)
                .unwrap_or_default();
            if !presented.iter().any(|s| self.spec.allowed_sans.contains(s)) {
                self.fail(
                    FailureCause::SanMismatch,
                    &format!(
                        "client SANs {presented:?} are not among {:?}",
                        self.spec.allowed_sans
                    ),
                );
                return None;
            }
        }
        Some(ServerStream::Tls(Box::new(tls)))
    }

    /// The certificates in use, for `/certs`.
    pub fn certificates(&self) -> Vec<(String, String, CertInfo)> {
        let mut out = Vec::new();
        for (role, path) in [
            ("server", Some(&self.spec.certificate_chain)),
            ("trust", self.spec.trust_chain.as_ref()),
        ] {
            let Some(path) = path else { continue };
            for cert in certs::load_certs(path).unwrap_or_default() {
                if let Some(i) = certs::info(&cert) {
                    out.push((role.to_owned(), path.clone(), i));
                }
            }
        }
        out
    }
}
