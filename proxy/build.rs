//! With `FERRY_SYMBOL_ORDERING=1`, release builds of `ferry-proxy` lay out first the functions
//! that run from start to serving requests (`hot-symbols.txt`, written by
//! `scripts/hot-symbols.sh`): clustered, they fill ~2 MB of pages instead of being spread over
//! all ~10 MB of `.text`, and since the kernel maps code 64 KB around each first touch, this
//! takes the idle proxy from 10.8 to 7.0 MB of RSS. It is opt-in because the same layout cost
//! ~7% of HTTP/1.1 req/s at saturation in the load harness. Symbols the list names but the
//! build lacks (a stale list) are skipped: only the layout is affected.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=hot-symbols.txt");
    println!("cargo:rerun-if-env-changed=FERRY_SYMBOL_ORDERING");
    let wanted = std::env::var("FERRY_SYMBOL_ORDERING").is_ok_and(|v| v == "1");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    // The option is lld's, rustc's default linker on x86_64 Linux.
    if !wanted || !release || !linux {
        return;
    }
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let list = PathBuf::from(dir).join("hot-symbols.txt");
    if list.exists() {
        println!(
            "cargo:rustc-link-arg-bin=ferry-proxy=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bin=ferry-proxy=-Wl,--no-warn-symbol-ordering");
    }
}
