//! The connection under a WebSocket: a kernel socket that any task can
//! write to without waiting (`try_write_vectored` takes `&self`), so an
//! emitting task writes through while the connection's own task reads.

use std::io::{self, IoSlice};

use tokio::net::{TcpStream, UnixStream};

use crate::stats;

/// A WebSocket's socket.
#[derive(Debug)]
pub enum Wire {
    Tcp(TcpStream),
    /// One end of a socket pair that a bridge task copies to and from an
    /// I/O object that is not a kernel socket (TLS, a test's duplex...).
    Unix(UnixStream),
}

impl Wire {
    #[inline]
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        stats::WS_WRITE_CALLS.inc();
        match self {
            Wire::Tcp(s) => s.try_write_vectored(bufs),
            Wire::Unix(s) => s.try_write_vectored(bufs),
        }
    }

    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Tcp(s) => s.try_read(buf),
            Wire::Unix(s) => s.try_read(buf),
        }
    }

    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Wire::Tcp(s) => s.readable().await,
            Wire::Unix(s) => s.readable().await,
        }
    }

    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Wire::Tcp(s) => s.writable().await,
            Wire::Unix(s) => s.writable().await,
        }
    }

    /// Writes all of `data`, waiting for the socket as needed (handshake
    /// and closing frames, written by the connection's task only).
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            self.writable().await?;
            match self.try_write_vectored(&[IoSlice::new(data)]) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
