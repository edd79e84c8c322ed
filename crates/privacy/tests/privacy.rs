//! Recall, redaction and fail-closed tests of the privacy stage on real photos
//! (`../shared/data/faces`, `../shared/data/sceaux_castle`), on photos made from the repository's
//! own `data/faces` (the fail-closed and orientation test, which always runs) and on the synthetic
//! venue. Tests that need the shared data skip where it is absent (and fail under CI).

use flythrough_core::Stage;
use flythrough_core::config::{BrokenPhotoPolicy, KeepDetection, PrivacyConfig, RegionOverride};
use flythrough_core::manifest::{
    ExifFields, Exposure, ExposureSource, FocalPrior, FocalRule, PhotoRecord,
};
use flythrough_core::{Config, LoadedConfig, Manifest, RedactedImages, RunDir};
use flythrough_privacy::centerface::{CenterFace, Detection, PyramidParams};
use flythrough_privacy::geometry::{BoxF, iou};
use flythrough_privacy::{PhotoStatus, Redactions, pyramid_params, redact_image};
use flythrough_testkit::testdata::shared_data;
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn detector() -> &'static CenterFace {
    static D: OnceLock<CenterFace> = OnceLock::new();
    D.get_or_init(|| CenterFace::new().expect("embedded model loads"))
}

fn params() -> PyramidParams {
    pyramid_params(&PrivacyConfig::default())
}

fn load(p: &Path) -> RgbImage {
    image::open(p).unwrap().to_rgb8()
}

