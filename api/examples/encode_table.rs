//! Converts a routing-table file (YAML, or JSON when the name ends in .json) to another form:
//! `cargo run -p ferry-api --example encode_table -- FILE json|yaml|proto > OUT`.
//! The fuzz seeds (fuzz/seeds/) are made with it.
use std::io::Write;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(to)) = (args.next(), args.next()) else {
        return Err("usage: encode_table FILE json|yaml|proto".into());
    };
    let text = std::fs::read_to_string(&path)?;
    let format = ferry_api::Format::from_path(std::path::Path::new(&path));
    let table = ferry_api::decode(&text, format, &path)?;
    let out = match to.as_str() {
        "json" => ferry_api::encode_json(&table).into_bytes(),
        "yaml" => ferry_api::encode_yaml(&table).into_bytes(),
        "proto" => table.encode_to_vec(),
        other => return Err(format!("unknown output {other:?}: json, yaml or proto").into()),
    };
    std::io::stdout().write_all(&out)?;
    Ok(())
}
