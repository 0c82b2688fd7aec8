//! TLS with rustls on the ring provider: termination on listeners (STRICT, PERMISSIVE, mTLS with
//! SAN allow-lists), origination to clusters (App Mesh clientPolicy tls), certificates that reload
//! when their files change, and failures sorted by cause for metrics and logs.
//!
//! ring rather than aws-lc-rs: it builds with a plain C compiler, no cmake or NASM, so the proxy
//! builds anywhere cargo does (and in the distroless image).
pub mod certs;
pub mod client;
pub mod reload;
pub mod server;
pub mod sni;
mod stream;

use std::sync::Arc;

pub use stream::{ClientStream, ServerStream};

/// The crypto provider every TLS config uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Config(String),
}

/// Why a handshake failed, as metric label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureCause {
    UnknownCa,
    SanMismatch,
    Expired,
    NoCertificate,
    Handshake,
}

impl FailureCause {
    pub fn label(self) -> &'static str {
        match self {
            FailureCause::UnknownCa => "unknown_ca",
            FailureCause::SanMismatch => "san_mismatch",
            FailureCause::Expired => "expired",
            FailureCause::NoCertificate => "no_certificate",
            FailureCause::Handshake => "handshake_error",
        }
    }

    /// Classifies a rustls error (as seen by either side of the handshake).
    pub fn of(e: &rustls::Error) -> FailureCause {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        match e {
            E::InvalidCertificate(C::UnknownIssuer) | E::AlertReceived(A::UnknownCA) => {
                FailureCause::UnknownCa
            }
            E::InvalidCertificate(C::Expired | C::ExpiredContext { .. })
            | E::AlertReceived(A::CertificateExpired) => FailureCause::Expired,
            E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                FailureCause::SanMismatch
            }
            E::NoCertificatesPresented | E::AlertReceived(A::CertificateRequired) => {
                FailureCause::NoCertificate
            }
            _ => FailureCause::Handshake,
        }
    }

    /// Classifies the I/O error tokio-rustls reports for a failed handshake.
    pub fn of_io(e: &std::io::Error) -> FailureCause {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map_or(FailureCause::Handshake, FailureCause::of)
    }
}
