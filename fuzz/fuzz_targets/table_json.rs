//! A routing table as a JSON file: decode and compile.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ferry_api::decode_json(text, "fuzz.json") {
        Ok(table) => {
            let again = ferry_api::encode_json(&table);
            assert!(
                ferry_api::decode_json(&again, "again.json").is_ok(),
                "{again}"
            );
            ferry_fuzz::compile(table);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
