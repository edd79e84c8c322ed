//! Progress bars with one look across the pipeline. Hidden when stderr is not a terminal or when
//! `FLYTHROUGH_QUIET` is set (`--quiet`).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items with a message, e.g. `bar(40, "privacy: scanning photos")`.
pub fn bar(len: u64, msg: &str) -> ProgressBar {
    if std::env::var_os("FLYTHROUGH_QUIET").is_some() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:32} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}
