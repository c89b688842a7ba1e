//! The `sextant` binary.

fn main() {
    eprintln!("sextant: the server is not built yet");
    std::process::exit(2);
}
