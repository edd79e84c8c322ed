//! End-to-end checks of the generated venue: determinism, ground-truth geometry against the
//! rendered photos, EXIF, the config and the face list.

use flythrough_core::{Config, Reconstruction};
use flythrough_synth::texture::{Material, PosterContent};
use flythrough_synth::{FacesFile, Scene, SceneInfo, SynthOptions, generate, walk};
use nalgebra::Vector2;
use std::collections::BTreeMap;
use std::path::Path;

fn small(seed: u64) -> SynthOptions {
    SynthOptions {
        seed,
        images: 6,
        width: 160,
        height: 120,
        points3d: 300,
        ..Default::default()
    }
}

/// Every file under `dir` (relative path -> bytes), in sorted order.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_gives_identical_files_on_any_thread_count_and_another_seed_differs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    generate(&small(7), a.path()).unwrap();
    // Same seed on a single thread: no dependence on scheduling.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| generate(&small(7), b.path())).unwrap();
    generate(&small(8), c.path()).unwrap();
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert_eq!(fa.len(), 6 + 5 + 1, "{:?}", fa.keys().collect::<Vec<_>>());
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(
            v == &fb[k],
            "{k} differs between two runs with the same seed"
        );
    }
    // Another seed: every photo and the ground truth differ.
    for (k, v) in &fa {
        if k.starts_with("photos/") || k.ends_with("images.txt") || k.ends_with("points3D.txt") {
            assert!(v != &fc[k], "{k} is the same for seeds 7 and 8");
        }
    }
}

fn luminance(p: &image::Rgb<u8>) -> f64 {
    0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
}

/// Bilinear sample of an 8-bit image at pixel position `q` (COLMAP convention, centres at +0.5).
fn bilinear(img: &image::RgbImage, q: Vector2<f64>) -> Option<f64> {
    let (x, y) = (q.x - 0.5, q.y - 0.5);
    if x < 0.0 || y < 0.0 || x >= (img.width() - 1) as f64 || y >= (img.height() - 1) as f64 {
        return None;
    }
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (tx, ty) = (x - x0 as f64, y - y0 as f64);
    let l = |i, j| luminance(img.get_pixel(i, j));
    let top = l(x0, y0) * (1.0 - tx) + l(x0 + 1, y0) * tx;
    let bot = l(x0, y0 + 1) * (1.0 - tx) + l(x0 + 1, y0 + 1) * tx;
    Some(top * (1.0 - ty) + bot * ty)
}

