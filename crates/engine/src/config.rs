//! Engine settings: the same fields and builder as upstream's, plus the
//! outbound queue's byte bound.

use std::{borrow::Cow, time::Duration};

use engineioxide_core::TransportType;

/// Settings of one engine (one `EngineIoService`).
#[derive(Debug, Clone)]
pub struct EngineIoConfig {
    /// Path the engine answers on (default `/engine.io`).
    pub req_path: Cow<'static, str>,
    /// Time between two server pings (default 25 s).
    pub ping_interval: Duration,
    /// Time the client has to answer a ping (default 20 s).
    pub ping_timeout: Duration,
    /// Time a polling session has to finish its upgrade to WebSocket (default 10 s).
    pub upgrade_timeout: Duration,
    /// Most packets a socket may have queued (default 128). Past it, emits
    /// fail with `Full` and the socket is closed as a slow consumer.
    pub max_buffer_size: usize,
    /// Most bytes a socket may have queued and not yet written (default
    /// 8 MiB). Past it the socket is closed as a slow consumer: a bounded
    /// queue keeps one stalled reader from taking the node's memory.
    pub max_buffer_bytes: usize,
    /// Largest payload a client may send: a polling POST body, or a
    /// WebSocket message (default 100 kB). Announced in the open packet.
    pub max_payload: u64,
    /// Kept for API compatibility: this engine holds no read buffer while a
    /// connection is idle and sizes it to the frame being read.
    pub ws_read_buffer_size: usize,
    /// Largest WebSocket message accepted (default 64 MiB); the effective
    /// bound is the smaller of this and `max_payload`.
    pub ws_max_message_size: usize,
    /// Largest single WebSocket frame accepted (default 16 MiB).
    pub ws_max_frame_size: usize,
    /// Allowed transports, a bit set of `TransportType`s.
    pub transports: u8,
}

impl Default for EngineIoConfig {
    fn default() -> Self {
        Self {
            req_path: "/engine.io".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_buffer_size: 128,
            max_buffer_bytes: 8 << 20,
            max_payload: 100_000,
            ws_read_buffer_size: 4096,
            ws_max_message_size: 64 << 20,
            ws_max_frame_size: 16 << 20,
            transports: TransportType::Polling as u8 | TransportType::Websocket as u8,
        }
    }
}

impl EngineIoConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> EngineIoConfigBuilder {
        EngineIoConfigBuilder::new()
    }

    /// Whether `transport` is enabled.
    #[inline(always)]
    pub fn allowed_transport(&self, transport: TransportType) -> bool {
        self.transports & transport as u8 == transport as u8
    }

    /// The largest incoming WebSocket message.
    pub(crate) fn ws_message_limit(&self) -> usize {
        let payload = usize::try_from(self.max_payload).unwrap_or(usize::MAX);
        self.ws_max_message_size.min(payload)
    }
}

/// Builder of [`EngineIoConfig`].
#[derive(Debug, Clone, Default)]
pub struct EngineIoConfigBuilder {
    config: EngineIoConfig,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(mut self, $name: $ty) -> Self {
            self.config.$name = $name;
            self
        }
    )*};
}

impl EngineIoConfigBuilder {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// See [`EngineIoConfig::req_path`].
    pub fn req_path(mut self, req_path: impl Into<Cow<'static, str>>) -> Self {
        self.config.req_path = req_path.into();
        self
    }

    setters! {
        /// See [`EngineIoConfig::ping_interval`].
        ping_interval: Duration,
        /// See [`EngineIoConfig::ping_timeout`].
        ping_timeout: Duration,
        /// See [`EngineIoConfig::upgrade_timeout`].
        upgrade_timeout: Duration,
        /// See [`EngineIoConfig::max_buffer_size`].
        max_buffer_size: usize,
        /// See [`EngineIoConfig::max_buffer_bytes`].
        max_buffer_bytes: usize,
        /// See [`EngineIoConfig::max_payload`].
        max_payload: u64,
        /// See [`EngineIoConfig::ws_read_buffer_size`].
        ws_read_buffer_size: usize,
        /// See [`EngineIoConfig::ws_max_message_size`].
        ws_max_message_size: usize,
        /// See [`EngineIoConfig::ws_max_frame_size`].
        ws_max_frame_size: usize,
    }

    /// The allowed transports (one or both).
    pub fn transports<const N: usize>(mut self, transports: [TransportType; N]) -> Self {
        assert!(N > 0 && N <= 2, "one or two transports");
        self.config.transports = transports.iter().fold(0, |set, t| set | *t as u8);
        self
    }

    /// The settings.
    pub fn build(self) -> EngineIoConfig {
        self.config
    }
}
