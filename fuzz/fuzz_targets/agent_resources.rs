//! The agent's App Mesh resources, YAML or JSON: parse, build the model, validate, compile a table
//! for every identity, and compile each table as a proxy would.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let json = first & 1 == 1;
    let Ok(resources) = ferry_agent::model::parse_text("fuzz", text, json) else {
        return;
    };
    let Ok(model) = ferry_agent::Model::build(resources) else {
        return;
    };
    if ferry_agent::validate::validate(&model).is_err() {
        return;
    }
    for id in model.identities() {
        let Ok(identity) = ferry_agent::Identity::parse(&id) else {
            panic!("the model's own identity {id:?} does not parse");
        };
        if let Ok(compiled) =
            ferry_agent::compile(&model, &identity, ferry_agent::Options::default())
        {
            // What the agent sends, a proxy must accept or refuse cleanly.
            ferry_fuzz::compile(compiled.table);
        }
    }
});
