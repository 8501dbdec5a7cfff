//! The stock plugin and template, built into the binary.

use serde_json::Value;

/// `plugins/default` compiled to a component by `build.rs`.
pub const STOCK_PLUGIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/default.wasm"));
/// Its name in logs and `--plugin-config default.KEY=VALUE`.
pub const STOCK_PLUGIN_NAME: &str = "default";
/// prefect-kubernetes' stock base job template (what a new Kubernetes work pool gets).
const STOCK_TEMPLATE: &str = include_str!("../../plugins/default/src/stock_template.json");

pub fn stock_template() -> Value {
    serde_json::from_str(STOCK_TEMPLATE).expect("the embedded stock template is JSON")
}