/// Greedy one-to-one matching of truth boxes to detections at IoU >= 0.3; returns matched truth indices.
fn matched(truth: &[BoxF], dets: &[Detection]) -> Vec<usize> {
    let mut used = vec![false; dets.len()];
    let mut out = Vec::new();
    for (i, t) in truth.iter().enumerate() {
        let best = dets
            .iter()
            .enumerate()
            .filter(|(j, _)| !used[*j])
            .map(|(j, d)| (j, iou(t, &d.bbox)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((j, v)) = best
            && v >= 0.3
        {
            used[j] = true;
            out.push(i);
        }
    }
    out
}

use flythrough_testkit::SINGLE_FACES;

/// The 28 approximate face boxes of the group photo (`red_boxes_extracted.json`).
fn group_truth() -> Vec<BoxF> {
    let json = shared_data("faces/rustface_0.1.7/red_boxes_extracted.json").unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    v["boxes_xywh"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let a: Vec<f32> = b
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            BoxF::new(a[0], a[1], a[2], a[3])
        })
        .collect()
}

#[test]
fn every_single_face_is_found_and_nothing_else() {
    for (rel, hand) in SINGLE_FACES {
        let Some(p) = shared_data(rel) else { return };
        let img = load(&p);
        let dets = detector().detect(&img, &params()).unwrap();
        let truth = BoxF::from_rect(*hand);
        let best = dets
            .iter()
            .map(|d| iou(&truth, &d.bbox))
            .fold(0.0, f32::max);
        println!("{rel}: {} detections, best IoU {best:.2}", dets.len());
        assert!(
            best >= 0.3,
            "{rel}: face not found (best IoU {best:.2}), {dets:?}"
        );
        assert_eq!(
            dets.len(),
            1,
            "{rel}: expected exactly one face, got {dets:?}"
        );
    }
}

#[test]
fn group_photo_recall() {
    let Some(p) = shared_data("faces/rustface_0.1.7/test.png") else {
        return;
    };
    let truth = group_truth();
    assert_eq!(truth.len(), 28);
    let img = load(&p);
    let dets = detector().detect(&img, &params()).unwrap();
    let m = matched(&truth, &dets);
    println!(
        "group photo: {} detections, {}/28 boxes matched",
        dets.len(),
        m.len()
    );
    assert!(m.len() >= 26, "only {}/28 faces matched", m.len());
    // The photo has about 29 people: no flood of false positives.
    assert!(dets.len() <= 32, "{} detections", dets.len());
}

#[test]
fn face_free_castle_photos_give_no_detection() {
    // Half resolution (1416x1064) keeps the test short. The dormers of the castle carry small
    // sculpted heads: at full resolution one scores 0.54 in 100_7106 (see README); these three
    // views are asserted clean.
    for name in ["100_7100.JPG", "100_7104.JPG", "100_7108.JPG"] {
        let Some(p) = shared_data(&format!("sceaux_castle/images/{name}")) else {
            return;
        };
        let img = load(&p);
        let half = image::imageops::thumbnail(&img, img.width() / 2, img.height() / 2);
        let dets = detector().detect(&half, &params()).unwrap();
        assert!(dets.is_empty(), "{name}: false positives {dets:?}");
    }
}

/// After redaction the detector finds nothing where a face was.
fn assert_nothing_left(rel: &str, img: &RgbImage, before: &[Detection]) {
    let mut red = img.clone();
    let pc = PrivacyConfig::default();
    redact_image(&mut red, "x", before, &pc);
    // Below the threshold the detector still scores head silhouettes (hair and a skin-coloured blob)
    // up to ~0.47; print the highest score left for the README.
    let low = PyramidParams {
        threshold: 0.2,
        ..params()
    };
    let residual = detector()
        .detect(&red, &low)
        .unwrap()
        .iter()
        .filter(|d| before.iter().any(|b| iou(&d.bbox, &b.bbox) > 0.1))
        .map(|d| d.score)
        .fold(0.0, f32::max);
    println!("{rel}: highest score left on a blurred face {residual:.2}");
    let after = detector().detect(&red, &params()).unwrap();
    for d in &after {
        for b in before {
            assert!(
                iou(&d.bbox, &b.bbox) < 0.1
                    && !b
                        .bbox
                        .padded(pc.blur_padding)
                        .contains(d.bbox.cx(), d.bbox.cy()),
                "{rel}: face still found after blurring: {d:?} (was {b:?})"
            );
        }
    }
}

#[test]
fn blurred_faces_are_not_found_again() {
    for rel in [
        "faces/scikit_image_0.26.0/astronaut.png",
        "faces/scikit_image_0.26.0/camera.png",
        "faces/max_facial_recognizer/Chris.jpeg",
        "faces/rustface_0.1.7/test.png",
    ] {
        let Some(p) = shared_data(rel) else { return };
        let img = load(&p);
        let before = detector().detect(&img, &params()).unwrap();
        assert!(!before.is_empty());
        assert_nothing_left(rel, &img, &before);
    }
}

fn record(id: u32, file: &str, w: u32, h: u32, orientation: u16) -> PhotoRecord {
    PhotoRecord {
        id,
        file: file.into(),
        width: w,
        height: h,
        exif: ExifFields {
            orientation: Some(orientation),
            ..Default::default()
        },
        exposure: Exposure {
            ev: 0.0,
            source: ExposureSource::Default,
        },
        focal_prior: FocalPrior {
            px: 1.2 * w.max(h) as f64,
            rule: FocalRule::DefaultFactor,
        },
        camera_key: String::new(),
    }
}

fn loaded(photos: &Path, privacy: PrivacyConfig) -> LoadedConfig {
    LoadedConfig {
        config: Config {
            privacy,
            ..Default::default()
        },
        path: photos.join("venue.toml"),
        dir: photos.to_path_buf(),
        photos_dir: photos.to_path_buf(),
    }
}

/// Commit `out` as `RUN/privacy` through the stage runner (which seals `images/` in stage.json).
fn commit(run: &RunDir, out: &Path) {
    flythrough_core::run::run_stage(run, Stage::Privacy, "test", "test", true, |o, _| {
        for e in std::fs::read_dir(out)? {
            let e = e?;
            std::fs::rename(e.path(), o.join(e.file_name()))?;
        }
        Ok(flythrough_core::StageSummary::default())
    })
    .unwrap();
}

/// A face poster of the repository's own `data/faces/` (public domain; face region fractions from
/// `data/faces/LICENCE.md`), scaled `k` times onto a `w` x `h` canvas at `at`. The canvas is a colour
/// ramp (red grows to the right, green downwards) so any wrong orientation shows. Returns the image
/// and the face box `[x, y, w, h]`.
fn poster(
    file: &str,
    region: [f32; 4],
    k: u32,
    at: (u32, u32),
    w: u32,
    h: u32,
) -> (RgbImage, [f32; 4]) {
    let face = load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/faces")
            .join(file),
    );
    let (fw, fh) = (face.width() * k, face.height() * k);
    let face = image::imageops::resize(&face, fw, fh, image::imageops::FilterType::Triangle);
    let mut img = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
    });
    image::imageops::overlay(&mut img, &face, at.0 as i64, at.1 as i64);
    let [u0, v0, u1, v1] = region;
    let bbox = [
        at.0 as f32 + u0 * fw as f32,
        at.1 as f32 + v0 * fh as f32,
        (u1 - u0) * fw as f32,
        (v1 - v0) * fh as f32,
    ];
    (img, bbox)
}

