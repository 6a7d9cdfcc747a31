//! Issue 20, "exact values, exact runs": one regression test per item, each against the
//! emulator where a target is involved. What reaches the target is what the export says, or
//! the run says why not.

use crate::support::{Dir, pid, profiles_config, run_args};

/// Item 6: a header that repeats a column a mapping uses is a config error naming both
/// columns; one that repeats a column no mapping uses is not.
#[test]
fn a_repeated_header_name_a_mapping_uses_is_a_config_error() {
    let dir = Dir::new();
    dir.write(
        "c.toml",
        profiles_config("EmailAddress = \"email\"\nFirstName = \"first\""),
    );
    dir.write(
        "in.csv",
        format!(
            "crm_id,profile_id,email,first,email,note,note\nC1,{},a@example.com,Ana,b@example.com,x,y\n",
            pid(1)
        ),
    );
    dir.run(&run_args("check", "c.toml", "in.csv", "l.jsonl", &[]))
        .assert_exit(2)
        .assert_says("`email` is columns 3 and 5");
    assert!(!dir.path("l.jsonl").exists(), "nothing was processed");

    dir.write(
        "ok.csv",
        format!(
            "crm_id,profile_id,email,first,note,note\nC1,{},a@example.com,Ana,x,y\n",
            pid(1)
        ),
    );
    dir.run(&run_args("check", "c.toml", "ok.csv", "ok.jsonl", &[]))
        .assert_exit(0);
}
