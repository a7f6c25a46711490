//! Cross-crate integration tests: one test binary, a module per area.

mod log;
mod util;
