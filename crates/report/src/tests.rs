use super::*;
use flythrough_core::run::{StageSummary, run_stage};
use flythrough_core::summary::{
    BlurInfo, DetectorInfo, Face, HoldoutScore, PhotoRedaction, PhotoStatus,
};

/// Commit `stage` with `summary` (and files written by `files`) through the stage runner.
fn commit<T: Summary>(run: &RunDir, summary: T, files: impl FnOnce(&Path)) {
    run_stage(run, T::STAGE, "in", "cfg", true, |out, _| {
        files(out);
        Ok(StageSummary::of(&summary))
    })
    .unwrap();
}

fn h2_titles(html: &str) -> Vec<String> {
    html.split("<h2")
        .skip(1)
        .map(|s| {
            let t = &s[s.find('>').unwrap() + 1..];
            t[..t.find("</h2>").unwrap()].to_string()
        })
        .collect()
}

/// Standard base64 decoding (for reading a data URI back).
fn unbase64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let mut out = Vec::new();
    for ch in s.as_bytes().chunks(4) {
        let n = ch
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                if c == b'=' {
                    0
                } else {
                    (val(c) as u32) << (18 - 6 * i)
                }
            })
            .sum::<u32>();
        let pad = ch.iter().filter(|&&c| c == b'=').count();
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    out
}

#[test]
fn a_run_with_no_stage_gets_a_report_without_sections() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path().join("cafe"));
    let html = std::fs::read_to_string(write_report(&run).unwrap()).unwrap();
    assert!(html.contains("<h1>cafe</h1>"));
    assert!(html.contains("No stage has finished yet"));
    assert_eq!(h2_titles(&html), ["Stages"]);
}

#[test]
fn after_capture_the_report_shows_capture_and_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let capture = CaptureSummary {
        photos_found: 12,
        photos_usable: 11,
        broken: vec![FileIssue {
            file: "IMG_3.JPG".into(),
            reason: "truncated".into(),
        }],
        warnings: vec!["IMG_3.JPG: cannot decode".into()],
        ..Default::default()
    };
    commit(&run, capture, |_| {});
    let html = report_html(&run);
    assert_eq!(h2_titles(&html), ["Stages", "Capture quality"]);
    assert!(html.contains("<th>photos usable</th><td>11</td>"), "{html}");
    assert!(html.contains("<li>IMG_3.JPG: truncated</li>"));
    assert!(html.contains("11 of 12 photos usable, 1 broken, 1 warnings"));
    for absent in ["privacy", "sfm", "train", "render", "redact"] {
        assert!(!html.contains(&format!("href=\"#{absent}\"")), "{absent}");
    }
}

/// The train section reads the train stage's own summary: the figures it wrote appear, per photo.
#[test]
fn training_figures_come_from_the_train_summary() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let train = TrainSummary {
        steps: 1500,
        steps_this_run: 1500,
        psnr_holdout: 27.123456,
        ssim_holdout: 0.8312,
        holdout: vec![HoldoutScore {
            name: "IMG_0008.JPG".into(),
            psnr: 26.5,
            ssim: 0.81,
        }],
        eval_protocol: "NeRF-W half image".into(),
        loss_plot: "loss.png".into(),
        ..Default::default()
    };
    commit(&run, train, |_| {});
    let html = report_html(&run);
    assert_eq!(h2_titles(&html), ["Stages", "Training"]);
    assert!(
        html.contains("<th>held-out PSNR / SSIM</th><td>27.12 dB / 0.831</td>"),
        "{html}"
    );
    assert!(html.contains("<tr><td>IMG_0008.JPG</td><td>26.50</td><td>0.810</td></tr>"));
}

