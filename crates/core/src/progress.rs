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

/// A duration for people: `45 s`, `12 min`, `3.5 h`, `2.1 days`.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 90.0 * 60.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 48.0 * 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86400.0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_in_the_right_unit() {
        use super::human_duration as h;
        assert_eq!(h(12.4), "12 s");
        assert_eq!(h(67.0 * 60.0), "67 min");
        assert_eq!(h(9.0 * 3600.0), "9.0 h");
        assert_eq!(h(3.0 * 86400.0), "3.0 days");
    }
}
