//! A real component that implements some other world than the agent's. Only meaningful
//! on wasm: natively the crate is empty (the component export symbols would not link).

#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({ world: "greeter", path: "wit" });

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello {name}")
    }
}

export!(Greeter);
