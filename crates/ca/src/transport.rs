//! gRPC (tonic) over the mutual-TLS configurations of [`crate::tls`], with
//! tokio-rustls doing the TLS so tonic needs none of its own TLS features.
//!
//! - [`MtlsConnector`]: the cluster's [`api::rpc::Connector`]; lazy channels
//!   that dial TCP and shake hands on first use (and again after a failure).
//! - [`serve`]: accepts TCP, shakes hands off the accept loop (so one slow or
//!   silent client cannot hold up the others) under a timeout, and hands tonic
//!   connections whose connect info is [`api::rpc::PeerInfo`].
//!
//! Both sides can take their configuration from a `tokio::sync::watch`
//! channel ([`MtlsConnector::reloading`], [`serve_with`]): every new
//! connection uses the latest one, so a renewed certificate or a trust bundle
//! changed by a root rotation takes effect without restarting anything.
//! Connections already open keep the configuration they started with.
//!
//! A connector can leave from a given source address
//! ([`MtlsConnector::with_source_ip`]): a node's packets then come from the
//! address it advertises, as between separate hosts, which is what lets
//! firewall rules tell the nodes apart when several share one machine's
//! loopback (where the kernel would otherwise pick 127.0.0.1 for all).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use api::rpc::{Connector, PeerInfo};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::{debug, warn};

use crate::subject::identity_of;

/// The name a client puts in its TLS ClientHello. Servers are recognised by
/// their certificate's subject, not by name, so any fixed name will do.
const SERVER_NAME: &str = "berth-node";

/// How long a client has to connect (TCP and TLS) before the call fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a server waits for a client to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections whose handshake is done but that tonic has not taken yet.
const ACCEPTED_QUEUE: usize = 64;

/// HTTP/2 pings on idle connections, so that a peer that vanished without
/// closing (a dead leader, a cut link) is noticed and the channel reconnects.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Makes lazy gRPC channels over mutual TLS with one client configuration
/// (from [`crate::client_config`] or [`crate::bootstrap_client_config`]).
#[derive(Clone)]
pub struct MtlsConnector {
    config: watch::Receiver<Arc<ClientConfig>>,
    connect_timeout: Duration,
    source_ip: Option<IpAddr>,
}

impl std::fmt::Debug for MtlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsConnector")
            .field("connect_timeout", &self.connect_timeout)
            .field("source_ip", &self.source_ip)
            .finish_non_exhaustive()
    }
}

impl MtlsConnector {
    pub fn new(config: Arc<ClientConfig>) -> MtlsConnector {
        // A receiver keeps the last value after its sender is gone.
        MtlsConnector::reloading(watch::channel(config).1)
    }

    /// Each new connection uses the configuration current at the time.
    pub fn reloading(config: watch::Receiver<Arc<ClientConfig>>) -> MtlsConnector {
        MtlsConnector {
            config,
            connect_timeout: CONNECT_TIMEOUT,
            source_ip: None,
        }
    }

    /// Connections leave from `ip` (an ephemeral port) instead of the
    /// address the kernel's route would pick. Where `ip` cannot be used — not
    /// an address of this host (an advertised address behind NAT), not of
    /// the destination's family, or loopback while the destination is not —
    /// a connection leaves as without it rather than fail. An unspecified
    /// address (`0.0.0.0`, `::`) means no source.
    pub fn with_source_ip(mut self, ip: IpAddr) -> MtlsConnector {
        self.source_ip = (!ip.is_unspecified()).then_some(ip);
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> MtlsConnector {
        self.connect_timeout = timeout;
        self
    }
}

impl Connector for MtlsConnector {
    fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        // The scheme is http because tonic itself does no TLS here: the
        // connector below hands it a stream that is already encrypted.
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(self.connect_timeout)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let config = self.config.clone();
        let source_ip = self.source_ip;
        let connect = tower::service_fn(move |uri: Uri| {
            let tls = TlsConnector::from(config.borrow().clone());
            dial(tls, source_ip, uri)
        });
        Ok(endpoint.connect_with_connector_lazy(connect))
    }
}

async fn dial(
    tls: TlsConnector,
    source_ip: Option<IpAddr>,
    uri: Uri,
) -> Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, io::Error> {
    let invalid =
        |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} in {uri}"));
    let host = uri.host().ok_or_else(|| invalid("no host"))?;
    // An IPv6 literal keeps its brackets in a URI; the resolver wants it bare.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
    let tcp = match source_ip {
        Some(ip) => connect_from(ip, host, port).await?,
        None => TcpStream::connect((host, port)).await?,
    };
    // gRPC sends small frames that should not wait for Nagle's algorithm.
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(SERVER_NAME)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let stream = tls.connect(name, tcp).await?;
    Ok(TokioIo::new(stream))
}

