//! Host-side bindings of the plugin world, generated from `wit/plugin.wit`. The export is
//! called asynchronously, so that a call waiting in a host call (a WASI sleep, a poll) is
//! stopped at its deadline like one running wasm code.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
    exports: { default: async },
});
