//! Why the engine refused a request, and the HTTP answer for each.

use engineioxide_core::Sid;
use http::{Response, StatusCode};

use crate::body::ResponseBody;

pub use engineioxide_core::PacketParseError;

/// A refused Engine.IO request.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("transport unknown")]
    UnknownTransport,
    #[error("bad handshake method")]
    BadHandshakeMethod,
    #[error("unsupported protocol version")]
    UnsupportedProtocolVersion,
    #[error("unknown session id")]
    UnknownSessionID(Sid),
    #[error("transport mismatch")]
    TransportMismatch,
    #[error("not a websocket upgrade request")]
    NotWebSocketUpgrade,
    #[error("invalid Sec-WebSocket-Key header")]
    InvalidWebSocketKey,
    #[error("a polling request is already pending for this session")]
    MultipleHttpPolling,
    #[error("payload larger than {max} bytes")]
    PayloadTooLarge { max: u64 },
    #[error("bad payload: {0:?}")]
    BadPayload(PacketParseError),
    #[error("upgrade failed")]
    Upgrade,
}

impl Error {
    /// The response: Engine.IO's JSON error codes where the protocol has one.
    pub(crate) fn into_response<B>(self) -> Response<ResponseBody<B>> {
        let json = |code: u8, message: &str| {
            Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(ResponseBody::full(format!(
                    "{{\"code\":{code},\"message\":\"{message}\"}}"
                )))
                .expect("static headers")
        };
        let status = |code: StatusCode| {
            Response::builder()
                .status(code)
                .body(ResponseBody::empty())
                .expect("static headers")
        };
        match self {
            Error::UnknownTransport => json(0, "Transport unknown"),
            Error::UnknownSessionID(_) => json(1, "Session ID unknown"),
            Error::BadHandshakeMethod => json(2, "Bad handshake method"),
            Error::TransportMismatch | Error::NotWebSocketUpgrade | Error::InvalidWebSocketKey => {
                json(3, "Bad request")
            }
            Error::UnsupportedProtocolVersion => json(5, "Unsupported protocol version"),
            Error::PayloadTooLarge { .. } => status(StatusCode::PAYLOAD_TOO_LARGE),
            Error::MultipleHttpPolling | Error::BadPayload(_) => status(StatusCode::BAD_REQUEST),
            Error::Upgrade => status(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}
