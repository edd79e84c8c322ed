//! The venue config: one TOML file per venue.
//!
//! Every section is `deny_unknown_fields` with a default for every key, and every key is documented in
//! the section's `DOCS` table, which `flythrough config --defaults` prints as comments (a test checks
//! that no key is undocumented). Each stage owns the file of its section.

mod bake;
mod capture;
mod device;
pub mod preflight;
mod privacy;
mod render;
mod sfm;
mod train;
mod venue;

pub use bake::BakeConfig;
pub use capture::{BrokenPhotoPolicy, CaptureConfig};
pub use device::Device;
pub use preflight::{Originals, preflight, preflight_in};
pub use privacy::{KeepDetection, PrivacyConfig, RegionOverride};
pub use render::{
    Appearance, Encoder, ExposureMode, Heading, PreviewSource, RenderConfig, RenderSource,
    UnregisteredKeyframes,
};
pub use sfm::{SfmConfig, UpAxis};
pub use train::{Backbone, TrainConfig};
pub use venue::{Calibration, Venue};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `Display` of a config choice: its spelling in the config file (the serde name).
macro_rules! display_as_config {
    ($($t:ty),* $(,)?) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match serde_json::to_value(self) {
                    Ok(serde_json::Value::String(s)) => f.write_str(&s),
                    _ => write!(f, "{self:?}"),
                }
            }
        }
    )*};
}

display_as_config!(
    BrokenPhotoPolicy,
    Heading,
    ExposureMode,
    Encoder,
    Appearance,
    PreviewSource,
    RenderSource,
    UnregisteredKeyframes,
    UpAxis,
    Backbone,
    Device,
);

/// The URL schemes a run folder or a photo folder may use instead of a local path (object storage
/// through `crates/store`).
pub const URL_SCHEMES: [&str; 6] = ["s3", "gs", "az", "abfs", "abfss", "file"];

/// The scheme of `s`, lower-cased, when `s` is written as a URL (`scheme://…`; RFC 3986 scheme
/// characters), whether or not it is supported.
pub fn url_scheme(s: &str) -> Option<String> {
    let (scheme, _) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then(|| scheme.to_ascii_lowercase())
}

/// Whether `s` is a URL of a supported scheme ([`URL_SCHEMES`], any case).
pub fn is_url(s: &str) -> bool {
    url_scheme(s).is_some_and(|sc| URL_SCHEMES.contains(&sc.as_str()))
}

/// A local path, or a URL of a supported scheme; a URL of any other scheme (`ftp://…`) is an error
/// naming `what` and the supported schemes, never a local folder called `ftp:`.
pub fn check_location(what: &str, s: &str) -> Result<(), String> {
    match url_scheme(s) {
        Some(sc) if !URL_SCHEMES.contains(&sc.as_str()) => Err(format!(
            "{what} = {s:?}: unsupported URL scheme `{sc}://`; a local path or one of {}",
            URL_SCHEMES.map(|s| format!("{s}://")).join(", ")
        )),
        _ => Ok(()),
    }
}

/// Documentation of one key: `(key, comment)`.
pub type KeyDoc = (&'static str, &'static str);

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub venue: Venue,
    #[serde(default)]
    pub calibration: Vec<Calibration>,
    #[serde(default)]
    pub capture: CaptureConfig,
    #[serde(default)]
    pub privacy: PrivacyConfig,
    #[serde(default)]
    pub sfm: SfmConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub bake: BakeConfig,
    #[serde(default)]
    pub render: RenderConfig,
}

/// A config error: the file, and what is wrong (with the line and key where known).
#[derive(Debug, thiserror::Error)]
#[error("{}: {msg}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub msg: String,
}

/// A loaded and validated config with the paths it resolves.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The config file.
    pub path: PathBuf,
    /// Folder of the config file; relative paths in the config are relative to it.
    pub dir: PathBuf,
    /// The photo folder, resolved.
    pub photos_dir: PathBuf,
}

