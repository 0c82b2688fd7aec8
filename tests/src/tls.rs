//! Certificates made in the test (rcgen): a CA that issues server and client certificates with
//! chosen SANs, written as PEM files; and TLS clients and servers to talk to the proxy.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A test certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A certificate and its key, written to files.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("self-signed");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// Writes the CA certificate to `dir/name` and returns its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, &self.pem).expect("write ca");
        p
    }

    /// Issues a certificate for `sans` (usable as server and client certificate), written to
    /// `dir/{name}.crt` and `dir/{name}.key`.
    pub fn issue(&self, dir: &Path, name: &str, sans: &[&str]) -> Issued {
        self.issue_with(dir, name, sans, |_| {})
    }

    /// Issues a certificate that expired in 2001.
    pub fn issue_expired(&self, dir: &Path, name: &str, sans: &[&str]) -> Issued {
        self.issue_with(dir, name, sans, |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
    }

    fn issue_with(
        &self,
        dir: &Path,
        name: &str,
        sans: &[&str],
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> Issued {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("params");
        p.distinguished_name
            .push(DnType::CommonName, sans.first().copied().unwrap_or(name));
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        tweak(&mut p);
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.issuer).expect("sign");
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, &cert_pem).expect("write cert");
        std::fs::write(&key_path, &key_pem).expect("write key");
        Issued {
            cert: cert_path,
            key: key_path,
            cert_pem,
            key_pem,
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client config trusting `ca_pem`, with an optional client certificate and ALPN.
pub fn client_config(
    ca_pem: &str,
    client: Option<&Issued>,
    alpn: &[&str],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("add root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(i) => {
            let certs = CertificateDer::pem_slice_iter(i.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("certs");
            let key = PrivateKeyDer::from_pem_slice(i.key_pem.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client cert")
        }
    };
    config.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// Connects with TLS to `addr`, verifying the server certificate for `name`.
pub async fn connect(
    addr: std::net::SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let server_name =
        ServerName::try_from(name.to_owned()).map_err(|e| std::io::Error::other(e.to_string()))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
}

/// The certificate the server presented, PEM-free DER bytes.
pub fn peer_certificate(s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    s.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default()
}

/// One HTTPS GET over a fresh TLS connection (HTTP/2 when ALPN picks it): (status, ALPN, body).
pub async fn https_get(
    addr: std::net::SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> anyhow::Result<(u16, Option<String>, String)> {
    use http_body_util::BodyExt;
    let tls = connect(addr, name, config).await?;
    let alpn = tls
        .get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let io = hyper_util::rt::TokioIo::new(tls);
    let req = http::Request::get(path)
        .header("host", name)
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let resp = if alpn.as_deref() == Some("h2") {
        let (mut s, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        let mut req = req;
        *req.uri_mut() = format!("https://{name}{path}").parse()?;
        s.send_request(req).await?
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        s.send_request(req).await?
    };
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, alpn, String::from_utf8_lossy(&body).into_owned()))
}