/// A JPEG with an EXIF block holding only `Orientation` (1..8): what a phone writes when it stores
/// the sensor's pixels and says how to turn them.
fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut w = exif::experimental::Writer::new();
    let field = exif::Field {
        tag: exif::Tag::Orientation,
        ifd_num: exif::In::PRIMARY,
        value: exif::Value::Short(vec![orientation]),
    };
    w.push_field(&field);
    let mut payload = std::io::Cursor::new(Vec::new());
    w.write(&mut payload, false).unwrap();
    let mut bytes = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    image::ImageEncoder::set_exif_metadata(&mut enc, payload.into_inner()).unwrap();
    image::ImageEncoder::write_image(
        enc,
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    bytes
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage, r: [u32; 4]) -> f64 {
    let [x0, y0, w, h] = r;
    let mut sum = 0.0;
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            for c in 0..3 {
                sum += (a.get_pixel(x, y).0[c] as f64 - b.get_pixel(x, y).0[c] as f64).abs();
            }
        }
    }
    sum / (3 * w * h) as f64
}

/// The stage on photos made at test time from the repository's `data/` fixtures (so it runs
/// everywhere): the EXIF orientation read by capture is applied before the scan, a face in a photo
/// stored sideways is found and blurred, a `[[privacy.keep]]` override and an extra region apply,
/// photos that cannot be decoded are never written (fail closed), the originals are untouched.
#[test]
fn stage_fails_closed_applies_orientation_and_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    // a.jpg: Grace Hopper upright. b_rot.jpg: Eileen Collins, stored turned a quarter to the left with
    // EXIF orientation 6 (turn 90° clockwise to view): 400x320 stored, 320x400 upright.
    let (a_img, a_face) = poster(
        "hopper_face.png",
        [0.27, 0.26, 0.72, 0.68],
        2,
        (28, 8),
        256,
        256,
    );
    std::fs::write(photos.join("a.jpg"), jpeg_with_orientation(&a_img, 1)).unwrap();
    let (b_up, b_face) = poster(
        "astronaut_face.png",
        [0.25, 0.21, 0.75, 0.66],
        2,
        (40, 56),
        320,
        400,
    );
    let b_stored = image::imageops::rotate270(&b_up);
    std::fs::write(
        photos.join("b_rot.jpg"),
        jpeg_with_orientation(&b_stored, 6),
    )
    .unwrap();
    // e_plain.png: no face, fine detail (1-px checks, like small text on a screen) in an extra region.
    let plain = RgbImage::from_fn(200, 100, |x, y| {
        image::Rgb([(((x ^ y) & 1) * 200) as u8, 50, 90])
    });
    plain.save(photos.join("e_plain.png")).unwrap();

    // Capture reads the real EXIF: the manifest has the upright size and the orientation.
    let (mut manifest, _) =
        flythrough_capture::scan(&photos, &flythrough_core::config::CaptureConfig::default())
            .unwrap();
    let b = manifest.photo("b_rot.jpg").unwrap();
    assert_eq!((b.width, b.height, b.exif.orientation), (320, 400, Some(6)));
    // c_cut.jpg (truncated) and d_text.jpg (not a photo) appear after capture accepted the folder
    // (e.g. replaced on disk): privacy must refuse them on its own.
    let bytes = std::fs::read(photos.join("a.jpg")).unwrap();
    std::fs::write(photos.join("c_cut.jpg"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(photos.join("d_text.jpg"), "this is not a photo\n").unwrap();
    manifest.photos.push(record(4, "c_cut.jpg", 256, 256, 1));
    manifest.photos.push(record(5, "d_text.jpg", 128, 128, 1));
    manifest.photos.sort_by(|x, y| x.file.cmp(&y.file));
    let names = [
        "a.jpg",
        "b_rot.jpg",
        "c_cut.jpg",
        "d_text.jpg",
        "e_plain.png",
    ];
    let before: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(photos.join(n)).unwrap())
        .collect();

    let keep_rect = a_face.map(|v| v.round() as u32);
    let pc = PrivacyConfig {
        keep: vec![KeepDetection {
            photo: "a.jpg".into(),
            rect: keep_rect,
        }],
        extra_regions: vec![RegionOverride {
            photo: "e_plain.png".into(),
            rect: [10, 10, 60, 40],
        }],
        ..Default::default()
    };
    let cfg = loaded(&photos, pc.clone());
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let summary = flythrough_privacy::run(&cfg, &manifest, &out).unwrap();
    assert_eq!(summary.photos_in, 5);
    assert_eq!(summary.photos_out, 3);
    assert_eq!(summary.unscannable.len(), 2);
    assert_eq!(summary.unscannable[0].file, "c_cut.jpg");
    assert_eq!(summary.faces, 2, "{summary:?}");
    assert_eq!(summary.faces_blurred, 1);
    assert_eq!(summary.faces_kept, 1);
    assert_eq!(summary.extra_regions, 1);

    let rep: Redactions =
        serde_json::from_str(&std::fs::read_to_string(out.join("redactions.json")).unwrap())
            .unwrap();
    assert_eq!(rep.detector.name, "centerface");
    assert_eq!(rep.detector.model_file, "data/models/centerface.onnx");
    assert_eq!(rep.detector.threshold, 0.5);
    let st: Vec<(&str, PhotoStatus)> = rep
        .photos
        .iter()
        .map(|p| (p.file.as_str(), p.status))
        .collect();
    assert_eq!(
        st,
        vec![
            ("a.jpg", PhotoStatus::Redacted),
            ("b_rot.jpg", PhotoStatus::Redacted),
            ("c_cut.jpg", PhotoStatus::Unscannable),
            ("d_text.jpg", PhotoStatus::Unscannable),
            ("e_plain.png", PhotoStatus::Redacted),
        ]
    );
    assert!(
        rep.photos[2]
            .reason
            .as_deref()
            .unwrap()
            .contains("truncated"),
        "{:?}",
        rep.photos[2].reason
    );
    assert!(rep.photos[3].reason.is_some());
    // Hopper's face is kept by the override; the astronaut's face, found upright, is blurred.
    assert_eq!(rep.photos[0].faces.len(), 1);
    assert!(!rep.photos[0].faces[0].blurred);
    assert_eq!(rep.photos[0].faces[0].kept_by, Some(0));
    assert_eq!(rep.photos[1].faces.len(), 1);
    assert!(rep.photos[1].faces[0].blurred);
    let f = rep.photos[1].faces[0].bbox;
    let truth = BoxF::new(b_face[0], b_face[1], b_face[2], b_face[3]);
    let overlap = iou(&BoxF::new(f[0], f[1], f[2], f[3]), &truth);
    assert!(
        overlap >= 0.3,
        "found {f:?}, expected near {b_face:?}: IoU {overlap:.2}"
    );
    assert_eq!(rep.photos[4].extra_regions, vec![[10, 10, 60, 40]]);

    // Written files: upright, redacted where asked, untouched elsewhere.
    let b = load(&out.join("images/b_rot.jpg"));
    assert_eq!(b.dimensions(), (320, 400), "orientation applied");
    // Away from the face the upright ramp is reproduced (a wrong turn would differ by ~100).
    for corner in [[0, 0, 30, 30], [290, 370, 30, 30], [0, 370, 30, 30]] {
        let d = mean_abs_diff(&b, &b_up, corner);
        assert!(
            d < 6.0,
            "{corner:?}: mean difference {d:.1} from the upright photo"
        );
    }
    let fr = b_face.map(|v| v as u32);
    let d_face = mean_abs_diff(&b, &b_up, fr);
    assert!(
        d_face > 12.0,
        "face area not redacted (mean difference {d_face:.1})"
    );
    // The kept face is untouched apart from JPEG re-encoding.
    let a = load(&out.join("images/a.jpg"));
    let d_kept = mean_abs_diff(&a, &a_img, keep_rect);
    assert!(d_kept < 4.0, "the kept face changed: {d_kept:.1}");
    let e = load(&out.join("images/e_plain.png"));
    assert_eq!(e.get_pixel(150, 80), plain.get_pixel(150, 80));
    let (p0, p1) = (
        e.get_pixel(40, 30).0[0] as i32,
        e.get_pixel(41, 30).0[0] as i32,
    );
    assert!(
        (p0 - p1).abs() <= 8,
        "extra region still has detail: {p0} vs {p1}"
    );
    assert_ne!(e.get_pixel(40, 30), plain.get_pixel(40, 30));

    // Fail closed: the unscannable photos are not there, and downstream sees exactly the others.
    assert!(!out.join("images/c_cut.jpg").exists());
    assert!(!out.join("images/d_text.jpg").exists());
    let run = RunDir::new(tmp.path().join("run"));
    std::fs::create_dir_all(run.root()).unwrap();
    commit(&run, &out);
    let red = RedactedImages::open(&run).unwrap();
    assert_eq!(red.names(), ["a.jpg", "b_rot.jpg", "e_plain.png"]);
    assert!(red.path("c_cut.jpg").is_err());
    assert!(red.dir().starts_with(run.root()));
    assert!(!red.dir().starts_with(&photos));

    // Originals are untouched.
    for (n, h) in names.iter().zip(before) {
        assert_eq!(
            std::fs::read(photos.join(n)).unwrap(),
            h,
            "{n} was modified"
        );
    }

    // Policy "fail": the stage stops and names the photos.
    let cfg_fail = loaded(
        &photos,
        PrivacyConfig {
            on_unscannable_photo: BrokenPhotoPolicy::Fail,
            ..pc
        },
    );
    let out2 = tmp.path().join("out2");
    std::fs::create_dir_all(&out2).unwrap();
    let err = flythrough_privacy::run(&cfg_fail, &manifest, &out2)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("c_cut.jpg") && err.contains("d_text.jpg"),
        "{err}"
    );

    // An override naming a photo that is not in the capture is a config error.
    let cfg_bad = loaded(
        &photos,
        PrivacyConfig {
            keep: vec![KeepDetection {
                photo: "nope.jpg".into(),
                rect: [0, 0, 5, 5],
            }],
            ..Default::default()
        },
    );
    let err = flythrough_privacy::run(&cfg_bad, &manifest, &tmp.path().join("out3"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.jpg"), "{err}");
}

#[test]
fn synthetic_venue_posters_are_found_and_blurred() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = flythrough_synth::SynthOptions {
        images: 16,
        width: 640,
        height: 480,
        ..Default::default()
    };
    let s = flythrough_synth::generate(&opts, tmp.path()).unwrap();
    let faces = flythrough_synth::FacesFile::load(&s.ground_truth_dir.join("faces.json")).unwrap();
    let photos: Vec<PathBuf> = faces
        .photos
        .iter()
        .map(|p| s.photos_dir.join(&p.name))
        .collect();
    let manifest = Manifest {
        photos: faces
            .photos
            .iter()
            .enumerate()
            .map(|(i, p)| record(i as u32 + 1, &p.name, opts.width, opts.height, 1))
            .collect(),
    };
    assert!(photos.iter().all(|p| p.is_file()));
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let cfg = loaded(&s.photos_dir, PrivacyConfig::default());
    let summary = flythrough_privacy::run(&cfg, &manifest, &out).unwrap();
    assert!(summary.unscannable.is_empty());
    let rep: Redactions =
        serde_json::from_str(&std::fs::read_to_string(out.join("redactions.json")).unwrap())
            .unwrap();
    // The originals carry EXIF; the redacted copies carry no metadata at all.
    let has_exif = |p: &Path| {
        std::fs::read(p)
            .unwrap()
            .windows(6)
            .any(|w| w == b"Exif\0\0")
    };
    let first = &faces.photos[0].name;
    assert!(has_exif(&s.photos_dir.join(first)));
    assert!(
        !has_exif(&out.join("images").join(first)),
        "EXIF copied into the redacted photo"
    );
    let mut expected = 0;
    let mut found = 0;
    for (pf, pr) in faces.photos.iter().zip(&rep.photos) {
        assert_eq!(pf.name, pr.file);
        let dets: Vec<Detection> = pr
            .faces
            .iter()
            .map(|f| Detection {
                bbox: BoxF::new(f.bbox[0], f.bbox[1], f.bbox[2], f.bbox[3]),
                score: f.score,
            })
            .collect();
        let redacted = load(&out.join("images").join(&pf.name));
        let again = detector().detect(&redacted, &params()).unwrap();
        for fb in &pf.faces {
            let t = BoxF::new(
                fb.bbox[0] as f32,
                fb.bbox[1] as f32,
                fb.bbox[2] as f32,
                fb.bbox[3] as f32,
            );
            let hit = dets.iter().any(|d| iou(&t, &d.bbox) >= 0.3);
            if fb.expected_detectable {
                expected += 1;
                found += hit as usize;
                assert!(
                    hit,
                    "{}: poster {} ({:.0} px) not found: {dets:?}",
                    pf.name, fb.poster, fb.size_px
                );
            }
            // After blurring nothing is found on any face, detectable or not.
            assert!(
                again
                    .iter()
                    .all(|d| iou(&t, &d.bbox) < 0.1 && !t.contains(d.bbox.cx(), d.bbox.cy())),
                "{}: face {} still detected after blurring: {again:?}",
                pf.name,
                fb.poster
            );
        }
    }
    println!(
        "synthetic venue: {found}/{expected} detectable posters found; {} faces total",
        summary.faces
    );
    assert!(
        expected >= 3,
        "the synthetic venue should show posters at >= 24 px ({expected})"
    );
}

