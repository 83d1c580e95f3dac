//! hookwire's Engine.IO engine, built in place of `engineioxide` (same crate
//! name, version and public API), so socketioxide and socketioxide-redis
//! run on it unchanged.
//!
//! Layout:
//! - [`service`]: the tower/hyper service; routes a request to a transport.
//! - [`engine`] (private): the session map; opening and closing sessions.
//! - [`socket`]: a session, its outbound path ([`socket::Permit`]) and the
//!   write-through to WebSocket.
//! - `polling` (private): the long-polling transport.
//! - `ws` (private): the WebSocket transport: HTTP upgrade, the
//!   polling → WebSocket upgrade, the connection task; `ws::frame` is the
//!   RFC 6455 framing, `ws::wire` the kernel socket under it.
//! - [`config`], [`handler`], [`layer`]: upstream's API.
//! - [`stats`]: process-wide transport counters for metrics.
//!
//! The design and its trade-offs are in the repository's `docs/transport.md`.

pub use engineioxide_core::{ProtocolVersion, Str, TransportType};
pub use socket::{DisconnectReason, Socket};

#[doc(hidden)]
#[cfg(feature = "__test_harness")]
pub use engineioxide_core::{OpenPacket, Packet, PacketParseError};

pub mod config;
pub mod handler;
pub mod layer;
pub mod service;
pub mod socket;
pub mod stats;

/// Socket ids.
pub mod sid {
    pub use engineioxide_core::Sid;
}

mod body;
mod engine;
mod errors;
mod polling;
mod ws;

pub use engine::SessionHeaders;
pub use errors::Error;
