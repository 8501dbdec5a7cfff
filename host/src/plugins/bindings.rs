//! Host-side bindings of the plugin world, generated from `wit/plugin.wit`.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
});