/// Connects to `host:port` from `source` (an ephemeral port), trying each
/// address of the host in turn as [`TcpStream::connect`] does; from wherever
/// the kernel chooses where `source` cannot be used for an address.
async fn connect_from(source: IpAddr, host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        // A loopback source cannot reach another host (the kernel refuses
        // the connect), nor can one family reach the other: a node that
        // advertises nothing better than 127.0.0.1 still reaches remote managers.
        let usable = addr.is_ipv4() == source.is_ipv4()
            && (addr.ip().is_loopback() || !source.is_loopback());
        let connected = if usable {
            connect_one_from(source, addr).await
        } else {
            TcpStream::connect(addr).await
        };
        match connected {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
    }))
}

async fn connect_one_from(source: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    match socket.bind(SocketAddr::new(source, 0)) {
        Ok(()) => socket.connect(addr).await,
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
            // Not an address of this host: the node is reached through it
            // (NAT, a floating IP) but cannot send from it.
            debug!(%source, error = %e, "cannot send from the advertised address; letting the kernel choose");
            TcpStream::connect(addr).await
        }
        Err(e) => Err(e),
    }
}

/// Tuning of [`serve_with`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// How long a client has to finish its TLS handshake.
    pub handshake_timeout: Duration,
    /// At most this many handshakes run at once; further clients wait in the
    /// listen backlog, so a flood of connections cannot exhaust memory.
    pub max_concurrent_handshakes: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_concurrent_handshakes: 256,
        }
    }
}

/// Serves `routes` over mutual TLS on `listener` until `shutdown` completes.
/// Every request carries the connection's [`PeerInfo`]; read it with
/// [`api::rpc::peer`].
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (_keep, tls) = watch::channel(tls);
    serve_with(listener, tls, routes, shutdown, ServeOptions::default()).await
}

/// [`serve`] with options, and a configuration that may change: each new
/// connection uses the one current when its handshake starts.
pub async fn serve_with(
    listener: TcpListener,
    tls: watch::Receiver<Arc<ServerConfig>>,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) -> Result<(), tonic::transport::Error> {
    let (tx, rx) = mpsc::channel::<Result<TlsConn, io::Error>>(ACCEPTED_QUEUE);
    // Stops accepting (and drops the listener) when serving ends, however it ends.
    let _accept_loop = AbortOnDrop(tokio::spawn(accept_loop(listener, tls, tx, options)));
    // tonic re-exports tokio-stream, so the crate needs no dependency of its own.
    let incoming = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: watch::Receiver<Arc<ServerConfig>>,
    tx: mpsc::Sender<Result<TlsConn, io::Error>>,
    options: ServeOptions,
) {
    let handshakes = Arc::new(Semaphore::new(options.max_concurrent_handshakes.max(1)));
    loop {
        // Take a handshake slot before accepting, so waiting clients stay in
        // the kernel's backlog rather than in our memory.
        let Ok(slot) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (tcp, remote) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Usually out of file descriptors: back off briefly instead of
                // spinning, and keep serving the connections we have.
                warn!(error = %e, "accepting a cluster RPC connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(%remote, error = %e, "setting TCP_NODELAY");
        }
        let acceptor = TlsAcceptor::from(tls.borrow().clone());
        let tx = tx.clone();
        let handshake_timeout = options.handshake_timeout;
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await;
            drop(slot);
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    debug!(%remote, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let info = peer_info(&stream, remote);
            // A closed channel means the server is shutting down: drop the connection.
            let _ = tx.send(Ok(TlsConn { stream, info })).await;
        });
    }
}

/// Who is on the other end of a finished handshake. The verifier has already
/// checked the client certificate, so reading its subject is enough here.
fn peer_info(stream: &tokio_rustls::server::TlsStream<TcpStream>, remote: SocketAddr) -> PeerInfo {
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| match identity_of(leaf.as_ref()) {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(%remote, error = %e, "verified client certificate without a node identity");
                None
            }
        });
    PeerInfo {
        remote_addr: Some(remote),
        identity,
    }
}

/// A server-side TLS connection that tells tonic who the peer is.
struct TlsConn {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
