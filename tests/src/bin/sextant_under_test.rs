//! The `sextant` binary, built inside this package so end-to-end tests can
//! locate it with `env!("CARGO_BIN_EXE_sextant-under-test")` (Cargo only
//! exposes binaries of the package under test). It runs exactly the code of
//! `crates/server/src/main.rs`: `sextant_server::main()`.

fn main() -> std::process::ExitCode {
    sextant_server::main()
}
