//! The server name (SNI) a TLS client asks for, read from its ClientHello without consuming it, so
//! that the bytes still reach the upstream when the connection is passed through untouched. The
//! egress filter uses it: App Mesh's DROP_ALL lets `*.amazonaws.com` through, and the only name an
//! HTTPS connection to an AWS API shows a proxy that does not terminate it is its SNI.
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

/// A ClientHello larger than this is not waited for (real ones are a few KiB at most).
const MAX_HELLO: usize = 16 * 1024;

/// The ClientHello's server name, or `None` when the client sends something other than TLS, a
/// hello without a name, nothing within `wait`, or closes.
pub async fn peek_server_name(stream: &TcpStream, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; MAX_HELLO];
    let mut seen = 0;
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if n > seen {
            seen = n;
            match server_name(&buf[..n]) {
                Parsed::Name(name) => return name,
                Parsed::NotTls => return None,
                Parsed::Incomplete if n == buf.len() => return None,
                Parsed::Incomplete => {}
            }
        }
        // A peek returns at once while any bytes wait, new or not: pause for the rest of the
        // hello (it rarely spans more than two segments).
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

enum Parsed {
    Name(Option<String>),
    Incomplete,
    NotTls,
}

/// Parses the start of a connection as a TLS ClientHello, with rustls's own parser.
fn server_name(bytes: &[u8]) -> Parsed {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return Parsed::NotTls,
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => {
            Parsed::Name(accepted.client_hello().server_name().map(str::to_owned))
        }
        Ok(None) => Parsed::Incomplete,
        Err(_) => Parsed::NotTls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A real ClientHello, as rustls's client writes it for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let mut conn = rustls::ClientConnection::new(
            Arc::new(config),
            rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap(),
        )
        .unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_the_server_name_of_a_whole_hello_and_waits_for_a_partial_one() {
        let hello = client_hello("dynamodb.us-west-2.amazonaws.com");
        match server_name(&hello) {
            Parsed::Name(Some(n)) => assert_eq!(n, "dynamodb.us-west-2.amazonaws.com"),
            _ => panic!("no name"),
        }
        assert!(matches!(
            server_name(&hello[..hello.len() / 2]),
            Parsed::Incomplete
        ));
        assert!(matches!(
            server_name(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Parsed::NotTls
        ));
    }

    #[tokio::test]
    async fn peeks_without_consuming() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hello = client_hello("s3.amazonaws.com");
        let sent = hello.clone();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&sent).await.unwrap();
            c
        });
        let (mut server, _) = listener.accept().await.unwrap();
        let name = peek_server_name(&server, Duration::from_secs(5)).await;
        assert_eq!(name.as_deref(), Some("s3.amazonaws.com"));
        let mut all = vec![0u8; hello.len()];
        server.read_exact(&mut all).await.unwrap();
        assert_eq!(all, hello, "the hello is still there for the upstream");
        drop(client.await.unwrap());
    }
}
