//! Privacy-stage benchmark: detector recall on `../shared/data/faces` (CenterFace and SeetaFace side by
//! side) and seconds per 12-megapixel photo through the whole stage. Run by `scripts/bench-privacy.sh`.
//!
//! `bench recall` prints the recall table; `bench speed [N]` builds a 4000x3000 composite (the castle
//! upscaled, the group photo pasted at three scales, the astronaut at 2x), reports the faces found at
//! each scale, then runs the stage on N copies and prints seconds per photo (wall, and CPU time / cores
//! as the figure for an idle machine).

use flythrough_core::manifest::{
    ExifFields, Exposure, ExposureSource, FocalPrior, FocalRule, PhotoRecord,
};
use flythrough_core::{Config, LoadedConfig, Manifest};
use flythrough_privacy::centerface::{CenterFace, Detection, PyramidParams};
use flythrough_privacy::geometry::{BoxF, iou};
use flythrough_testkit::testdata::shared_data;
use image::RgbImage;
use std::time::Instant;

mod seeta;

use flythrough_testkit::SINGLE_FACES as SINGLE;

fn matched(truth: &[BoxF], dets: &[Detection]) -> usize {
    let mut used = vec![false; dets.len()];
    let mut n = 0;
    for t in truth {
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
            n += 1;
        }
    }
    n
}

fn group_truth() -> Option<Vec<BoxF>> {
    let p = shared_data("faces/rustface_0.1.7/red_boxes_extracted.json")?;
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
    Some(
        v["boxes_xywh"]
            .as_array()?
            .iter()
            .filter_map(|b| {
                let a: Vec<f32> = b
                    .as_array()?
                    .iter()
                    .filter_map(|x| x.as_f64())
                    .map(|x| x as f32)
                    .collect();
                (a.len() == 4).then(|| BoxF::new(a[0], a[1], a[2], a[3]))
            })
            .collect(),
    )
}

type Det<'a> = Box<dyn Fn(&RgbImage) -> Vec<Detection> + 'a>;

fn recall(thr: f32) {
    let cf = CenterFace::new().expect("model");
    let p = PyramidParams {
        threshold: thr,
        ..Default::default()
    };
    let dets: Vec<(&str, Det)> = vec![
        (
            "CenterFace (tract-onnx)",
            Box::new(|img: &RgbImage| cf.detect(img, &p).unwrap()),
        ),
        (
            "SeetaFace frontal (rustface)",
            Box::new(|img: &RgbImage| seeta::detect(img, &Default::default()).unwrap()),
        ),
    ];
    println!(
        "| detector | single faces found (8) | group photo boxes matched (28) / detections | castle photos (11, full res): false positives | seconds (all, 1 thread) |"
    );
    println!("|---|---|---|---|---|");
    for (name, det) in &dets {
        let t0 = Instant::now();
        let mut single = 0;
        let mut extra = 0;
        for (rel, hand) in SINGLE {
            let Some(path) = shared_data(rel) else { return };
            let img = image::open(path).unwrap().to_rgb8();
            let d = det(&img);
            if matched(&[BoxF::from_rect(*hand)], &d) == 1 {
                single += 1;
            }
            extra += d.len().saturating_sub(1);
        }
        let img = image::open(shared_data("faces/rustface_0.1.7/test.png").unwrap())
            .unwrap()
            .to_rgb8();
        let d = det(&img);
        let g = matched(&group_truth().unwrap(), &d);
        let mut fp = 0;
        let mut fp_photos = Vec::new();
        for i in 0..11 {
            let name = format!("100_71{i:02}.JPG");
            let Some(path) = shared_data(&format!("sceaux_castle/images/{name}")) else {
                break;
            };
            let img = image::open(path).unwrap().to_rgb8();
            let n = det(&img).len();
            if n > 0 {
                fp_photos.push(format!("{name}:{n}"));
            }
            fp += n;
        }
        println!(
            "| {name} | {single}/8 (+{extra} extra) | {g}/28 / {} | {fp} ({}) | {:.1} |",
            d.len(),
            fp_photos.join(", "),
            t0.elapsed().as_secs_f64()
        );
    }
}

