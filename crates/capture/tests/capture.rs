use flythrough_capture::{exif::read_exif, scan};
use flythrough_core::config::{BrokenPhotoPolicy, CaptureConfig};
use flythrough_core::manifest::{ExposureSource, FocalRule};
use flythrough_testkit::testdata::shared_data;
use std::path::Path;

#[test]
fn sceaux_exif_and_focal_prior() {
    let Some(dir) = shared_data("sceaux_castle/images") else {
        return;
    };
    let r = read_exif(&dir.join("100_7100.JPG"));
    let f = &r.fields;
    assert_eq!(f.iso, Some(80.0));
    assert_eq!(f.f_number, Some(2.8));
    assert!((f.focal_mm.unwrap() - 5.85).abs() < 1e-9);
    assert_eq!(f.focal_35mm, Some(35.0));
    assert_eq!(f.orientation, Some(1));
    assert!(f.exposure_time_s.unwrap() > 0.0);
    assert!(
        f.model.as_deref().unwrap().contains("Z612"),
        "{:?}",
        f.model
    );
    // Whole folder: manifest with the 35 mm rule within 6 % of the true focal in K.txt.
    let (manifest, qa) = scan(
        &dir,
        &CaptureConfig {
            qa_max_side: 256,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(manifest.photos.len(), 11);
    assert!(qa.broken.is_empty() && qa.missing_exif.is_empty());
    let k_true = 2905.88;
    for p in &manifest.photos {
        assert_eq!((p.width, p.height), (2832, 2128));
        assert_eq!(p.focal_prior.rule, FocalRule::Equivalent35mm);
        let err = (p.focal_prior.px - k_true).abs() / k_true;
        assert!(
            err < 0.06,
            "{}: focal prior {} is {:.1} % off",
            p.file,
            p.focal_prior.px,
            err * 100.0
        );
        assert_eq!(p.exposure.source, ExposureSource::Exif);
    }
    assert!(!qa.mixed_camera_bodies && !qa.aperture_changes);
}

#[test]
fn real_camera_exif_files() {
    let Some(dir) = shared_data("exif/pillow_13.0.0") else {
        return;
    };
    // Nikon D800 (with a broken DPI value elsewhere in the block).
    let d800 = read_exif(&dir.join("broken_exif_dpi.jpg")).fields;
    assert_eq!(
        (d800.exposure_time_s, d800.f_number, d800.iso),
        (Some(0.004), Some(8.0), Some(400.0))
    );
    assert_eq!(d800.model.as_deref(), Some("NIKON D800"));
    // Xiaomi phone photo stored rotated: orientation 6.
    let xiaomi = read_exif(&dir.join("empty_gps_ifd.jpg")).fields;
    assert_eq!(xiaomi.orientation, Some(6));
    assert_eq!(xiaomi.focal_35mm, Some(26.0));
    // Canon S40: focal-plane resolution present, no 35 mm equivalent.
    let s40 = read_exif(&dir.join("flower.jpg")).fields;
    assert!((s40.focal_mm.unwrap() - 21.3125).abs() < 1e-9);
    assert!(s40.focal_plane_px_per_mm.unwrap() > 300.0);
    // A malformed IFD chain: no panic, a warning, no values.
    let gps = read_exif(&dir.join("exif_gps.jpg"));
    assert!(
        gps.warnings.iter().any(|w| w.contains("unreadable EXIF")),
        "{:?}",
        gps.warnings
    );
    // The folder scans without error.
    let (m, qa) = scan(
        &dir,
        &CaptureConfig {
            qa_max_side: 128,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(m.photos.len() >= 7, "{}", m.photos.len());
    assert!(qa.mixed_camera_bodies);
    let x = m.photo("empty_gps_ifd.jpg").unwrap();
    assert_eq!(x.exif.orientation, Some(6));
    let flower = m.photo("flower.jpg").unwrap();
    assert_eq!(flower.focal_prior.rule, FocalRule::FocalPlaneResolution);
    // ISO missing on the S40: imputed from the other photos.
    assert_eq!(flower.exposure.source, ExposureSource::PartlyImputed);
}

#[test]
fn minimal_exif_containers() {
    let Some(dir) = shared_data("exif/kamadak_exif_0.6.2") else {
        return;
    };
    for f in ["exif.jpg", "exif.png", "exif.tif", "exif.webp", "exif.heic"] {
        let r = read_exif(&dir.join(f));
        assert!(r.present, "{f}: EXIF not found");
    }
    assert_eq!(read_exif(&dir.join("exif.tif")).fields.orientation, Some(1));
}

fn write_jpeg(path: &Path, seed: u32) {
    let img = image::RgbImage::from_fn(96, 64, |x, y| {
        image::Rgb([
            ((x * 7 + y * 3 + seed * 40) % 255) as u8,
            ((x * y + seed) % 251) as u8,
            ((y * 5) % 255) as u8,
        ])
    });
    img.save(path).unwrap();
}

#[test]
fn broken_photos_are_named_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        write_jpeg(&dir.path().join(format!("ok{i}.jpg")), i);
    }
    let full = std::fs::read(dir.path().join("ok0.jpg")).unwrap();
    std::fs::write(dir.path().join("truncated.jpg"), &full[..full.len() / 2]).unwrap();
    std::fs::write(dir.path().join("text.jpg"), b"this is not a photo\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
    let (m, qa) = scan(dir.path(), &CaptureConfig::default()).unwrap();
    assert_eq!(m.photos.len(), 3);
    assert_eq!(qa.photos_found, 5);
    let names: Vec<_> = qa.broken.iter().map(|b| b.file.as_str()).collect();
    assert_eq!(names, ["text.jpg", "truncated.jpg"]);
    assert!(
        qa.broken[1].reason.contains("truncated"),
        "{}",
        qa.broken[1].reason
    );
    assert!(qa.ignored_files.iter().any(|f| f.file == "notes.txt"));
    // A line break in a name would split a line of sfm/sparse/images.txt (before, capture, privacy
    // and sfm took it and training failed with "POINTS2D must be triples"): left out, named.
    std::fs::write(dir.path().join("line\nbreak.jpg"), &full).unwrap();
    let (m2, qa2) = scan(dir.path(), &CaptureConfig::default()).unwrap();
    assert_eq!(m2.photos.len(), 3);
    let bad = qa2
        .ignored_files
        .iter()
        .find(|f| f.file == "line\\nbreak.jpg")
        .expect("the name with a line break is listed");
    assert!(bad.reason.contains("control character"), "{}", bad.reason);
    assert!(qa2.warnings.iter().any(|w| w.contains("line\\nbreak.jpg")));
    std::fs::remove_file(dir.path().join("line\nbreak.jpg")).unwrap();
    // Issue 20: a link out of the photo folder was read in silently (the same link as a keyframe is
    // refused); now it is left out with a warning naming it, like a broken link. A link to a photo
    // of the same folder is read.
    #[cfg(unix)]
    {
        let outside = tempfile::tempdir().unwrap();
        write_jpeg(&outside.path().join("elsewhere.jpg"), 7);
        let link = |target: &std::path::Path, name: &str| {
            std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap()
        };
        link(&outside.path().join("elsewhere.jpg"), "out.jpg");
        link(&dir.path().join("gone.jpg"), "dangling.jpg");
        link(&dir.path().join("ok1.jpg"), "same_folder.jpg");
        let (m3, qa3) = scan(dir.path(), &CaptureConfig::default()).unwrap();
        let got: Vec<_> = m3.photos.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(got, ["ok0.jpg", "ok1.jpg", "ok2.jpg", "same_folder.jpg"]);
        for (name, why) in [
            ("out.jpg", flythrough_capture::LINK_OUT_OF_FOLDER),
            ("dangling.jpg", flythrough_capture::BROKEN_LINK),
        ] {
            let f = qa3.ignored_files.iter().find(|f| f.file == name).unwrap();
            assert!(f.reason.starts_with(why), "{}", f.reason);
            assert!(
                qa3.warnings
                    .iter()
                    .any(|w| w.starts_with(&format!("{name}: left out, {why}"))),
                "{:?}",
                qa3.warnings
            );
        }
        for name in ["out.jpg", "dangling.jpg", "same_folder.jpg"] {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
    }
    assert!(qa.too_few_photos);
    assert!(qa.missing_exif.len() == 3);
    // Ids are 1-based in name order.
    assert_eq!(m.photos.iter().map(|p| p.id).collect::<Vec<_>>(), [1, 2, 3]);
    // Policy "fail": an error naming the file.
    let e = scan(
        dir.path(),
        &CaptureConfig {
            on_broken_photo: BrokenPhotoPolicy::Fail,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("text.jpg") || e.contains("truncated.jpg"), "{e}");
}

#[test]
fn qa_flags_blur_duplicates_and_exposure() {
    let dir = tempfile::tempdir().unwrap();
    write_jpeg(&dir.path().join("a.jpg"), 1);
    std::fs::copy(dir.path().join("a.jpg"), dir.path().join("a_copy.jpg")).unwrap();
    image::RgbImage::from_pixel(96, 64, image::Rgb([128, 128, 128]))
        .save(dir.path().join("flat.png"))
        .unwrap();
    image::RgbImage::from_pixel(96, 64, image::Rgb([255, 255, 255]))
        .save(dir.path().join("white.png"))
        .unwrap();
    image::RgbImage::from_pixel(96, 64, image::Rgb([0, 0, 0]))
        .save(dir.path().join("black.png"))
        .unwrap();
    let (_, qa) = scan(dir.path(), &CaptureConfig::default()).unwrap();
    assert!(
        qa.blurry.contains(&"flat.png".to_string()) && !qa.blurry.contains(&"a.jpg".to_string()),
        "{:?}",
        qa.blurry
    );
    assert!(
        qa.near_duplicates
            .iter()
            .any(|(a, b, d)| a == "a.jpg" && b == "a_copy.jpg" && *d == 0)
    );
    assert_eq!(qa.overexposed, ["white.png"]);
    assert_eq!(qa.underexposed, ["black.png"]);
}

#[test]
fn exposure_value_formula() {
    use flythrough_core::manifest::ExifFields;
    let a = ExifFields {
        exposure_time_s: Some(1.0 / 100.0),
        iso: Some(100.0),
        f_number: Some(1.0),
        ..Default::default()
    };
    let b = ExifFields {
        exposure_time_s: Some(1.0 / 50.0),
        iso: Some(100.0),
        f_number: Some(1.0),
        ..Default::default()
    };
    let c = ExifFields {
        exposure_time_s: Some(1.0 / 100.0),
        iso: None,
        f_number: Some(2.0),
        ..Default::default()
    };
    let e = flythrough_capture::exposures(&[&a, &b, &c]);
    assert!((e[0].ev - (0.01f64).log2()).abs() < 1e-12);
    assert!(
        (e[1].ev - e[0].ev - 1.0).abs() < 1e-12,
        "twice the shutter time is one stop more"
    );
    assert!(
        (e[0].ev - e[2].ev - 2.0).abs() < 1e-12,
        "f/2 is two stops less than f/1 (ISO imputed = 100)"
    );
    assert_eq!(e[2].source, ExposureSource::PartlyImputed);
}

/// A JPEG with an EXIF block carrying only `Orientation`, made with kamadak-exif's writer.
fn jpeg_with_orientation(path: &Path, w: u32, h: u32, orientation: u16) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 3 % 256) as u8, (y * 5 % 256) as u8, 90])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&img)
        .unwrap();
    let field = exif::Field {
        tag: exif::Tag::Orientation,
        ifd_num: exif::In::PRIMARY,
        value: exif::Value::Short(vec![orientation]),
    };
    let mut writer = exif::experimental::Writer::new();
    writer.push_field(&field);
    let mut tiff = std::io::Cursor::new(Vec::new());
    writer.write(&mut tiff, false).unwrap();
    let tiff = tiff.into_inner();
    // APP1 segment: marker, length (incl. itself), "Exif\0\0", TIFF.
    let len = (2 + 6 + tiff.len()) as u16;
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend(len.to_be_bytes());
    out.extend(b"Exif\0\0");
    out.extend(&tiff);
    out.extend(&jpeg[2..]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn orientation_swaps_the_size_and_the_focal_prior_follows() {
    let dir = tempfile::tempdir().unwrap();
    jpeg_with_orientation(&dir.path().join("rot6.jpg"), 120, 80, 6);
    jpeg_with_orientation(&dir.path().join("rot1.jpg"), 120, 80, 1);
    let (m, qa) = scan(dir.path(), &CaptureConfig::default()).unwrap();
    assert!(qa.missing_exif.is_empty());
    let r6 = m.photo("rot6.jpg").unwrap();
    assert_eq!(r6.exif.orientation, Some(6));
    assert_eq!(
        (r6.width, r6.height),
        (80, 120),
        "orientation 6 is a 90° rotation"
    );
    let r1 = m.photo("rot1.jpg").unwrap();
    assert_eq!((r1.width, r1.height), (120, 80));
    assert_eq!(r6.focal_prior.rule, FocalRule::DefaultFactor);
    assert!((r6.focal_prior.px - 144.0).abs() < 1e-9, "1.2 x max side");
    assert_ne!(
        r6.camera_key, r1.camera_key,
        "portrait and landscape photos get separate intrinsics"
    );
}

/// A photo whose decode needs more than the memory budget is left out with a message naming it, its
/// size in megapixels and the key to raise (never the decoder's bare "Memory limit exceeded"); the
/// photos that fit are read, and with a larger budget the big one is read too.
#[test]
fn a_photo_above_the_memory_budget_is_named_with_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let small = image::RgbImage::from_fn(200, 150, |x, y| image::Rgb([x as u8, y as u8, 7]));
    small.save(dir.path().join("a.png")).unwrap();
    let big = image::RgbImage::from_fn(2000, 1500, |x, y| image::Rgb([x as u8, y as u8, 9]));
    big.save(dir.path().join("b.png")).unwrap();
    let cfg = CaptureConfig::default();
    let est = |w, h, f: &str| {
        let bytes = std::fs::metadata(dir.path().join(f)).unwrap().len();
        flythrough_capture::photo_memory_estimate(w, h, bytes, 3 * w as u64 * h as u64, &cfg)
    };
    let (small_need, big_need) = (est(200, 150, "a.png"), est(2000, 1500, "b.png"));
    assert!(small_need < big_need);
    let (m, qa) = flythrough_capture::scan_within(dir.path(), &cfg, small_need + 1024).unwrap();
    assert_eq!(m.photos.len(), 1);
    assert_eq!(qa.broken.len(), 1);
    let r = &qa.broken[0].reason;
    assert_eq!(qa.broken[0].file, "b.png");
    assert!(
        r.contains("b.png") && r.contains("3.0 megapixels") && r.contains("memory_budget_gb"),
        "{r}"
    );
    let (m, qa) = flythrough_capture::scan_within(dir.path(), &cfg, big_need).unwrap();
    assert_eq!((m.photos.len(), qa.broken.len()), (2, 0));
}
