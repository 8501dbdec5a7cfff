//! Logging into the agent's log, under this plugin's name.

use crate::bindings::agent::plugin::log::{Level, log};

pub fn debug(message: &str) {
    log(Level::Debug, message)
}

pub fn info(message: &str) {
    log(Level::Info, message)
}

pub fn warn(message: &str) {
    log(Level::Warn, message)
}