/// Paste `src` scaled by `s` at `(x, y)` into `dst`; returns the mapping of boxes.
fn paste(
    dst: &mut RgbImage,
    src: &RgbImage,
    s: f32,
    x: u32,
    y: u32,
) -> impl Fn(&BoxF) -> BoxF + use<> {
    let w = (src.width() as f32 * s).round() as u32;
    let h = (src.height() as f32 * s).round() as u32;
    let r = image::imageops::resize(src, w, h, image::imageops::FilterType::Triangle);
    image::imageops::replace(dst, &r, x as i64, y as i64);
    let (sx, sy) = (
        w as f32 / src.width() as f32,
        h as f32 / src.height() as f32,
    );
    move |b: &BoxF| BoxF::new(x as f32 + b.x * sx, y as f32 + b.y * sy, b.w * sx, b.h * sy)
}

fn speed(n: usize, min_face_px: f32) {
    let castle = image::open(shared_data("sceaux_castle/images/100_7101.JPG").unwrap())
        .unwrap()
        .to_rgb8();
    let group = image::open(shared_data("faces/rustface_0.1.7/test.png").unwrap())
        .unwrap()
        .to_rgb8();
    let astro = image::open(shared_data("faces/scikit_image_0.26.0/astronaut.png").unwrap())
        .unwrap()
        .to_rgb8();
    let truth = group_truth().unwrap();
    let mut big =
        image::imageops::resize(&castle, 4000, 3000, image::imageops::FilterType::Triangle);
    // Group photo at 1.0x (faces ~50 px), 0.6x (~30 px), 0.45x (~22 px); astronaut at 2x (~200 px).
    let mut sets: Vec<(String, Vec<BoxF>)> = Vec::new();
    for (s, x, y) in [(1.0f32, 0u32, 0u32), (0.6, 2000, 0), (0.45, 2000, 800)] {
        let m = paste(&mut big, &group, s, x, y);
        sets.push((
            format!("group at {s}x (median face {:.0} px)", 50.0 * s),
            truth.iter().map(&m).collect(),
        ));
    }
    let m = paste(&mut big, &astro, 2.0, 200, 1500);
    sets.push((
        "astronaut at 2x (face ~200 px)".into(),
        vec![m(&BoxF::from_rect([180, 65, 92, 110]))],
    ));
    let cf = CenterFace::new().unwrap();
    let p = PyramidParams {
        min_face_px,
        ..Default::default()
    };
    let t0 = Instant::now();
    let d = cf.detect(&big, &p).unwrap();
    let t_det = t0.elapsed().as_secs_f64();
    println!(
        "12 MP composite (4000x3000), min_face_px {min_face_px} (finest level {} px): {} detections, detection alone {t_det:.2} s (1 thread)",
        flythrough_privacy::centerface::level_sides(4000, &p)[0],
        d.len()
    );
    println!("| faces | matched |");
    println!("|---|---|");
    for (name, t) in &sets {
        println!("| {name} | {}/{} |", matched(t, &d), t.len());
    }
    // Whole stage on n copies (decode, orientation, pyramid scan, blur, JPEG encode), rayon over photos.
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let mut recs = Vec::new();
    for i in 0..n {
        let name = format!("IMG_{i:04}.JPG");
        let f = std::fs::File::create(photos.join(&name)).unwrap();
        image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(f), 92)
            .encode_image(&big)
            .unwrap();
        recs.push(PhotoRecord {
            id: i as u32 + 1,
            file: name,
            width: 4000,
            height: 3000,
            exif: ExifFields {
                orientation: Some(1),
                ..Default::default()
            },
            exposure: Exposure {
                ev: 0.0,
                source: ExposureSource::Default,
            },
            focal_prior: FocalPrior {
                px: 4800.0,
                rule: FocalRule::DefaultFactor,
            },
            camera_key: String::new(),
        });
    }
    let mut config = Config::default();
    config.privacy.min_face_px = min_face_px;
    let cfg = LoadedConfig {
        config,
        path: photos.join("v.toml"),
        dir: photos.clone(),
        photos_dir: photos.clone(),
    };
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let t0 = Instant::now();
    let c0 = cpu_seconds();
    let s = flythrough_privacy::run(&cfg, &Manifest { photos: recs }, &out).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    let threads = rayon::current_num_threads();
    println!(
        "stage on {n} photos of 12 MP, {threads} threads: {secs:.1} s wall, {:.2} s per photo wall; \
         {:.2} CPU s per photo = {:.2} s per photo on {threads} idle cores (faces {})",
        secs / n as f64,
        cpu / n as f64,
        cpu / n as f64 / threads as f64,
        s.faces
    );
}

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat` (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = s.rsplit(')').next() else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the command name; 100 ticks/s.
    (t(11) + t(12)) / 100.0
}

/// `bench venue DIR N W H`: a venue of N photos of W x H (the castle photos upscaled, the group
/// photo pasted at 2x so there are faces to blur) with `venue.toml`, for the memory benchmark. Prints
/// the privacy stage's estimated bytes per photo.
fn venue(dir: &std::path::Path, n: usize, w: u32, h: u32) {
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let group = image::open(shared_data("faces/rustface_0.1.7/test.png").unwrap())
        .unwrap()
        .to_rgb8();
    let mut names = Vec::new();
    for i in 0..n {
        let src = shared_data(&format!("sceaux_castle/images/100_71{:02}.JPG", i % 11)).unwrap();
        let mut big = image::imageops::resize(
            &image::open(src).unwrap().to_rgb8(),
            w,
            h,
            image::imageops::FilterType::Triangle,
        );
        let _ = paste(&mut big, &group, 2.0, w / 8, h / 8);
        let name = format!("IMG_{i:04}.JPG");
        let f = std::fs::File::create(photos.join(&name)).unwrap();
        image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(f), 90)
            .encode_image(&big)
            .unwrap();
        names.push(name);
    }
    std::fs::write(
        dir.join("venue.toml"),
        format!(
            "[venue]\nname = \"bench-memory\"\nphotos = \"photos\"\nkeyframes = [{:?}, {:?}]\n",
            names[0],
            names[n.min(2) - 1]
        ),
    )
    .unwrap();
    let p = flythrough_privacy::pyramid_params(&Default::default());
    let bytes = std::fs::metadata(photos.join(&names[0])).unwrap().len();
    println!(
        "estimate_bytes_per_photo {}",
        flythrough_privacy::photo_memory_estimate(w, h, bytes, &p)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("venue") => {
            let a = |i: usize| args[i].parse::<u32>().unwrap();
            venue(std::path::Path::new(&args[2]), a(3) as usize, a(4), a(5))
        }
        Some("recall") => recall(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0.5)),
        Some("speed") => speed(
            args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4),
            args.get(3).and_then(|s| s.parse().ok()).unwrap_or(24.0),
        ),
        Some("redact") => {
            // bench redact IN OUT: write the redacted photo (default settings) for a visual check.
            let img = image::open(&args[2]).unwrap().to_rgb8();
            let pc = flythrough_core::config::PrivacyConfig::default();
            let d = CenterFace::new()
                .unwrap()
                .detect(&img, &flythrough_privacy::pyramid_params(&pc))
                .unwrap();
            let mut red = img.clone();
            flythrough_privacy::redact_image(&mut red, "x", &d, &pc);
            red.save(&args[3]).unwrap();
            println!("{} faces redacted", d.len());
            for f in &d {
                println!("  {:?} score {:.2}", f.bbox.to_array(), f.score);
            }
        }
        _ => eprintln!(
            "usage: bench recall [threshold] | bench speed [photos] [min_face_px] | bench venue DIR N W H"
        ),
    }
}
