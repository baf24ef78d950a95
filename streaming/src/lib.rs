//! The streaming protocols a kubelet, `kubectl` and `crictl` speak to a CRI
//! runtime's streaming server: SPDY/3.1 and WebSocket transports, and the
//! remote-command (exec/attach) and port-forward protocols on top of them.
//! Server and client sides both live here so that berthd and the end-to-end
//! tests share one implementation of the wire formats.

pub mod client;
pub mod idle;
pub mod portforward;
pub mod remotecommand;
pub mod spdy;
pub mod websocket;
