//! A response body from upstream, from whichever client carried the request.
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::h1::DirectBody;
use super::h2_client::H2Body;
use crate::http::BoxError;

pub enum UpstreamIncoming {
    /// hyper's HTTP/1.1 client: requests with a body, upgrades.
    Hyper(Incoming),
    /// The HTTP/2 client.
    H2(H2Body),
    /// The direct HTTP/1.1 client (bodiless requests).
    Direct(DirectBody),
}

impl Body for UpstreamIncoming {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamIncoming::Hyper(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BoxError::from))),
            UpstreamIncoming::Direct(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BoxError::from))),
            UpstreamIncoming::H2(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BoxError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamIncoming::Hyper(b) => b.is_end_stream(),
            UpstreamIncoming::Direct(b) => b.is_end_stream(),
            UpstreamIncoming::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamIncoming::Hyper(b) => b.size_hint(),
            UpstreamIncoming::Direct(b) => b.size_hint(),
            UpstreamIncoming::H2(b) => b.size_hint(),
        }
    }
}
