//! Cross-crate integration tests: one test binary, a module per area.

mod eventql;
mod interop;
mod log;
mod server;
mod streaming;
mod util;