impl Config {
    /// Parse TOML text (no file-system checks).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            msg: e.to_string().trim_end().to_string(),
        })?;
        cfg.check_values().map_err(|msg| ConfigError {
            path: path.to_path_buf(),
            msg,
        })?;
        Ok(cfg)
    }

    /// Read, parse and validate a config file (value ranges) and resolve its paths. Nothing else is
    /// looked at: the photo folder and the names in it are checked by [`preflight`], which also
    /// knows what to do when the original photos are gone.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            msg: format!("cannot read the config: {e}"),
        })?;
        let config = Config::parse(&text, path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let photos_dir = dir.join(&config.venue.photos);
        Ok(LoadedConfig {
            config,
            path: path.to_path_buf(),
            dir,
            photos_dir,
        })
    }

    /// Range checks of every section: `Err("[section] key = value: what is allowed")`.
    pub fn check_values(&self) -> Result<(), String> {
        self.venue.check()?;
        for (i, c) in self.calibration.iter().enumerate() {
            c.check()
                .map_err(|e| format!("[[calibration]] #{}: {e}", i + 1))?;
        }
        self.capture.check().map_err(|e| format!("[capture] {e}"))?;
        self.privacy.check().map_err(|e| format!("[privacy] {e}"))?;
        self.sfm.check().map_err(|e| format!("[sfm] {e}"))?;
        self.train.check().map_err(|e| format!("[train] {e}"))?;
        self.bake.check().map_err(|e| format!("[bake] {e}"))?;
        self.render.check().map_err(|e| format!("[render] {e}"))?;
        Ok(())
    }

    /// The full default config with every key commented: what `flythrough config --defaults` prints.
    pub fn defaults_documented() -> String {
        let example = Config {
            venue: Venue {
                name: "my-venue".into(),
                photos: "photos".into(),
                keyframes: vec!["IMG_0001.JPG".into(), "IMG_0040.JPG".into()],
            },
            calibration: vec![Calibration {
                a: "IMG_0001.JPG".into(),
                b: "IMG_0005.JPG".into(),
                distance_m: 3.0,
            }],
            ..Default::default()
        };
        example.documented(
            "# flythrough venue config. Paths are relative to this file. Every key below shows its default.\n\
             # Unknown keys are errors.\n",
        )
    }

    /// This config as TOML with every key of every section present and commented (the `DOCS`
    /// tables), after `header` (comment lines). Without calibration pairs, a commented-out example
    /// pair says how to take one.
    pub fn documented(&self, header: &str) -> String {
        let mut out = String::new();
        out.push_str(header);
        out.push('\n');
        section(
            &mut out,
            "venue",
            &self.venue,
            venue::DOCS,
            "The venue: its name, its photos and its flight path.",
        );
        out.push_str("# Pairs of photos taken a known distance apart (camera centre to camera centre), for metric scale.\n");
        out.push_str("# Repeat the table for more pairs; with several the median scale is used. None: unit scale.\n");
        if self.calibration.is_empty() {
            out.push_str(CALIBRATION_HOWTO);
            let mut example = String::new();
            let name = |i: usize| {
                self.venue
                    .keyframes
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("IMG_000{}.JPG", i + 1))
            };
            section(
                &mut example,
                "[calibration]",
                &Calibration {
                    a: name(0),
                    b: name(1),
                    distance_m: 2.0,
                },
                venue::CALIBRATION_DOCS,
                "",
            );
            for l in example.lines() {
                if l.is_empty() || l.starts_with('#') {
                    out.push_str(l);
                } else {
                    out.push_str("# ");
                    out.push_str(l);
                }
                out.push('\n');
            }
        }
        for c in &self.calibration {
            section(&mut out, "[calibration]", c, venue::CALIBRATION_DOCS, "");
        }
        section(
            &mut out,
            "capture",
            &self.capture,
            capture::DOCS,
            "Stage 1: ingest photos, read EXIF, quality checks.",
        );
        section_with(
            &mut out,
            "privacy",
            &self.privacy,
            privacy::DOCS,
            "Stage 2: find and blur faces before anything else sees a photo.",
            &[machine_key(
                "memory_budget_gb",
                &self.privacy.memory_budget_gb,
            )],
        );
        section(
            &mut out,
            "sfm",
            &self.sfm,
            sfm::DOCS,
            "Stage 3: structure from motion (camera poses, intrinsics, metric scale).",
        );
        section_with(
            &mut out,
            "train",
            &self.train,
            train::DOCS,
            "Stage 4: mip-NeRF 360 training with GLO appearance and exposure conditioning.",
            &[machine_key("device", &self.train.device)],
        );
        section(
            &mut out,
            "bake",
            &self.bake,
            bake::DOCS,
            "Stage 5: the NeRF baked into a sparse 8-bit grid that renders in real time.",
        );
        section_with(
            &mut out,
            "render",
            &self.render,
            render::DOCS,
            "Stage 6: the 360° fly-through video, preview and viewer.",
            &[
                machine_key("device", &self.render.device),
                machine_key("max_path_frames", &self.render.max_path_frames),
            ],
        );
        out
    }
}

