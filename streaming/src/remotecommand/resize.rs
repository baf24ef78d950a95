//! The resize stream: consecutive JSON objects `{"Width":W,"Height":H}`
//! (Go's `TerminalSize` without JSON tags), not separated by anything in
//! particular (client-go's encoder ends each with a newline).

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// Most bytes of one undecoded size object kept before giving up.
const MAX_PENDING: usize = 64 * 1024;

/// Incremental decoder of the resize byte stream.
#[derive(Debug, Default)]
pub struct ResizeDecoder {
    buf: Vec<u8>,
}

/// The resize stream carried something that is not a size.
#[derive(Debug, thiserror::Error)]
#[error("malformed resize message")]
pub struct ResizeError(#[source] Option<serde_json::Error>);

fn field(v: &serde_json::Value, upper: &str, lower: &str) -> Option<u16> {
    v.get(upper)
        .or_else(|| v.get(lower))
        .and_then(serde_json::Value::as_u64)
        .map(|n| u16::try_from(n).unwrap_or(u16::MAX))
}

impl ResizeDecoder {
    /// Feeds bytes, returning every complete size they finish.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<TerminalSize>, ResizeError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut consumed = 0;
        {
            let mut it =
                serde_json::Deserializer::from_slice(&self.buf).into_iter::<serde_json::Value>();
            loop {
                match it.next() {
                    Some(Ok(v)) => {
                        consumed = it.byte_offset();
                        let (Some(width), Some(height)) =
                            (field(&v, "Width", "width"), field(&v, "Height", "height"))
                        else {
                            return Err(ResizeError(None));
                        };
                        out.push(TerminalSize { width, height });
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => return Err(ResizeError(Some(e))),
                    None => {
                        consumed = self.buf.len();
                        break;
                    }
                }
            }
        }
        self.buf.drain(..consumed);
        if self.buf.len() > MAX_PENDING {
            return Err(ResizeError(None));
        }
        Ok(out)
    }
}

/// Reads sizes from `r` into `tx` until EOF, an error or the receiver goes.
pub(crate) async fn pump<R: AsyncRead + Unpin>(mut r: R, tx: mpsc::Sender<TerminalSize>) {
    let mut dec = ResizeDecoder::default();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match dec.push(&buf[..n]) {
            Ok(sizes) => {
                for s in sizes {
                    if tx.send(s).await.is_err() {
                        return;
                    }
                }
            }
            Err(err) => {
                tracing::debug!(%err, "ignoring the rest of the resize stream");
                return;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn split_and_joined_objects() {
        let mut d = ResizeDecoder::default();
        assert!(d.push(b"{\"Width\":80,").unwrap().is_empty());
        assert_eq!(
            d.push(b"\"Height\":24}\n{\"Width\":100,\"Height\":50}{\"wid")
                .unwrap(),
            vec![
                TerminalSize {
                    width: 80,
                    height: 24
                },
                TerminalSize {
                    width: 100,
                    height: 50
                }
            ]
        );
        assert_eq!(
            d.push(b"th\":1,\"height\":2}").unwrap(),
            vec![TerminalSize {
                width: 1,
                height: 2
            }]
        );
        assert!(d.push(b"[1,2]").is_err());
        let mut d = ResizeDecoder::default();
        assert!(d.push(b"{\"Width\":}").is_err());
    }

    #[tokio::test]
    async fn pump_stops_at_eof() {
        let (tx, mut rx) = mpsc::channel(4);
        pump(&b"{\"Width\":3,\"Height\":4}\n"[..], tx).await;
        assert_eq!(
            rx.recv().await,
            Some(TerminalSize {
                width: 3,
                height: 4
            })
        );
        assert_eq!(rx.recv().await, None);
    }
}
