//! The engine as a tower and hyper service: requests under `req_path` are
//! Engine.IO's, the rest go to the inner service.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use engineioxide_core::{ProtocolVersion, Sid, TransportType};
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::Empty;
use hyper::service::Service as HyperSvc;
use pin_project_lite::pin_project;
use tower_service::Service as TowerSvc;

use crate::{
    body::ResponseBody, config::EngineIoConfig, engine::EngineIo, errors::Error,
    handler::EngineIoHandler, polling, ws,
};

/// The Engine.IO service, wrapping `S` for other paths.
pub struct EngineIoService<H: EngineIoHandler, S = NotFoundService> {
    inner: S,
    engine: Arc<EngineIo<H>>,
}

impl<H: EngineIoHandler> EngineIoService<H, NotFoundService> {
    /// With the default settings; other paths get 404.
    pub fn new(handler: Arc<H>) -> Self {
        Self::with_config(handler, EngineIoConfig::default())
    }
    /// With `config`; other paths get 404.
    pub fn with_config(handler: Arc<H>, config: EngineIoConfig) -> Self {
        Self::with_config_inner(NotFoundService, handler, config)
    }
}

impl<H: EngineIoHandler, S: Clone> EngineIoService<H, S> {
    /// Default settings, other paths to `inner`.
    pub fn with_inner(inner: S, handler: Arc<H>) -> Self {
        Self::with_config_inner(inner, handler, EngineIoConfig::default())
    }
    /// `config`, other paths to `inner`.
    pub fn with_config_inner(inner: S, handler: Arc<H>, config: EngineIoConfig) -> Self {
        Self {
            inner,
            engine: Arc::new(EngineIo::new(handler, config)),
        }
    }
    /// A make-service handing out clones of this one.
    pub fn into_make_service(self) -> MakeEngineIoService<H, S> {
        MakeEngineIoService::new(self)
    }

    /// Runs a WebSocket session over an already upgraded stream.
    #[doc(hidden)]
    pub fn ws_init<St>(
        &self,
        conn: St,
        protocol: ProtocolVersion,
        sid: Option<Sid>,
        req_data: http::request::Parts,
    ) -> impl Future<Output = Result<(), Error>> + 'static
    where
        St: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        ws::run_stream(self.engine.clone(), conn, protocol, sid, req_data)
    }
}

impl<H: EngineIoHandler, S: Clone> Clone for EngineIoService<H, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            engine: self.engine.clone(),
        }
    }
}

impl<H: EngineIoHandler, S> std::fmt::Debug for EngineIoService<H, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineIoService").finish_non_exhaustive()
    }
}

type BoxedResponse<B> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, Error>> + Send>>;

pin_project! {
    /// The future of a response of [`EngineIoService`].
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F, B> {
        /// Answered at once.
        Ready { res: Option<Response<ResponseBody<B>>> },
        /// A polling request that waits.
        Pending { fut: BoxedResponse<B> },
        /// The inner service's.
        Inner { #[pin] fut: F },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Ready { res } => {
                Poll::Ready(Ok(res.take().expect("polled after completion")))
            }
            ResponseFutureProj::Pending { fut } => fut
                .as_mut()
                .poll(cx)
                .map(|r| Ok(r.unwrap_or_else(Error::into_response))),
            ResponseFutureProj::Inner { fut } => fut
                .poll(cx)
                .map(|r| r.map(|res| res.map(ResponseBody::inner))),
        }
    }
}

fn ready<F, B>(res: Result<Response<ResponseBody<B>>, Error>) -> ResponseFuture<F, B> {
    ResponseFuture::Ready {
        res: Some(res.unwrap_or_else(Error::into_response)),
    }
}