/// Every face detection gets a thumbnail cut from the redacted photo (it shows the blur, not the
/// face), its score, and a `[[privacy.keep]]` snippet that parses as config and matches the box.
#[test]
fn detections_show_redacted_thumbnails_and_keep_snippets() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let face = [40.0, 30.0, 20.0, 24.6];
    let redactions = Redactions {
        detector: DetectorInfo {
            name: "centerface".into(),
            version: String::new(),
            model_file: String::new(),
            model_blake3: String::new(),
            origin: String::new(),
            threshold: 0.5,
            min_face_px: 24.0,
        },
        blur: BlurInfo {
            method: String::new(),
            padding: 0.35,
            cells_across_face: 4.0,
        },
        photos: vec![
            PhotoRedaction {
                file: "bag \"1\".png".into(),
                status: PhotoStatus::Redacted,
                reason: None,
                faces: vec![
                    Face {
                        bbox: face,
                        score: 0.56,
                        detector: "centerface".into(),
                        blurred: true,
                        kept_by: None,
                    },
                    Face {
                        bbox: [0.0, 0.0, 10.0, 10.0],
                        score: 0.91,
                        detector: "centerface".into(),
                        blurred: false,
                        kept_by: Some(0),
                    },
                ],
                extra_regions: vec![],
                seconds: 0.1,
            },
            PhotoRedaction {
                file: "gone.jpg".into(),
                status: PhotoStatus::Unscannable,
                reason: Some("truncated".into()),
                faces: vec![],
                extra_regions: vec![],
                seconds: 0.0,
            },
        ],
    };
    let summary = PrivacySummary {
        photos_in: 2,
        photos_out: 1,
        photos_with_faces: 1,
        faces: 2,
        faces_blurred: 1,
        faces_kept: 1,
        unscannable: vec![FileIssue {
            file: "gone.jpg".into(),
            reason: "truncated".into(),
        }],
        detector: "centerface".into(),
        score_threshold: 0.5,
        ..Default::default()
    };
    commit(&run, summary, |out| {
        let images = out.join("images");
        std::fs::create_dir_all(&images).unwrap();
        // The redacted photo: grey, with the blurred face area painted pure blue.
        let mut img = RgbImage::from_pixel(120, 90, image::Rgb([128, 128, 128]));
        for y in 0..90 {
            for x in 0..120 {
                if (25..75).contains(&x) && (15..70).contains(&y) {
                    img.put_pixel(x, y, image::Rgb([0, 0, 255]));
                }
            }
        }
        img.save(images.join("bag \"1\".png")).unwrap();
        std::fs::write(out.join("redactions.json"), serde_json_string(&redactions)).unwrap();
    });
    let html = report_html(&run);
    assert_eq!(h2_titles(&html), ["Stages", "Privacy: redactions"]);
    assert!(html.contains("face detections (2)"), "{html}");
    assert!(html.contains("<li>gone.jpg: truncated</li>"));
    // Least confident first.
    let (a, b) = (
        html.find("score 0.56").unwrap(),
        html.find("score 0.91").unwrap(),
    );
    assert!(a < b);
    assert!(html.contains("kept by [[privacy.keep]] #1"));
    // The thumbnail is cropped from the redacted photo: mostly the blue that replaced the face.
    let start = html.find("src=\"data:image/jpeg;base64,").unwrap() + 28;
    let end = start + html[start..].find('"').unwrap();
    let thumb = image::load_from_memory(&unbase64(&html[start..end]))
        .unwrap()
        .to_rgb8();
    let (w, h) = thumb.dimensions();
    let c = thumb.get_pixel(w / 2, h / 2).0;
    assert!(
        c[2] > 200 && c[0] < 60,
        "centre of the thumbnail {c:?} is not the redacted area"
    );
    // The snippet, unescaped, is a valid [[privacy.keep]] entry with the detection's box.
    let snippet = keep_snippet("bag \"1\".png", face);
    assert!(html.contains(&escape_html(&snippet)));
    let cfg = flythrough_core::Config::parse(
        &format!("[venue]\nname = \"v\"\nphotos = \"p\"\n\n{snippet}"),
        Path::new("venue.toml"),
    )
    .unwrap();
    assert_eq!(cfg.privacy.keep.len(), 1);
    assert_eq!(cfg.privacy.keep[0].photo, "bag \"1\".png");
    assert_eq!(cfg.privacy.keep[0].rect, [40, 30, 20, 25]);
}

fn serde_json_string<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn crop_region_grows_and_clamps() {
    assert_eq!(
        crop_region([10.0, 10.0, 10.0, 20.0], 0.5, 100, 100),
        Some((5, 0, 20, 40))
    );
    assert_eq!(
        crop_region([90.0, 90.0, 20.0, 20.0], 0.0, 100, 100),
        Some((90, 90, 10, 10))
    );
    assert_eq!(crop_region([200.0, 0.0, 5.0, 5.0], 0.0, 100, 100), None);
}

