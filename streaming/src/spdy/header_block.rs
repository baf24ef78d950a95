//! The SPDY/3 name/value header block and its zlib compression contexts.
