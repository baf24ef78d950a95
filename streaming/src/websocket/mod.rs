//! WebSocket framing, handshake and the Kubernetes channel protocols.