/// How to take a calibration pair (printed above a commented-out example pair).
const CALIBRATION_HOWTO: &str = "\
# No pair yet: the venue is reconstructed at an arbitrary scale, and speed_m_per_s is then not in
# metres per second. To add one: stand somewhere with a clear view, take a photo; move the camera a
# measured distance (2-5 m with a tape measure, same height, same direction of view), take a second
# photo; put both in the photo folder and list them below with the distance, without the leading
# '# '. Two or three pairs in different parts of the venue check each other.
";

/// Print one section: `[name]`, then each key with its doc comment; keys that are unset by default
/// (optional values) are printed commented out.
fn section<T: Serialize>(out: &mut String, name: &str, value: &T, docs: &[KeyDoc], title: &str) {
    section_with(out, name, value, docs, title, &[]);
}

/// A machine key of a section as `(key, TOML value)`: not serialised with its section (it is in no
/// stage's hash), printed beside it.
fn machine_key<V: Serialize>(key: &'static str, v: &V) -> (&'static str, String) {
    let value = toml::Value::try_from(v)
        .map(|v| v.to_string())
        .unwrap_or_default();
    (key, value)
}

/// [`section`] with the section's machine keys ([`crate::Machine`]), printed after its plain keys.
fn section_with<T: Serialize>(
    out: &mut String,
    name: &str,
    value: &T,
    docs: &[KeyDoc],
    title: &str,
    machine: &[(&'static str, String)],
) {
    if !title.is_empty() {
        out.push_str(&format!("# {title}\n"));
    }
    out.push_str(&format!("[{name}]\n"));
    let body = toml::to_string(value).unwrap_or_default();
    let mut printed = Vec::new();
    let mut in_subtable = false;
    let mut machine_pending = true;
    let print_machine = |out: &mut String, printed: &mut Vec<String>| {
        for (key, v) in machine {
            if let Some((_, doc)) = docs.iter().find(|(k, _)| k == key) {
                for l in doc.lines() {
                    out.push_str(&format!("# {l}\n"));
                }
            }
            out.push_str(&format!("{key} = {v}\n"));
            printed.push(key.to_string());
        }
    };
    for line in body.lines() {
        if line.starts_with('[') {
            if machine_pending {
                print_machine(out, &mut printed);
                machine_pending = false;
            }
            in_subtable = true;
            let sub = line.trim_matches(|c| c == '[' || c == ']');
            out.push_str(&format!(
                "[{}.{}]\n",
                name.trim_matches(|c| c == '[' || c == ']'),
                sub
            ));
            continue;
        }
        if let Some((key, _)) = line.split_once(" = ")
            && !in_subtable
        {
            printed.push(key.to_string());
            if let Some((_, doc)) = docs.iter().find(|(k, _)| *k == key) {
                for l in doc.lines() {
                    out.push_str(&format!("# {l}\n"));
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if machine_pending {
        print_machine(out, &mut printed);
    }
    for (key, doc) in docs {
        if !printed.iter().any(|p| p == key) {
            for l in doc.lines() {
                out.push_str(&format!("# {l}\n"));
            }
            out.push_str(&format!("# {key} = (unset)\n"));
        }
    }
    out.push('\n');
}

/// Check helper for sections: `Err("key = value: must be …")` unless `ok`.
pub(crate) fn ensure(
    ok: bool,
    key: &str,
    value: impl std::fmt::Debug,
    allowed: &str,
) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{key} = {value:?}: {allowed}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error of parsing `text` as `v.toml`.
    fn parse_err(text: &str) -> String {
        Config::parse(text, Path::new("v.toml"))
            .unwrap_err()
            .to_string()
    }

    /// `text` is refused with an error that says each of `needles`.
    fn assert_refused(text: &str, needles: &[&str]) {
        let e = parse_err(text);
        assert!(needles.iter().all(|n| e.contains(n)), "{e}");
    }

    /// Every key a section serialises has a doc line, so `config --defaults` explains everything.
    #[test]
    fn every_key_is_documented() {
        fn keys<T: Serialize>(v: &T) -> Vec<String> {
            match serde_json::to_value(v).unwrap() {
                serde_json::Value::Object(m) => m.keys().cloned().collect(),
                _ => vec![],
            }
        }
        let c = Config::default();
        let checks: Vec<(Vec<String>, &[KeyDoc], &str)> = vec![
            (keys(&c.venue), venue::DOCS, "venue"),
            (
                keys(&Calibration::default()),
                venue::CALIBRATION_DOCS,
                "calibration",
            ),
            (keys(&c.capture), capture::DOCS, "capture"),
            (keys(&c.privacy), privacy::DOCS, "privacy"),
            (keys(&c.sfm), sfm::DOCS, "sfm"),
            (keys(&c.train), train::DOCS, "train"),
            (keys(&c.bake), bake::DOCS, "bake"),
            (keys(&c.render), render::DOCS, "render"),
        ];
        for (ks, docs, name) in checks {
            for k in ks {
                assert!(
                    docs.iter().any(|(d, _)| *d == k),
                    "[{name}] {k} has no doc entry"
                );
            }
        }
    }

    /// The printed defaults parse back to the defaults (apart from the example venue).
    #[test]
    fn documented_defaults_parse_back() {
        let text = Config::defaults_documented();
        let cfg = Config::parse(&text, Path::new("defaults.toml")).unwrap();
        assert_eq!(cfg.capture, CaptureConfig::default());
        assert_eq!(cfg.privacy, PrivacyConfig::default());
        assert_eq!(cfg.sfm, SfmConfig::default());
        assert_eq!(cfg.train, TrainConfig::default());
        assert_eq!(cfg.render, RenderConfig::default());
        assert_eq!(cfg.calibration.len(), 1);
        assert_eq!(cfg.calibration[0].distance_m, 3.0);
    }

    /// Machine settings are never serialised with their sections (so no stage's inputs can hash
    /// them), yet the documented config prints them and they parse back.
    #[test]
    fn machine_settings_are_printed_but_never_serialised() {
        let mut c = Config::default();
        c.venue.name = "v".into();
        c.venue.photos = "p".into();
        c.privacy.memory_budget_gb = 3.0;
        c.train.device = Device::Gpu;
        c.render.device = Device::Cpu;
        c.render.max_path_frames = 5;
        let json = |v: serde_json::Value| v.as_object().unwrap().clone();
        let privacy = json(serde_json::to_value(&c.privacy).unwrap());
        let train = json(serde_json::to_value(&c.train).unwrap());
        let render = json(serde_json::to_value(&c.render).unwrap());
        assert!(!privacy.contains_key("memory_budget_gb"));
        assert!(!train.contains_key("device"));
        assert!(!render.contains_key("device") && !render.contains_key("max_path_frames"));
        assert_eq!(
            serde_json::to_value(&c.train).unwrap(),
            serde_json::to_value(TrainConfig::default()).unwrap()
        );
        let text = c.documented("");
        assert!(text.contains("memory_budget_gb = 3.0"), "{text}");
        let back = Config::parse(&text, Path::new("v.toml")).unwrap();
        assert_eq!(crate::Machine::of(&back), crate::Machine::of(&c));
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "[venue]\nname = \"x\"\nphotos = \"p\"\n\n[sfm]\nmax_featurs = 3\n";
        let e = Config::parse(text, Path::new("venue.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("venue.toml:"), "{e}");
        assert!(e.contains("line 6") && e.contains("max_featurs"), "{e}");
    }

    #[test]
    fn bad_value_names_section_and_key() {
        let text = "[venue]\nname = \"x\"\nphotos = \"p\"\n[[calibration]]\na = \"1.jpg\"\nb = \"2.jpg\"\ndistance_m = -1\n";
        let e = parse_err(text);
        assert!(
            e.contains("[[calibration]] #1") && e.contains("distance_m"),
            "{e}"
        );
    }

    /// URL schemes are matched in any case; an unsupported one is an error, not a local folder.
    #[test]
    fn locations_are_paths_or_supported_urls() {
        assert!(is_url("s3://b/x") && is_url("S3://b/x") && is_url("File:///tmp/x"));
        assert!(!is_url("runs/cafe") && !is_url("ftp://host/x") && !is_url("C:\\runs"));
        assert_eq!(url_scheme("ftp://host/x").as_deref(), Some("ftp"));
        assert_eq!(url_scheme("a b://x"), None);
        assert!(check_location("--out", "runs/cafe").is_ok());
        assert!(check_location("--out", "GS://bucket/runs").is_ok());
        let e = check_location("--out", "ftp://host/x").unwrap_err();
        assert!(
            e.contains("`ftp://`") && e.contains("s3://") && e.contains("--out"),
            "{e}"
        );
        assert_refused(
            "[venue]\nname = \"x\"\nphotos = \"http://example.invalid/p\"\n",
            &["[venue] photos", "`http://`"],
        );
    }

    /// A frame size no machine can render is refused before any stage (before, 100000 x 50000
    /// passed `config --check` and ran for hours); a venue name with a line break too.
    #[test]
    fn frame_sizes_are_bounded_and_names_have_no_control_characters() {
        let mut r = RenderConfig {
            width: 100_000,
            height: 50_000,
            ..Default::default()
        };
        let e = r.check().unwrap_err();
        assert!(e.contains("width") && e.contains("8192 x 4096"), "{e}");
        (r.width, r.height) = (8192, 4096);
        assert!(r.check().is_ok());
        (r.preview_width, r.preview_height) = (20_000, 10_000);
        assert!(r.check().unwrap_err().contains("preview_width"));
        assert_refused(
            "[venue]\nname = \"a\\nb\"\nphotos = \"p\"\n",
            &["[venue] name", "control characters"],
        );
    }

    /// Issue 20, defect 7: the pre-run checks estimate a frame's memory and refuse what the machine
    /// cannot hold, naming the keys to lower; the time estimate scales with pixels and frames.
    #[test]
    fn render_memory_is_checked_and_time_estimated() {
        let mut r = RenderConfig {
            width: 8192,
            height: 4096,
            ..Default::default()
        };
        let need = r.peak_bytes((8192, 4096));
        // 33.6 + 0.23 megapixels at 24 B each, plus the renderer's base.
        assert!((1_300_000_000..1_400_000_000).contains(&need), "{need}");
        let e = r.check_memory(1 << 30).unwrap_err();
        assert!(
            e.contains("8192x4096")
                && e.contains("[render] width and height")
                && e.contains("1.0 GB available"),
            "{e}"
        );
        assert!(r.check_memory(need).is_ok());
        (r.width, r.height) = (0, 0);
        assert!(
            r.check_memory(1 << 30).is_ok(),
            "the automatic CPU size fits 1 GB"
        );
        // 1024x512 + 640x360 at 30 fps for 222 frames on 2 threads: about 67 minutes, as measured.
        let secs = r.nerf_cpu_seconds((1024, 512), 222, 2);
        assert!((3700.0..4300.0).contains(&secs), "{secs}");
        assert_eq!(r.nerf_cpu_seconds((1024, 512), 444, 4), secs);
        // A reprojected preview costs no model time (the demo: 48 frames of 256x128 took 38.3 s).
        r.preview_source = PreviewSource::Reproject;
        let demo = r.nerf_cpu_seconds((256, 128), 48, 2);
        assert!((30.0..50.0).contains(&demo), "{demo}");
    }

    /// The automatic 360° size follows the device.
    #[test]
    fn automatic_frame_size_follows_the_device() {
        let mut a = Config::default();
        assert_eq!(a.render.frame_size(false), (1024, 512));
        assert_eq!(a.render.frame_size(true), (3840, 1920));
        a.render.width = 512;
        a.render.height = 256;
        assert_eq!(a.render.frame_size(true), (512, 256));
        assert!(a.render.check().is_ok());
        a.render.height = 0;
        assert!(a.render.check().unwrap_err().contains("width"));
        assert!(Config::default().render.check().is_ok());
    }

    /// Every string-valued choice is an enum: a misspelt value is an error naming the file, line and
    /// key and listing the valid values; every value spelt as before still parses.
    #[test]
    fn choices_are_enums_whose_errors_list_the_values() {
        let base = "[venue]\nname = \"x\"\nphotos = \"p\"\n";
        for (section, key, bad, valid) in [
            (
                "render",
                "heading",
                "sideways",
                &["travel", "keyframes"][..],
            ),
            ("render", "exposure", "auto", &["interpolate", "fixed"]),
            ("render", "encoder", "x264", &["auto", "ffmpeg", "openh264"]),
            ("render", "preview_source", "copy", &["render", "reproject"]),
            (
                "render",
                "unregistered_keyframes",
                "drop",
                &["fail", "skip"],
            ),
            ("sfm", "up_axis", "+y", &["+z", "-y"]),
            ("train", "backbone", "mlp", &["hash-grid", "ipe-mlp"]),
            ("train", "device", "tpu", &["auto", "cpu", "gpu"]),
            ("render", "device", "cuda", &["auto", "cpu", "gpu"]),
            ("capture", "on_broken_photo", "ignore", &["skip", "fail"]),
            (
                "privacy",
                "on_unscannable_photo",
                "ignore",
                &["skip", "fail"],
            ),
        ] {
            let text = format!("{base}[{section}]\n{key} = \"{bad}\"\n");
            let e = parse_err(&text);
            assert!(e.starts_with("v.toml:") && e.contains("line 5"), "{e}");
            assert!(e.contains(key) && e.contains(bad), "{e}");
            for v in valid {
                assert!(
                    e.contains(&format!("`{v}`")),
                    "{key}: {v} not listed in: {e}"
                );
                let ok = format!("{base}[{section}]\n{key} = \"{v}\"\n");
                let cfg = Config::parse(&ok, Path::new("v.toml")).unwrap();
                // Round trip: the value prints back as spelt (machine keys too).
                let back = cfg.documented("");
                assert!(back.contains(&format!("{key} = \"{v}\"")), "{back}");
            }
        }
        let cfg = Config::parse(
            &format!("{base}[render]\nappearance = \"IMG_7.JPG\"\n"),
            Path::new("v.toml"),
        )
        .unwrap();
        assert_eq!(cfg.render.appearance, Appearance::Photo("IMG_7.JPG".into()));
        assert_eq!(cfg.render.appearance.to_string(), "IMG_7.JPG");
        let e = parse_err(&format!("{base}[render]\nappearance = \"\"\n"));
        assert!(e.contains("`mean`, `zero` or a training photo"), "{e}");
    }
}

/// Fuzz property of the config parser (issue 20): arbitrary text and damaged valid configs (a value
/// replaced with an edge value, lines removed or repeated, cut short) are parsed and range-checked
/// to `Ok` or `Err`, never a panic. [`flythrough_testkit::fuzz::CASES`] (256) cases.
#[cfg(test)]
mod fuzz {
    use super::*;
    use flythrough_testkit::fuzz::{self as fz, proptest::prelude::*};

    const MINIMAL: &str = "[venue]\nname = \"cafe\"\nphotos = \"photos\"\nkeyframes = [\"a.jpg\", \"b.jpg\"]\n\n[[calibration]]\na = \"a.jpg\"\nb = \"b.jpg\"\ndistance_m = 3.0\n\n[render]\nwidth = 1024\nheight = 512\n";

    #[test]
    fn the_seeds_parse() {
        Config::parse(MINIMAL, Path::new("v.toml")).unwrap();
        Config::parse(&Config::defaults_documented(), Path::new("v.toml")).unwrap();
    }

    proptest! {
        #![proptest_config(fz::config())]

        #[test]
        fn config_text_never_panics(
            text in fz::text_or_mutated(vec![MINIMAL.into(), Config::defaults_documented()], 512)
        ) {
            let _ = Config::parse(&text, Path::new("v.toml"));
        }
    }
}