/// The parts of an Engine.IO request's query.
struct RequestInfo {
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    transport: TransportType,
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

impl RequestInfo {
    fn parse<B>(req: &Request<B>, config: &EngineIoConfig) -> Result<Self, Error> {
        let query = req.uri().query().ok_or(Error::UnknownTransport)?;
        // Only v4 is implemented (the `v3` feature is accepted by name).
        let protocol = match query_value(query, "EIO") {
            Some("4") => ProtocolVersion::V4,
            _ => return Err(Error::UnsupportedProtocolVersion),
        };
        let transport: TransportType = query_value(query, "transport")
            .and_then(|t| t.parse().ok())
            .ok_or(Error::UnknownTransport)?;
        if !config.allowed_transport(transport) {
            return Err(Error::UnknownTransport);
        }
        // A sid that cannot be parsed matches no session; it must not open one.
        let sid = match query_value(query, "sid") {
            Some(s) => Some(s.parse().map_err(|_| Error::UnknownSessionID(Sid::ZERO))?),
            None => None,
        };
        if sid.is_none() && req.method() != Method::GET {
            return Err(Error::BadHandshakeMethod);
        }
        Ok(Self {
            protocol,
            sid,
            transport,
        })
    }
}

fn dispatch<H, ReqBody, ResBody, F>(
    engine: Arc<EngineIo<H>>,
    req: Request<ReqBody>,
) -> ResponseFuture<F, ResBody>
where
    H: EngineIoHandler,
    ReqBody: Body + Send + Unpin + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: std::fmt::Debug,
    ResBody: Send + 'static,
{
    let info = match RequestInfo::parse(&req, &engine.config) {
        Ok(info) => info,
        Err(e) => return ready(Err(e)),
    };
    match (info.transport, info.sid, req.method()) {
        (TransportType::Polling, None, &Method::GET) => {
            ready(Ok(polling::open(engine, info.protocol, req)))
        }
        (TransportType::Polling, Some(sid), &Method::GET) => ResponseFuture::Pending {
            fut: Box::pin(polling::get(engine, sid)),
        },
        (TransportType::Polling, Some(sid), &Method::POST) => ResponseFuture::Pending {
            fut: Box::pin(polling::post(engine, sid, req)),
        },
        (TransportType::Websocket, sid, &Method::GET) => {
            ready(ws::new_req(engine, info.protocol, sid, req))
        }
        _ => ready(Err(Error::BadHandshakeMethod)),
    }
}

/// Engine.IO's requests to the engine, the rest to `inner` (the tower and
/// hyper services differ only in how they call it).
fn route<H, ReqBody, ResBody, F>(
    engine: &Arc<EngineIo<H>>,
    req: Request<ReqBody>,
    inner: impl FnOnce(Request<ReqBody>) -> F,
) -> ResponseFuture<F, ResBody>
where
    H: EngineIoHandler,
    ReqBody: Body + Send + Unpin + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: std::fmt::Debug,
    ResBody: Send + 'static,
{
    if is_req_path(req.uri().path(), &engine.config.req_path) {
        dispatch(engine.clone(), req)
    } else {
        ResponseFuture::Inner { fut: inner(req) }
    }
}

fn is_req_path(path: &str, req_path: &str) -> bool {
    path.strip_prefix(req_path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || req_path.ends_with('/'))
}

impl<H, ReqBody, ResBody, S> TowerSvc<Request<ReqBody>> for EngineIoService<H, S>
where
    H: EngineIoHandler,
    ReqBody: Body + Send + Unpin + 'static + std::fmt::Debug,
    ReqBody::Error: std::fmt::Debug,
    ReqBody::Data: Send,
    ResBody: Body + Send + 'static,
    S: TowerSvc<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let inner = &mut self.inner;
        route(&self.engine, req, |req| inner.call(req))
    }
}

impl<H, ReqBody, ResBody, S> HyperSvc<Request<ReqBody>> for EngineIoService<H, S>
where
    H: EngineIoHandler,
    ReqBody: Body + Send + Unpin + 'static + std::fmt::Debug,
    ReqBody::Error: std::fmt::Debug,
    ReqBody::Data: Send,
    ResBody: Body + Send + 'static,
    S: HyperSvc<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn call(&self, req: Request<ReqBody>) -> Self::Future {
        route(&self.engine, req, |req| self.inner.call(req))
    }
}

/// A WebSocket handed over already upgraded: the stream and its request.
fn ws_conn<H, St>(engine: Arc<EngineIo<H>>, conn: St, req: Request<()>) -> Result<(), Error>
where
    H: EngineIoHandler,
    St: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let info = RequestInfo::parse(&req, &engine.config)?;
    let (parts, ()) = req.into_parts();
    tokio::spawn(ws::run_stream(engine, conn, info.protocol, info.sid, parts));
    Ok(())
}

impl<St, H, S> TowerSvc<(St, Request<()>)> for EngineIoService<H, S>
where
    H: EngineIoHandler,
    St: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Response = ();
    type Error = Error;
    type Future = std::future::Ready<Result<(), Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (conn, req): (St, Request<()>)) -> Self::Future {
        std::future::ready(ws_conn(self.engine.clone(), conn, req))
    }
}

impl<St, H, S> HyperSvc<(St, Request<()>)> for EngineIoService<H, S>
where
    H: EngineIoHandler,
    St: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Response = ();
    type Error = Error;
    type Future = std::future::Ready<Result<(), Error>>;

    fn call(&self, (conn, req): (St, Request<()>)) -> Self::Future {
        std::future::ready(ws_conn(self.engine.clone(), conn, req))
    }
}

/// Hands out clones of one [`EngineIoService`] (one per connection).
pub struct MakeEngineIoService<H: EngineIoHandler, S> {
    svc: EngineIoService<H, S>,
}

impl<H: EngineIoHandler, S> MakeEngineIoService<H, S> {
    /// Wraps `svc`.
    pub fn new(svc: EngineIoService<H, S>) -> Self {
        Self { svc }
    }
}

impl<H: EngineIoHandler, S: Clone, T> TowerSvc<T> for MakeEngineIoService<H, S> {
    type Response = EngineIoService<H, S>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: T) -> Self::Future {
        std::future::ready(Ok(self.svc.clone()))
    }
}

/// Answers 404 to everything (the default inner service).
#[derive(Debug, Clone)]
pub struct NotFoundService;

impl<ReqBody> TowerSvc<Request<ReqBody>> for NotFoundService {
    type Response = Response<ResponseBody<Empty<Bytes>>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<ReqBody>) -> Self::Future {
        std::future::ready(Ok(not_found()))
    }
}

impl<ReqBody> HyperSvc<Request<ReqBody>> for NotFoundService {
    type Response = Response<ResponseBody<Empty<Bytes>>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn call(&self, _: Request<ReqBody>) -> Self::Future {
        std::future::ready(Ok(not_found()))
    }
}

fn not_found<B>() -> Response<ResponseBody<B>> {
    Response::builder()
        .status(404)
        .body(ResponseBody::empty())
        .expect("static")
}