#[test]
fn faces_at_several_scales_in_a_12_megapixel_photo() {
    let Some(castle) = shared_data("sceaux_castle/images/100_7101.JPG") else {
        return;
    };
    let group = load(&shared_data("faces/rustface_0.1.7/test.png").unwrap());
    let astro = load(&shared_data("faces/scikit_image_0.26.0/astronaut.png").unwrap());
    let truth = group_truth();
    // 4000x3000: the castle upscaled, the group photo at 0.6x (faces ~30 px) and the astronaut at 2x
    // (face ~200 px), i.e. faces 7x apart in size in one photo.
    let mut big = image::imageops::resize(
        &load(&castle),
        4000,
        3000,
        image::imageops::FilterType::Nearest,
    );
    let (gw, gh) = (
        (group.width() as f32 * 0.6) as u32,
        (group.height() as f32 * 0.6) as u32,
    );
    let g = image::imageops::resize(&group, gw, gh, image::imageops::FilterType::Triangle);
    image::imageops::replace(&mut big, &g, 2000, 100);
    let a = image::imageops::resize(&astro, 1024, 1024, image::imageops::FilterType::Triangle);
    image::imageops::replace(&mut big, &a, 200, 1500);
    let (sx, sy) = (
        gw as f32 / group.width() as f32,
        gh as f32 / group.height() as f32,
    );
    let group_truth: Vec<BoxF> = truth
        .iter()
        .map(|b| BoxF::new(2000.0 + b.x * sx, 100.0 + b.y * sy, b.w * sx, b.h * sy))
        .collect();
    let astro_truth = BoxF::new(
        200.0 + 180.0 * 2.0,
        1500.0 + 65.0 * 2.0,
        92.0 * 2.0,
        110.0 * 2.0,
    );
    let dets = detector().detect(&big, &params()).unwrap();
    let m = matched(&group_truth, &dets);
    println!(
        "12 MP: {} detections; group at 0.6x {}/28",
        dets.len(),
        m.len()
    );
    assert!(m.len() >= 26, "small faces in 12 MP: only {}/28", m.len());
    assert_eq!(
        matched(&[astro_truth], &dets).len(),
        1,
        "large face in 12 MP not found"
    );
}

