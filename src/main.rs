fn main() {
    std::process::exit(profilesync::cli::main());
}
