//! Single-use, short-lived tokens for streaming URLs: 256 random bits,
//! taken out of the cache by the first request that presents them.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::requests::StreamRequest;
use super::StreamingError;

#[derive(Debug)]
struct Entry {
    expires: Instant,
    req: StreamRequest,
}

/// Pending streaming requests by token.
#[derive(Debug)]
pub struct RequestCache {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<String, Entry>>,
}

/// 32 bytes from the kernel's CSPRNG, hex-encoded (URL-safe).
fn new_token() -> Result<String, StreamingError> {
    let mut buf = [0u8; 32];
    let path = std::path::Path::new("/dev/urandom");
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(crate::pods::PodError::io("reading", path))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

impl RequestCache {
    /// A cache whose tokens expire after `ttl`, holding at most `max`.
    pub fn new(ttl: Duration, max: usize) -> RequestCache {
        RequestCache {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `req` and returns its new token.
    pub fn insert(&self, req: StreamRequest) -> Result<String, StreamingError> {
        let token = new_token()?;
        let now = Instant::now();
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.retain(|_, e| e.expires > now);
        if entries.len() >= self.max {
            return Err(StreamingError::TooManyRequests);
        }
        entries.insert(
            token.clone(),
            Entry {
                expires: now + self.ttl,
                req,
            },
        );
        Ok(token)
    }

    /// Takes the request of `token` (once; `None` when unknown or expired).
    pub fn take(&self, token: &str) -> Option<StreamRequest> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = entries.remove(token)?;
        (e.expires > Instant::now()).then_some(e.req)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_proto::cri;

    fn pf() -> StreamRequest {
        StreamRequest::PortForward(cri::PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![80],
        })
    }

    #[test]
    fn tokens_are_single_use_unique_and_expire() {
        let c = RequestCache::new(Duration::from_secs(60), 10);
        let a = c.insert(pf()).unwrap();
        let b = c.insert(pf()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(c.take(&a).is_some());
        assert!(c.take(&a).is_none());
        assert!(c.take("nope").is_none());
        let short = RequestCache::new(Duration::from_millis(1), 10);
        let t = short.insert(pf()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.take(&t).is_none());
        assert!(c.take(&b).is_some());
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = RequestCache::new(Duration::from_secs(60), 2);
        c.insert(pf()).unwrap();
        c.insert(pf()).unwrap();
        assert!(matches!(
            c.insert(pf()),
            Err(StreamingError::TooManyRequests)
        ));
        // Expired entries make room.
        let s = RequestCache::new(Duration::from_millis(1), 1);
        s.insert(pf()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.insert(pf()).is_ok());
    }
}