#[test]
fn overrides_parse_from_the_venue_toml_and_bad_values_are_named() {
    let text = r#"
[venue]
name = "v"
photos = "photos"
keyframes = []

[privacy]
score_threshold = 0.4
min_face_px = 16

[[privacy.extra_regions]]
photo = "IMG_1.JPG"
rect = [10, 20, 30, 40]

[[privacy.keep]]
photo = "IMG_2.JPG"
rect = [1, 2, 3, 4]
"#;
    let c = Config::parse(text, Path::new("venue.toml")).unwrap();
    assert_eq!(c.privacy.score_threshold, 0.4);
    assert_eq!(c.privacy.min_face_px, 16.0);
    assert_eq!(c.privacy.extra_regions[0].rect, [10, 20, 30, 40]);
    assert_eq!(c.privacy.keep[0].photo, "IMG_2.JPG");
    let bad = text.replace("min_face_px = 16", "min_face_px = 2");
    let e = Config::parse(&bad, Path::new("venue.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("min_face_px") && e.contains("venue.toml"), "{e}");
    let bad = text.replace("rect = [10, 20, 30, 40]", "rect = [10, 20, 0, 40]");
    let e = Config::parse(&bad, Path::new("venue.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("extra_regions #1"), "{e}");
}

/// The memory budget bounds the photos in flight: with room for 1.5 photos, one photo is scanned at
/// a time and the estimated bytes in flight never exceed the budget; a photo whose estimate alone
/// exceeds the budget is refused (fail closed: reported, never written) with its name, size and the
/// key to raise. With a budget for all of them, photos run in parallel on more than one thread.
#[test]
fn memory_budget_bounds_the_photos_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let mut recs = Vec::new();
    for i in 0..4u32 {
        let img = RgbImage::from_fn(800, 600, |x, y| {
            image::Rgb([(x * 3 + i) as u8, (y * 5) as u8, ((x ^ y) & 255) as u8])
        });
        let name = format!("p{i}.png");
        img.save(photos.join(&name)).unwrap();
        recs.push(record(i + 1, &name, 800, 600, 1));
    }
    let big = RgbImage::from_fn(3000, 2000, |x, y| image::Rgb([x as u8, y as u8, 0]));
    big.save(photos.join("big.png")).unwrap();
    recs.push(record(5, "big.png", 3000, 2000, 1));
    let manifest = Manifest { photos: recs };
    let p = params();
    let need = |name: &str, w: u32, h: u32| {
        let bytes = std::fs::metadata(photos.join(name)).unwrap().len();
        flythrough_privacy::photo_memory_estimate_decoded(w, h, bytes, 3 * w as u64 * h as u64, &p)
    };
    let small = (0..4)
        .map(|i| need(&format!("p{i}.png"), 800, 600))
        .max()
        .unwrap();
    let budget = small * 3 / 2;
    assert!(need("big.png", 3000, 2000) > budget);
    let gb = |b: u64| b as f64 / (1u64 << 30) as f64;
    let cfg = loaded(
        &photos,
        PrivacyConfig {
            memory_budget_gb: gb(budget),
            ..Default::default()
        },
    );
    let out = tmp.path().join("out");
    let s = flythrough_privacy::run(&cfg, &manifest, &out).unwrap();
    assert!(s.memory_budget_bytes.abs_diff(budget) < 16, "{s:?}");
    assert!(s.peak_estimated_bytes_in_flight <= s.memory_budget_bytes);
    assert_eq!(s.peak_photos_in_flight, 1, "{s:?}");
    assert_eq!((s.photos_out, s.unscannable.len()), (4, 1));
    let rep: Redactions =
        serde_json::from_str(&std::fs::read_to_string(out.join("redactions.json")).unwrap())
            .unwrap();
    let b = rep.photos.iter().find(|p| p.file == "big.png").unwrap();
    assert_eq!(b.status, PhotoStatus::Unscannable);
    let r = b.reason.as_deref().unwrap();
    assert!(
        r.contains("big.png") && r.contains("6.0 megapixels") && r.contains("memory_budget_gb"),
        "{r}"
    );
    assert!(!out.join("images/big.png").exists());
    assert!(out.join("images/p3.png").exists());

    // Room for everything: more than one photo in flight when there is more than one thread.
    let cfg = loaded(
        &photos,
        PrivacyConfig {
            memory_budget_gb: 64.0,
            ..Default::default()
        },
    );
    let s = flythrough_privacy::run(&cfg, &manifest, &tmp.path().join("out2")).unwrap();
    assert_eq!(s.photos_out, 5);
    if rayon::current_num_threads() > 1 {
        assert!(s.peak_photos_in_flight >= 2, "{s:?}");
    }
}
