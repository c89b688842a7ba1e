//! The `sextant` binary: see `sextant --help`.

fn main() -> std::process::ExitCode {
    sextant_server::main()
}
