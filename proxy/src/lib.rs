//! ferry-proxy
#![forbid(unsafe_code)]
