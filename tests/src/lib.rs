//! Test harness for Ferry's end-to-end tests (filled in below).
#![forbid(unsafe_code)]
