//! A routing table as a YAML file: decode (with the field-path → line lookup of its errors) and
//! compile. Neither may panic, hang or blow up on any input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ferry_api::decode_yaml(text, "fuzz.yaml") {
        Ok(table) => {
            // What decodes must encode back, and what the proxy shows on /config_dump must decode.
            let again = ferry_api::encode_yaml(&table);
            assert!(
                ferry_api::decode_yaml(&again, "again.yaml").is_ok(),
                "{again}"
            );
            ferry_fuzz::compile(table);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
