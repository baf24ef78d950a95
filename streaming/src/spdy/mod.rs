//! SPDY/3.1 framing, header compression and sessions.
