//! The test kit (`crates/testkit`) is a dev-dependency only: the `flythrough` binary holds none of
//! it.

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// None of the test kit's strings are in the binary (the moto launcher's probe, the skip log's
/// variable, the test GPU's skip message, the shared-data variable), while a string of the
/// pipeline's own is: the check can tell the two apart.
#[test]
fn the_binary_holds_none_of_the_test_kit() {
    let path = env!("CARGO_BIN_EXE_flythrough");
    let bin = std::fs::read(path).unwrap();
    for needle in [
        "import moto.server, flask",
        "FLYTHROUGH_SKIP_LOG",
        "a GPU adapter for the wgpu tests",
        "FLYTHROUGH_SHARED_DATA",
        "under CI every test must run",
    ] {
        assert!(
            !contains(&bin, needle.as_bytes()),
            "{path} contains the test kit's {needle:?}"
        );
    }
    assert!(contains(&bin, b"no space left on the device"));
}
