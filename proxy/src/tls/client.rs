//! TLS origination to a cluster's endpoints (App Mesh clientPolicy tls): the server certificate
//! must chain to the trust bundle and be valid for one of the listed SANs (default: the SNI
//! name, i.e. the cluster's DNS hostname or the endpoint's address); an optional client
//! certificate makes it mutual TLS.
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use prometheus::IntCounterVec;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::certs::{self, CertInfo};
use super::reload::Reloadable;
use super::{ClientStream, FailureCause, TlsError, provider};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTlsSpec {
    /// Only these upstream ports use TLS; empty = all.
    pub ports: Vec<u16>,
    pub trust_chain: String,
    pub sans: Vec<String>,
    pub certificate_chain: Option<String>,
    pub private_key: Option<String>,
    pub sni: Option<String>,
    pub alpn: Vec<Vec<u8>>,
}

pub struct ClientTls {
    pub spec: ClientTlsSpec,
    config: Arc<Reloadable<Arc<ClientConfig>>>,
    failures: IntCounterVec,
    cluster: String,
}

/// Accepts a server certificate valid for any one of a list of names.
#[derive(Debug)]
struct AnyOfSans {
    inner: Arc<WebPkiServerVerifier>,
    names: Vec<ServerName<'static>>,
}

impl ServerCertVerifier for AnyOfSans {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut last = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        for name in &self.names {
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
            {
                Ok(v) => return Ok(v),
                // Only a name mismatch moves on to the next name; any other fault is final.
                Err(
                    e @ rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForName
                        | rustls::CertificateError::NotValidForNameContext { .. },
                    ),
                ) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn server_name(s: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(s.to_owned())
        .map_err(|_| TlsError::Config(format!("{s:?} is not a DNS name or IP address")))
}

fn build(spec: &ClientTlsSpec) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = Arc::new(certs::load_roots(&spec.trust_chain)?);
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::File {
            path: spec.trust_chain.clone(),
            message: e.to_string(),
        })?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if spec.sans.is_empty() {
        builder.with_webpki_verifier(webpki)
    } else {
        let names = spec
            .sans
            .iter()
            .map(|s| server_name(s))
            .collect::<Result<Vec<_>, _>>()?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyOfSans {
                inner: webpki,
                names,
            }))
    };
    let mut config = match (&spec.certificate_chain, &spec.private_key) {
        (Some(chain), Some(key)) => builder
            .with_client_auth_cert(certs::load_certs(chain)?, certs::load_key(key)?)
            .map_err(|e| TlsError::File {
                path: key.clone(),
                message: format!("the key does not fit the certificate chain: {e}"),
            })?,
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = spec.alpn.clone();
    Ok(Arc::new(config))
}

impl ClientTls {
    pub fn new(
        spec: ClientTlsSpec,
        cluster: &str,
        failures: IntCounterVec,
    ) -> Result<ClientTls, TlsError> {
        let mut files = vec![PathBuf::from(&spec.trust_chain)];
        files.extend(
            spec.certificate_chain
                .iter()
                .chain(spec.private_key.iter())
                .map(PathBuf::from),
        );
        if let Some(sni) = &spec.sni {
            server_name(sni)?;
        }
        let for_build = spec.clone();
        let config = Reloadable::new(
            format!("cluster {cluster}"),
            files,
            Box::new(move || build(&for_build)),
        )?;
        Ok(ClientTls {
            spec,
            config,
            failures,
            cluster: cluster.to_owned(),
        })
    }

    /// Whether connections to `port` use TLS.
    pub fn applies_to(&self, port: u16) -> bool {
        self.spec.ports.is_empty() || self.spec.ports.contains(&port)
    }

    /// Wraps a connected stream in TLS. `host` is the cluster's DNS hostname, if it has one.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        ip: IpAddr,
        host: Option<&str>,
    ) -> Result<ClientStream, (FailureCause, std::io::Error)> {
        let name = self
            .spec
            .sni
            .as_deref()
            .or(host)
            .and_then(|h| ServerName::try_from(h.to_owned()).ok())
            .unwrap_or(ServerName::IpAddress(ip.into()));
        let connector = TlsConnector::from(self.config.load().as_ref().clone());
        match connector.connect(name, tcp).await {
            Ok(tls) => Ok(ClientStream::Tls(Box::new(tls))),
            Err(e) => {
                let cause = FailureCause::of_io(&e);
                self.failures
                    .with_label_values(&[&self.cluster, cause.label()])
                    .inc();
                tracing::info!(cluster = %self.cluster, cause = cause.label(), "TLS to the upstream failed: {e}");
                Err((cause, e))
            }
        }
    }

    /// The certificates in use, for `/certs`.
    pub fn certificates(&self) -> Vec<(String, String, CertInfo)> {
        let mut out = Vec::new();
        for (role, path) in [
            ("trust", Some(&self.spec.trust_chain)),
            ("client", self.spec.certificate_chain.as_ref()),
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
