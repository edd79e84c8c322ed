//! Print what the capture stage reads from each photo given on the command line.
fn main() {
    for a in std::env::args().skip(1) {
        let r = flythrough_capture::exif::read_exif(std::path::Path::new(&a));
        println!(
            "{a}: present={} {:?} warnings={:?}",
            r.present, r.fields, r.warnings
        );
    }
}
