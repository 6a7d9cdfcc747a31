//! The `profilesync` binary: everything lives in the library; see `cli::main`.

fn main() {
    few_malloc_arenas();
    std::process::exit(profilesync::cli::main());
}

/// glibc gives each thread that allocates an arena of its own, up to eight per core, and
/// returns little of an arena's freed memory to the system: over a long run the resident size
/// then creeps up while the heap itself stays flat (a million-row first night: 52.5 MB peak
/// RSS against 41.3 MB with two arenas, for a heap of 18 MB either way; `bench/memory.sh`).
/// Two arenas serve a run's few busy threads. `MALLOC_ARENA_MAX` in the environment still
/// decides when set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn few_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists; `mallopt`
        // only sets a tunable of the allocator.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Other allocators keep their own counsel.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn few_malloc_arenas() {}
