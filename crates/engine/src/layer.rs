//! A tower layer putting an [`EngineIoService`] in front of a service.

use std::sync::Arc;

use tower_service::Service;

use crate::{config::EngineIoConfig, handler::EngineIoHandler, service::EngineIoService};

/// Wraps services in an [`EngineIoService`] sharing one engine handler.
#[derive(Debug, Clone)]
pub struct EngineIoLayer<H: EngineIoHandler> {
    config: EngineIoConfig,
    handler: Arc<H>,
}

impl<H: EngineIoHandler> EngineIoLayer<H> {
    /// Default settings.
    pub fn new(handler: Arc<H>) -> Self {
        Self::from_config(handler, EngineIoConfig::default())
    }
    /// With `config`.
    pub fn from_config(handler: Arc<H>, config: EngineIoConfig) -> Self {
        Self { config, handler }
    }

    /// The service in front of `inner`.
    pub fn layer<S: Clone>(&self, inner: S) -> EngineIoService<H, S> {
        EngineIoService::with_config_inner(inner, self.handler.clone(), self.config.clone())
    }
}

#[allow(dead_code)]
fn assert_service<S: Service<http::Request<()>>>() {}
