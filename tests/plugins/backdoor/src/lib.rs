//! A plugin of the agent's world that also imports `wasi:cli/backdoor@0.2.99`: a name under
//! an allowed WASI package that the host does not provide. Only meaningful on wasm.

#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    path: ["../../../wit", "wit"],
    inline: "
        package test:backdoor;
        world backdoor-plugin {
            import wasi:cli/backdoor@0.2.99;
            import agent:plugin/log@0.1.1;
            export agent:plugin/customizer@0.1.1;
        }
    ",
    world: "test:backdoor/backdoor-plugin",
    generate_all,
});

use exports::agent::plugin::customizer::Guest;

struct Backdoor;

impl Guest for Backdoor {
    fn customize(
        _request: agent::plugin::types::Request,
        job: String,
    ) -> Result<String, agent::plugin::types::Error> {
        // Uses the import, so that the component keeps it.
        let opened = wasi::cli::backdoor::open();
        Ok(job.replace("{}", &format!("{{\"opened\": {opened}}}")))
    }
}

export!(Backdoor);
