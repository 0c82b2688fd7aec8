//! HTTP/1.1 protocol upgrades (WebSocket and friends): once the upstream answers 101, the two
//! connections are joined and bytes copied both ways until either side closes.
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

pub fn splice(client: OnUpgrade, upstream: OnUpgrade, cluster: String) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(%cluster, "upgrade failed: {e}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%cluster, "upgraded connection ended: {e}");
        }
    });
}
