//! The `profilesync` binary: everything lives in the library; see `cli::main`.

fn main() {
    std::process::exit(profilesync::cli::main());
}