fn ncc(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

#[test]
fn ground_truth_cameras_project_points_where_the_photos_show_them() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        images: 40,
        points3d: 600,
        ..Default::default()
    };
    let summary = generate(&opts, dir.path()).unwrap();
    let rec = Reconstruction::read_text(&summary.ground_truth_dir).unwrap();
    let cam = &rec.cameras[&1];
    assert_eq!((cam.width, cam.height), (320, 240));
    let scene = Scene::new(opts.seed);

    // 1. The ray of a pixel hits a point that projects back onto that pixel (both conventions
    //    agree), using the poses as written to images.txt.
    let mut rng = flythrough_synth::rng::Rng::new(5);
    for im in rec.images.values() {
        for _ in 0..50 {
            let q = Vector2::new(rng.f64() * 320.0, rng.f64() * 240.0);
            let (o, d) = Scene::pixel_ray(cam, &im.pose, q);
            let hit = scene
                .trace(&o, &d)
                .expect("every ray in the closed room hits");
            let back = cam.project(&im.pose.transform(&hit.point)).unwrap();
            assert!((back - q).norm() < 1e-6, "{}: {q:?} -> {back:?}", im.name);
        }
    }

    // 2. Every observation of a ground-truth point is its exact projection, and the ray through
    //    it (in another photo than the one it was sampled from) hits the same point.
    let mut n_obs = 0;
    for p in rec.points.values() {
        assert!(!p.track.is_empty());
        for &(iid, idx) in &p.track {
            let im = &rec.images[&iid];
            let (xy, pid) = im.points2d[idx as usize];
            assert_eq!(pid, Some(p.id));
            let proj = cam.project(&im.pose.transform(&p.xyz)).unwrap();
            assert!((proj - xy).norm() < 1e-6);
            let (o, d) = Scene::pixel_ray(cam, &im.pose, xy);
            let hit = scene.trace(&o, &d).unwrap();
            assert!(
                (hit.point - p.xyz).norm() < 1e-6,
                "point {} seen from {} hits {:?}",
                p.id,
                im.name,
                hit.point
            );
            n_obs += 1;
        }
    }
    let mean_track = n_obs as f64 / rec.points.len() as f64;
    assert!(mean_track > 4.0, "mean track length {mean_track}");

    // 3. The photo content: the face posters' texture, projected with the ground-truth camera,
    //    lines up with the JPEG to sub-pixel accuracy (NCC is highest at zero shift).
    let faces = FacesFile::load(&summary.ground_truth_dir.join("faces.json")).unwrap();
    let mut checked = 0;
    for pf in &faces.photos {
        for f in pf
            .faces
            .iter()
            .filter(|f| f.size_px >= 28.0 && f.visible_fraction == 1.0)
        {
            let im = rec.image_by_name(&pf.name).unwrap();
            let photo = image::open(summary.photos_dir.join(&pf.name))
                .unwrap()
                .to_rgb8();
            let poster = scene.posters.iter().find(|p| p.name == f.poster).unwrap();
            let Material::Poster {
                content: PosterContent::Face { image, mirrored },
                ..
            } = &scene.objects[poster.object].material
            else {
                panic!("{} is not a face poster", f.poster);
            };
            let tex = &scene.faces[*image];
            let mut expect = Vec::new();
            let mut pts = Vec::new();
            for a in 0..24 {
                for b in 0..24 {
                    let (x, y) = (0.1 + 0.8 * a as f64 / 23.0, 0.1 + 0.8 * b as f64 / 23.0);
                    let tx = if *mirrored { 1.0 - x } else { x };
                    let c = tex.sample(tx, y);
                    expect.push(0.299 * c[0] as f64 + 0.587 * c[1] as f64 + 0.114 * c[2] as f64);
                    pts.push(
                        cam.project(&im.pose.transform(&poster.content_point(x, y)))
                            .unwrap(),
                    );
                }
            }
            let score = |dx: f64, dy: f64| -> Option<f64> {
                let seen: Option<Vec<f64>> = pts
                    .iter()
                    .map(|q| bilinear(&photo, q + Vector2::new(dx, dy)))
                    .collect();
                Some(ncc(&expect, &seen?))
            };
            let Some(at_zero) = score(0.0, 0.0) else {
                continue;
            };
            assert!(at_zero > 0.9, "{} {}: NCC {at_zero}", pf.name, f.poster);
            for dx in [-1.0, -0.5, 0.0, 0.5, 1.0] {
                for dy in [-1.0, -0.5, 0.0, 0.5, 1.0] {
                    if (dx, dy) == (0.0, 0.0) {
                        continue;
                    }
                    if let Some(s) = score(dx, dy) {
                        assert!(
                            s < at_zero,
                            "{} {}: NCC {s} at shift ({dx}, {dy}) >= {at_zero} at zero",
                            pf.name,
                            f.poster
                        );
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} face posters checked");

    // 4. The faces file: enough photos with a face a detector must find, boxes inside the image.
    let detectable = faces
        .photos
        .iter()
        .filter(|p| p.faces.iter().any(|f| f.expected_detectable))
        .count();
    assert!(
        detectable >= 10,
        "{detectable} photos with a detectable face"
    );
    assert_eq!(detectable, summary.photos_with_detectable_face);
    for p in &faces.photos {
        for f in &p.faces {
            let [x, y, w, h] = f.bbox;
            assert!(x >= 0.0 && y >= 0.0 && x + w <= 320.0 + 1e-9 && y + h <= 240.0 + 1e-9);
            assert!(f.visible_fraction > 0.0 && f.visible_fraction <= 1.0);
            if f.expected_detectable {
                assert!(f.size_px >= 24.0 && f.view_angle_deg <= 50.0);
            }
        }
    }
    // Sizes from 24 to about 80 px occur (what the privacy stage is tested on).
    let sizes: Vec<f64> = faces
        .photos
        .iter()
        .flat_map(|p| {
            p.faces
                .iter()
                .filter(|f| f.expected_detectable)
                .map(|f| f.size_px)
        })
        .collect();
    assert!(
        sizes.iter().any(|&s| s < 35.0) && sizes.iter().any(|&s| s > 50.0),
        "{sizes:?}"
    );
}

#[test]
fn exif_reads_back_and_exposure_spread_matches_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        images: 12,
        exposure_range_ev: 1.5,
        points3d: 100,
        ..Default::default()
    };
    let s = generate(&opts, dir.path()).unwrap();
    let info = SceneInfo::load(&s.ground_truth_dir.join("scene.json")).unwrap();
    assert_eq!(info.photos.len(), 12);
    let mut evs = Vec::new();
    let mut last_time = String::new();
    for p in &info.photos {
        let file = std::fs::File::open(s.photos_dir.join(&p.name)).unwrap();
        let ex = exif::Reader::new()
            .read_from_container(&mut std::io::BufReader::new(file))
            .unwrap();
        let field = |t| {
            ex.get_field(t, exif::In::PRIMARY)
                .unwrap_or_else(|| panic!("{t}"))
        };
        let rat = |t| match &field(t).value {
            exif::Value::Rational(v) => v[0].to_f64(),
            v => panic!("{t}: {v:?}"),
        };
        let t = rat(exif::Tag::ExposureTime);
        let n = rat(exif::Tag::FNumber);
        let iso = field(exif::Tag::PhotographicSensitivity)
            .value
            .get_uint(0)
            .unwrap();
        assert!((t - p.exposure_time_s).abs() < 1e-15, "{}", p.name);
        assert_eq!(n, 4.0);
        assert_eq!(iso, p.iso);
        assert_eq!(rat(exif::Tag::FocalLength), 5.0);
        let f35 = field(exif::Tag::FocalLengthIn35mmFilm)
            .value
            .get_uint(0)
            .unwrap();
        assert_eq!(f35, 28);
        assert_eq!(field(exif::Tag::Orientation).value.get_uint(0), Some(1));
        assert_eq!(
            field(exif::Tag::PixelXDimension).value.get_uint(0),
            Some(320)
        );
        assert_eq!(
            field(exif::Tag::PixelYDimension).value.get_uint(0),
            Some(240)
        );
        let ascii = |t| field(t).display_value().to_string();
        assert_eq!(ascii(exif::Tag::Make), "\"flythrough\"");
        assert_eq!(ascii(exif::Tag::Model), "\"synth\"");
        let dt = ascii(exif::Tag::DateTimeOriginal);
        assert!(dt > last_time, "{dt} not after {last_time}");
        last_time = dt;
        // The EV that the capture stage will compute from EXIF is the one the photo was rendered with.
        let ev = walk::exposure_value(t, iso as f64, n);
        assert!((ev - p.ev).abs() < 1e-12);
        assert!((p.exposure_scale - (ev - info.exposure.ev_ref).exp2()).abs() < 1e-12);
        evs.push(ev - info.exposure.ev_ref);
    }
    let lo = evs.iter().cloned().fold(f64::MAX, f64::min);
    let hi = evs.iter().cloned().fold(f64::MIN, f64::max);
    assert!(lo >= -1.5 - 1e-9 && hi <= 1.5 + 1e-9, "{lo}..{hi}");
    assert!(hi - lo >= 2.0, "spread {lo}..{hi} too small for ±1.5 EV");

    // Brightness follows exposure: the same view rendered at +1 EV is brighter in every channel
    // sum, and the photo's mean brightness tracks ev_offset within the lighting group.
    let scene = Scene::new(opts.seed);
    let shots = opts.shots();
    let cam = opts.camera();
    let lit = &scene.lightings[0];
    let dark = scene.render(&cam.scaled(0.25), &shots[0].pose, 0.5, lit);
    let bright = scene.render(&cam.scaled(0.25), &shots[0].pose, 1.0, lit);
    let sum = |im: &image::RgbImage| im.pixels().map(luminance).sum::<f64>();
    assert!(sum(&bright) > 1.3 * sum(&dark));
}

#[test]
fn venue_toml_loads_and_calibration_distances_are_the_true_ones() {
    let dir = tempfile::tempdir().unwrap();
    let s = generate(&small(3), dir.path()).unwrap();
    let loaded = Config::load(&s.config_path).unwrap();
    let cfg = &loaded.config;
    assert_eq!(cfg.venue.name, "synthetic-venue");
    assert_eq!(loaded.photos_dir, s.photos_dir);
    assert_eq!(cfg.venue.keyframes.len(), 6);
    assert_eq!(cfg.venue.keyframes[0], "IMG_0001.JPG");
    assert_eq!(cfg.venue.keyframes[5], "IMG_0006.JPG");
    let rec = Reconstruction::read_text(&s.ground_truth_dir).unwrap();
    let info = SceneInfo::load(&s.ground_truth_dir.join("scene.json")).unwrap();
    assert!(!cfg.calibration.is_empty());
    assert_eq!(cfg.calibration.len(), info.calibration.len());
    for (c, ci) in cfg.calibration.iter().zip(&info.calibration) {
        let a = rec.image_by_name(&c.a).unwrap().pose.center();
        let b = rec.image_by_name(&c.b).unwrap().pose.center();
        assert!((c.distance_m - (a - b).norm()).abs() < 1e-9, "{c:?}");
        assert_eq!(c.distance_m, ci.distance_m);
        assert!((1.0..=3.0).contains(&c.distance_m));
    }
    assert_eq!(info.up, [0.0, 0.0, 1.0]);
    assert_eq!(info.units, "metres");
}

#[test]
fn default_walk_has_two_calibration_pairs_and_bad_options_are_errors() {
    let opts = SynthOptions::default();
    let shots = opts.shots();
    assert_eq!(walk::calibration_pairs(&shots).len(), 2);
    for bad in [
        SynthOptions {
            images: 1,
            ..Default::default()
        },
        SynthOptions {
            width: 0,
            ..Default::default()
        },
        SynthOptions {
            exposure_range_ev: f64::NAN,
            ..Default::default()
        },
    ] {
        let e = generate(&bad, Path::new("/nonexistent/never-written")).unwrap_err();
        assert!(e.to_string().starts_with("synth option"), "{e}");
    }
    // A folder with foreign photos is refused and left as it was.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("photos")).unwrap();
    std::fs::write(dir.path().join("photos/IMG_0099.JPG"), b"x").unwrap();
    let e = generate(&small(1), dir.path()).unwrap_err().to_string();
    assert!(e.contains("IMG_0099.JPG"), "{e}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("photos"))
            .unwrap()
            .count(),
        1
    );
}
