//! A routing table as the agent streams it: protobuf bytes, decoded by prost and compiled.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = ferry_api::v1::RoutingTable::decode(data) {
        ferry_fuzz::compile(table);
    }
});