/// The fly-through section shows the 360° frame, and each rendered still beside its nearest
/// photo, read from the redacted copies.
#[test]
fn stills_are_shown_beside_the_nearest_redacted_photo() {
    use flythrough_core::summary::Still;
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let png = |p: &Path, v: u8| {
        RgbImage::from_pixel(32, 16, image::Rgb([v, v, v]))
            .save(p)
            .unwrap()
    };
    commit(&run, PrivacySummary::default(), |out| {
        std::fs::create_dir_all(out.join("images")).unwrap();
        png(&out.join("images/k1.png"), 10);
        png(&out.join("images/k2.png"), 20);
    });
    let stills: Vec<Still> = (0..3)
        .map(|i| Still {
            file: format!("still_{i:02}.png"),
            frame: i,
            time_s: i as f64,
            nearest_photo: Some(if i < 2 { "k1.png" } else { "k2.png" }.into()),
            distance_m: Some(0.5),
            angle_deg: Some(3.0),
        })
        .collect();
    let summary = RenderSummary {
        frames: 3,
        video_360: "flythrough_360.mp4".into(),
        video_preview: "preview.mp4".into(),
        viewer: "viewer.html".into(),
        pano_still: "stills/pano.png".into(),
        stills_dir: "stills".into(),
        stills,
        ..Default::default()
    };
    commit(&run, summary, |out| {
        std::fs::create_dir_all(out.join("stills")).unwrap();
        for f in ["pano.png", "still_00.png", "still_01.png", "still_02.png"] {
            png(&out.join("stills").join(f), 200);
        }
        std::fs::write(out.join("flythrough_360.mp4"), b"video").unwrap();
    });
    let html = report_html(&run);
    assert_eq!(
        h2_titles(&html),
        ["Stages", "Privacy: redactions", "Fly-through"]
    );
    assert_eq!(
        html.matches("data:image/jpeg;base64,").count(),
        1 + 2 * 3,
        "pano + 3 stills + 3 photos"
    );
    assert!(html.contains("href=\"render/flythrough_360.mp4\""));
    assert!(
        !html.contains("render/preview.mp4"),
        "a missing file is not linked"
    );
    assert!(html.contains("nearest photo k2.png (0.50 m, 3° apart)"));
}

/// Every stage has exactly one section, and it belongs to that stage.
#[test]
fn every_stage_has_one_section() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    for stage in Stage::ALL {
        let rec = StageRecord {
            stage,
            program_version: String::new(),
            input_hash: String::new(),
            config_hash: String::new(),
            fingerprint: String::new(),
            started: 0.0,
            finished: 0.0,
            seconds: 0.0,
            summary: Default::default(),
            redacted_images: None,
            seal: None,
            inputs: None,
        };
        let n = SECTIONS.iter().filter(|f| f(&run, &rec).is_some()).count();
        assert_eq!(n, 1, "{stage} has {n} sections");
    }
}

/// A run that stopped at a failed stage (issue 20): the page opens with the failed stage and its
/// error, HTML-escaped, followed by the sections of the stages before it; a later stage committed
/// by an earlier run is not shown.
#[test]
fn a_failed_run_shows_the_failure_first_and_the_stages_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path().join("cafe"));
    let capture = CaptureSummary {
        photos_found: 12,
        photos_usable: 11,
        ..Default::default()
    };
    commit(&run, capture, |_| {});
    commit(&run, TrainSummary::default(), |_| {});
    let error = "stage sfm: <b>IMG_1.JPG</b> & \"IMG_2.JPG\" share no features";
    let path = write_report_with_failure(&run, Some((Stage::Sfm, error))).unwrap();
    assert_eq!(path, run.root().join("report.html"));
    let html = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        h2_titles(&html),
        ["Run failed at stage sfm", "Stages", "Capture quality"]
    );
    assert!(
        html.contains(
            "<pre>stage sfm: &lt;b&gt;IMG_1.JPG&lt;/b&gt; &amp; &quot;IMG_2.JPG&quot; share no features</pre>"
        ),
        "{html}"
    );
    assert!(!html.contains("<b>IMG_1.JPG"), "the error is not escaped");
    assert!(html.contains("<th>photos usable</th><td>11</td>"));
    assert!(!html.contains("href=\"#train\""), "{html}");
    // Without a failure, the same folder's report has no failure section and shows every stage.
    let ok = report_html(&run);
    assert!(!ok.contains("Run failed"));
    assert_eq!(h2_titles(&ok), ["Stages", "Capture quality", "Training"]);
}
