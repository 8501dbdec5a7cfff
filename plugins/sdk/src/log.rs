//! Logging into the agent's log, under this plugin's name. Natively (unit tests through
//! [`crate::testing`]) lines go to stderr instead.

pub use crate::bindings::agent::plugin::log::Level;

pub fn debug(message: &str) {
    line(Level::Debug, message)
}

pub fn info(message: &str) {
    line(Level::Info, message)
}

pub fn warn(message: &str) {
    line(Level::Warn, message)
}

/// Whether the agent keeps lines of `level` (contract 0.1.1): skip building a costly message
/// nobody reads.
pub fn enabled(level: Level) -> bool {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::agent::plugin::log::enabled(level);
    #[cfg(not(target_arch = "wasm32"))]
    return level != Level::Trace;
}

fn line(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::agent::plugin::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{level:?}: {message}");
}
