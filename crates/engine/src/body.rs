//! The body of the engine's responses: empty, a complete payload, or the
//! inner service's body for requests the engine does not handle.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A response body of [`crate::service::EngineIoService`].
    #[project = BodyProj]
    pub enum ResponseBody<B> {
        /// No body.
        Empty,
        /// A complete body (taken on the first poll).
        Full { data: Option<Bytes> },
        /// The inner service's body.
        Inner { #[pin] body: B },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn empty() -> Self {
        Self::Empty
    }
    pub(crate) fn full(data: impl Into<Bytes>) -> Self {
        Self::Full {
            data: Some(data.into()),
        }
    }
    pub(crate) fn inner(body: B) -> Self {
        Self::Inner { body }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project() {
            BodyProj::Empty => Poll::Ready(None),
            BodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            BodyProj::Inner { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full { data } => data.is_none(),
            Self::Inner { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Self::Inner { body } => body.size_hint(),
        }
    }
}
