//! Locating the shared real-photo test data (`../shared/data` beside the checkout).
//!
//! Tests that read it call [`shared_data`] and return early when it is `None`: a user's machine does
//! not have it, and the test then prints one line saying it skipped.

use std::path::PathBuf;

/// `../shared/data/<rel>` (or `$FLYTHROUGH_SHARED_DATA/<rel>`) if it exists; otherwise prints
/// `skipped: ... not found` and returns `None`.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let base = std::env::var_os("FLYTHROUGH_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // crates/core -> workspace root -> ../shared/data
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
        });
    let p = base.join(rel);
    if p.exists() {
        Some(p)
    } else {
        println!(
            "skipped: shared test data {rel} not found at {}",
            p.display()
        );
        None
    }
}
