//! Ends a connection on which nothing moved for a while, as the kubelet's
//! streaming server does (its idle timeout defaults to 4 hours): a session
//! a client forgot must not hold a process and its fds forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// An `AsyncRead + AsyncWrite` whose reads fail with `TimedOut` once no
/// byte has moved either way for `timeout`. The protocol on top sees a
/// broken connection and ends its session the usual way.
#[derive(Debug)]
pub struct IdleTimeout<IO> {
    inner: IO,
    timeout: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<IO> IdleTimeout<IO> {
    /// Wraps `inner`; the clock starts now.
    pub fn new(inner: IO, timeout: Duration) -> Self {
        let now = Instant::now();
        IdleTimeout {
            inner,
            timeout,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Whether the connection has been idle too long; re-arms the timer
    /// for the new deadline otherwise.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let deadline = self.last + self.timeout;
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) if Instant::now() >= self.last + self.timeout => return true,
                // Activity moved the deadline while the timer ran: look again.
                Poll::Ready(()) => continue,
                Poll::Pending => return false,
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for IdleTimeout<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("streaming connection idle for {:?}", this.timeout),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &r {
            if *n > 0 {
                this.touch();
            }
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            if *n > 0 {
                this.touch();
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn reads_fail_only_after_the_timeout_without_traffic() {
        let (a, mut b) = duplex(1024);
        let mut idle = IdleTimeout::new(a, Duration::from_secs(10));
        let mut buf = [0u8; 16];
        // Traffic every 6 s keeps it alive well past 10 s.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            b.write_all(b"x").await.unwrap();
            assert_eq!(idle.read(&mut buf).await.unwrap(), 1);
        }
        // Our own writes count as traffic too.
        tokio::time::sleep(Duration::from_secs(6)).await;
        idle.write_all(b"y").await.unwrap();
        let started = Instant::now();
        let err = idle.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_during_a_pending_read_moves_the_deadline() {
        let (a, _b) = duplex(1024);
        let idle = IdleTimeout::new(a, Duration::from_secs(10));
        let (mut r, mut w) = tokio::io::split(idle);
        let started = Instant::now();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 4];
            r.read(&mut buf).await.unwrap_err().kind()
        });
        tokio::time::sleep(Duration::from_secs(8)).await;
        w.write_all(b"z").await.unwrap();
        assert_eq!(reader.await.unwrap(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(18));
    }
}
