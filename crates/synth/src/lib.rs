//! The synthetic venue: a small furnished room rendered by the project itself on the CPU, with
//! exact ground truth, for the demo and for the tests of every stage.
//!
//! [`generate`] writes a venue folder:
//! - `photos/IMG_0001.JPG ...` — sRGB JPEGs (quality 92) with EXIF (exposure time, f-number, ISO,
//!   focal length, 35 mm focal, make/model, date-time, orientation, pixel size);
//! - `venue.toml` — a flythrough config with keyframes and two calibration pairs;
//! - `ground_truth/` — COLMAP text model (`cameras.txt`, `images.txt`, `points3D.txt`),
//!   `scene.json` ([`SceneInfo`]) and `faces.json` ([`FacesFile`]).
//!
//! Conventions: world in metres with **+z up**; poses world-to-camera with OpenCV axes and pixel
//! centres at +0.5, exactly as `flythrough_core::{Camera, Pose}` (see [`scene`]). Everything is a
//! pure function of [`SynthOptions`]: the same options give byte-identical files.

pub mod geometry;
pub mod noise;
pub mod rng;
pub mod scene;
pub mod texture;
pub mod walk;

mod exif_blob;

pub use scene::{Hit, Lighting, Poster, ROOM, Scene, tone_map};
pub use walk::Shot;

use flythrough_core::colmap::{ColmapError, Image, Point3D};
use flythrough_core::config::ConfigError;
use flythrough_core::{Camera, Config, Reconstruction};
use geometry::V3;
use image::ImageEncoder;
use nalgebra::Vector2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthOptions {
    /// Seed of every random choice (textures, layout jitter, walk, exposures, lighting subset).
    pub seed: u64,
    /// Number of photos (2..=9999).
    pub images: usize,
    pub width: u32,
    pub height: u32,
    /// Photos' exposure values spread over `ev_ref ± exposure_range_ev` (0 = all equal).
    pub exposure_range_ev: f64,
    /// A quarter of the photos get a different light colour and intensity, not recorded in EXIF.
    pub lighting_change: bool,
    /// Number of ground-truth surface points in `points3D.txt`.
    pub points3d: usize,
    /// JPEG quality (1..=100).
    pub jpeg_quality: u8,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            seed: 1,
            images: 40,
            width: 320,
            height: 240,
            exposure_range_ev: 1.0,
            lighting_change: true,
            points3d: 3000,
            jpeg_quality: 92,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthSummary {
    pub out: PathBuf,
    pub photos_dir: PathBuf,
    pub config_path: PathBuf,
    pub ground_truth_dir: PathBuf,
    pub images: usize,
    /// Face instances listed in `faces.json` (a poster visible in a photo).
    pub faces: usize,
    /// Photos with at least one face that a detector is expected to find (see [`FaceBox`]).
    pub photos_with_detectable_face: usize,
    pub points3d: usize,
    pub seconds: f64,
}

/// Errors of the generator; each names the file or option at fault.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("synth option {0}")]
    Options(String),
    #[error(
        "{}: already holds {name:?}, which this venue would not overwrite; use an empty or new folder",
        path.display()
    )]
    Occupied { path: PathBuf, name: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot encode the JPEG: {source}", path.display())]
    Image {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("{name}: cannot build its EXIF block: {source}")]
    Exif { name: String, source: exif::Error },
    #[error("{}: {msg}", path.display())]
    Json { path: PathBuf, msg: String },
    #[error(transparent)]
    Colmap(#[from] ColmapError),
    #[error("the generated venue.toml does not load: {0}")]
    Config(#[from] ConfigError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `ground_truth/scene.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneInfo {
    pub format: String,
    pub seed: u64,
    pub units: String,
    /// World up direction (+z) and gravity (−z).
    pub up: [f64; 3],
    pub gravity: [f64; 3],
    pub room_min: [f64; 3],
    pub room_max: [f64; 3],
    pub conventions: String,
    pub camera: CameraInfo,
    pub exposure: ExposureInfo,
    pub lightings: Vec<LightingInfo>,
    pub photos: Vec<PhotoInfo>,
    pub keyframes: Vec<String>,
    pub calibration: Vec<CalibrationInfo>,
    pub objects: Vec<ObjectInfo>,
    pub posters: Vec<PosterInfo>,
    pub points3d: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraInfo {
    pub model: String,
    pub width: u32,
    pub height: u32,
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    pub hfov_deg: f64,
    pub vfov_deg: f64,
    pub focal_mm: f64,
    pub focal_35mm: u32,
    pub crop_factor: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExposureInfo {
    pub formula: String,
    pub f_number: f64,
    pub ref_exposure_time_s: f64,
    pub ref_iso: u32,
    pub ev_ref: f64,
    pub range_ev: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LightingInfo {
    pub id: u32,
    pub name: String,
    pub ambient: [f32; 3],
    pub lights: Vec<LightInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LightInfo {
    pub position: [f64; 3],
    pub color: [f32; 3],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoInfo {
    pub name: String,
    /// Image id in `images.txt`.
    pub image_id: u32,
    /// Camera centre and viewing direction in the world.
    pub center: [f64; 3],
    pub forward: [f64; 3],
    pub ev: f64,
    /// `ev - ev_ref`; the linear radiance was scaled by `2^ev_offset`.
    pub ev_offset: f64,
    pub exposure_scale: f64,
    pub exposure_time_s: f64,
    /// `"1/den"`, as in EXIF.
    pub shutter: String,
    pub iso: u32,
    pub f_number: f64,
    /// Lighting id (see `lightings`); not recorded in EXIF.
    pub lighting: u32,
    pub datetime: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationInfo {
    pub a: String,
    pub b: String,
    pub distance_m: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub name: String,
    pub kind: String,
    pub min: [f64; 3],
    pub max: [f64; 3],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PosterInfo {
    pub name: String,
    pub face_image: Option<String>,
    pub center: [f64; 3],
    pub normal: [f64; 3],
    pub width: f64,
    pub height: f64,
    /// Face region corners (top-left, top-right, bottom-right, bottom-left) for face posters.
    pub face_corners: Option<[[f64; 3]; 4]>,
}

/// `ground_truth/faces.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FacesFile {
    pub format: String,
    /// The rule for `expected_detectable`.
    pub rule: String,
    pub min_detectable_px: f64,
    /// Every photo, in order, with the faces visible in it (possibly none).
    pub photos: Vec<PhotoFaces>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoFaces {
    pub name: String,
    pub faces: Vec<FaceBox>,
}

/// One face (of a face poster) visible in a photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceBox {
    pub poster: String,
    pub image: String,
    /// `[x, y, w, h]` in pixels: bounding box of the projected face region, clipped to the image.
    #[serde(rename = "box")]
    pub bbox: [f64; 4],
    /// `min(w, h)` of `box`.
    pub size_px: f64,
    /// `min(w, h)` of the unclipped projected face region.
    pub full_size_px: f64,
    /// Fraction of the face region inside the image and unoccluded (10x10 samples).
    pub visible_fraction: f64,
    /// Angle between the poster's normal and the direction to the camera.
    pub view_angle_deg: f64,
    /// `size_px >= 24 && visible_fraction >= 0.9 && view_angle_deg <= 50`.
    pub expected_detectable: bool,
}

/// Minimum face size the privacy stage must detect.
pub const MIN_DETECTABLE_PX: f64 = 24.0;

impl FacesFile {
    pub fn load(path: &Path) -> Result<FacesFile, SynthError> {
        read_json(path)
    }
}

impl SceneInfo {
    pub fn load(path: &Path) -> Result<SceneInfo, SynthError> {
        read_json(path)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, SynthError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| SynthError::Json {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), SynthError> {
    let mut text = serde_json::to_string_pretty(v).map_err(|e| SynthError::Json {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(io_err(path))
}

impl SynthOptions {
    /// Range checks: `Err` names the option and what is allowed.
    pub fn check(&self) -> Result<(), SynthError> {
        let bad = |m: String| Err(SynthError::Options(m));
        if !(2..=9999).contains(&self.images) {
            return bad(format!("images = {}: must be 2..=9999", self.images));
        }
        if !(16..=8192).contains(&self.width) || !(16..=8192).contains(&self.height) {
            return bad(format!(
                "size {}x{}: width and height must be 16..=8192",
                self.width, self.height
            ));
        }
        if !(self.exposure_range_ev.is_finite() && (0.0..=6.0).contains(&self.exposure_range_ev)) {
            return bad(format!(
                "exposure_range_ev = {}: must be 0..=6",
                self.exposure_range_ev
            ));
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return bad(format!(
                "jpeg_quality = {}: must be 1..=100",
                self.jpeg_quality
            ));
        }
        Ok(())
    }

    /// The camera of every photo.
    pub fn camera(&self) -> Camera {
        walk::camera(self.width, self.height)
    }

    /// The photos of the walk (poses, exposures, lighting ids) without rendering anything.
    pub fn shots(&self) -> Vec<Shot> {
        walk::plan(
            self.seed,
            self.images,
            self.exposure_range_ev,
            self.lighting_change,
        )
    }
}

/// Generate the venue into `out` (created if needed; files of an earlier run are overwritten).
pub fn generate(opts: &SynthOptions, out: &Path) -> Result<SynthSummary, SynthError> {
    generate_with_progress(opts, out, |_, _| {})
}

/// [`generate`], calling `progress(done, total)` after each photo (from worker threads).
pub fn generate_with_progress(
    opts: &SynthOptions,
    out: &Path,
    progress: impl Fn(usize, usize) + Sync,
) -> Result<SynthSummary, SynthError> {
    let start = std::time::Instant::now();
    opts.check()?;
    let scene = Scene::new(opts.seed);
    let cam = opts.camera();
    let shots = opts.shots();
    let photos_dir = out.join("photos");
    let gt_dir = out.join("ground_truth");
    // A photo folder with other files (e.g. from a run with more photos) would give the capture
    // stage photos without ground truth: refuse rather than delete anything.
    if photos_dir.is_dir() {
        let names: std::collections::BTreeSet<&str> =
            shots.iter().map(|s| s.name.as_str()).collect();
        let rd = std::fs::read_dir(&photos_dir).map_err(io_err(&photos_dir))?;
        for e in rd {
            let e = e.map_err(io_err(&photos_dir))?;
            let name = e.file_name().to_string_lossy().to_string();
            if !names.contains(name.as_str()) {
                return Err(SynthError::Occupied {
                    path: photos_dir.clone(),
                    name,
                });
            }
        }
    }
    for d in [out, &photos_dir, &gt_dir] {
        std::fs::create_dir_all(d).map_err(io_err(d))?;
    }

    // Photos, in parallel (each render is itself parallel over rows).
    let done = AtomicUsize::new(0);
    shots
        .par_iter()
        .try_for_each(|shot| -> Result<(), SynthError> {
            let lighting = &scene.lightings[shot.lighting as usize];
            let img = scene.render(&cam, &shot.pose, shot.exposure_scale(), lighting);
            let path = photos_dir.join(&shot.name);
            let bytes = encode_jpeg(&img, shot, opts.jpeg_quality, &path)?;
            std::fs::write(&path, bytes).map_err(io_err(&path))?;
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, shots.len());
            Ok(())
        })?;

    // Ground-truth model.
    let rec = ground_truth_model(&scene, &cam, &shots, opts);
    rec.write_text(&gt_dir)?;

    let faces = faces_file(&scene, &cam, &shots);
    write_json(&gt_dir.join("faces.json"), &faces)?;

    let keyframes: Vec<String> = walk::keyframes(shots.len())
        .into_iter()
        .map(|i| shots[i].name.clone())
        .collect();
    let calibration: Vec<CalibrationInfo> = walk::calibration_pairs(&shots)
        .into_iter()
        .map(|(a, b, d)| CalibrationInfo {
            a: shots[a].name.clone(),
            b: shots[b].name.clone(),
            distance_m: d,
        })
        .collect();
    let info = scene_info(
        &scene,
        &cam,
        &shots,
        opts,
        &keyframes,
        &calibration,
        rec.points.len(),
    );
    write_json(&gt_dir.join("scene.json"), &info)?;

    let config_path = out.join("venue.toml");
    let toml = venue_toml(opts, &keyframes, &calibration);
    std::fs::write(&config_path, toml).map_err(io_err(&config_path))?;
    // The config must pass every check a run makes (keyframes and calibration photos exist).
    let loaded = Config::load(&config_path)?;
    flythrough_core::config::preflight(&loaded, None, flythrough_core::Stage::Render)?;

    let photos_with_detectable_face = faces
        .photos
        .iter()
        .filter(|p| p.faces.iter().any(|f| f.expected_detectable))
        .count();
    Ok(SynthSummary {
        out: out.to_path_buf(),
        photos_dir,
        config_path,
        ground_truth_dir: gt_dir,
        images: shots.len(),
        faces: faces.photos.iter().map(|p| p.faces.len()).sum(),
        photos_with_detectable_face,
        points3d: rec.points.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// JPEG bytes with the photo's EXIF in an APP1 segment.
fn encode_jpeg(
    img: &image::RgbImage,
    shot: &Shot,
    quality: u8,
    path: &Path,
) -> Result<Vec<u8>, SynthError> {
    let exif = exif_blob::exif_payload(shot, img.width(), img.height()).map_err(|source| {
        SynthError::Exif {
            name: shot.name.clone(),
            source,
        }
    })?;
    let mut bytes = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality);
    let img_err = |source| SynthError::Image {
        path: path.to_path_buf(),
        source,
    };
    enc.set_exif_metadata(exif)
        .map_err(|e| img_err(image::ImageError::Unsupported(e)))?;
    enc.write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
    .map_err(img_err)?;
    Ok(bytes)
}

/// COLMAP model of the truth: one PINHOLE camera, every photo's pose, and `opts.points3d` surface
/// points (traced through random pixels) with their tracks: every photo that sees the point
/// unoccluded, with its exact projection as the 2D point.
pub fn ground_truth_model(
    scene: &Scene,
    cam: &Camera,
    shots: &[Shot],
    opts: &SynthOptions,
) -> Reconstruction {
    let mut rec = Reconstruction::default();
    rec.cameras.insert(cam.id, cam.clone());
    let mut rng = rng::Rng::new(opts.seed ^ 0x9017_5eed);
    let n = shots.len();
    let samples: Vec<(usize, Vector2<f64>)> = (0..opts.points3d)
        .map(|k| {
            let px = Vector2::new(rng.f64() * cam.width as f64, rng.f64() * cam.height as f64);
            (k % n, px)
        })
        .collect();
    let lit0 = &scene.lightings[0];
    type Sampled = Option<(V3, [u8; 3], Vec<(usize, Vector2<f64>)>)>;
    let points: Vec<Sampled> = samples
        .par_iter()
        .map(|&(i, px)| {
            let (o, d) = Scene::pixel_ray(cam, &shots[i].pose, px);
            let hit = scene.trace_footprint(&o, &d, 0.0)?;
            let rad = scene.shade(&hit, lit0);
            let rgb = rad.map(|c| (texture::linear_to_srgb(c) * 255.0 + 0.5) as u8);
            let obs: Vec<(usize, Vector2<f64>)> = shots
                .iter()
                .enumerate()
                .filter_map(|(j, s)| {
                    let q = cam.project(&s.pose.transform(&hit.point))?;
                    if !cam.in_image(&q) {
                        return None;
                    }
                    scene
                        .visible_from(&s.pose.center(), &hit.point, hit.object, 1e-6)
                        .then_some((j, q))
                })
                .collect();
            Some((hit.point, rgb, obs))
        })
        .collect();
    for s in shots {
        rec.images.insert(
            s.index as u32 + 1,
            Image {
                id: s.index as u32 + 1,
                camera_id: cam.id,
                name: s.name.clone(),
                pose: s.pose,
                points2d: Vec::new(),
            },
        );
    }
    for (k, p) in points.into_iter().flatten().enumerate() {
        let (xyz, rgb, obs) = p;
        let id = k as u64 + 1;
        let mut track = Vec::with_capacity(obs.len());
        for (j, q) in obs {
            let im = rec.images.get_mut(&(j as u32 + 1)).expect("image exists");
            track.push((im.id, im.points2d.len() as u32));
            im.points2d.push((q, Some(id)));
        }
        rec.points.insert(
            id,
            Point3D {
                id,
                xyz,
                rgb,
                error: 0.0,
                track,
            },
        );
    }
    rec
}

/// Faces visible in every photo (see [`FaceBox`]).
pub fn faces_file(scene: &Scene, cam: &Camera, shots: &[Shot]) -> FacesFile {
    let (w, h) = (cam.width as f64, cam.height as f64);
    let photos = shots
        .par_iter()
        .map(|s| {
            let c = s.pose.center();
            let mut faces = Vec::new();
            for p in &scene.posters {
                let Some((img_name, corners)) = &p.face else {
                    continue;
                };
                // 10x10 samples over the face region (bilinear in its corners).
                const G: usize = 10;
                let mut visible = 0usize;
                let mut vis_px: Vec<Vector2<f64>> = Vec::new();
                for a in 0..G {
                    for b in 0..G {
                        let (x, y) = ((a as f64 + 0.5) / G as f64, (b as f64 + 0.5) / G as f64);
                        let top = corners[0] + (corners[1] - corners[0]) * x;
                        let bot = corners[3] + (corners[2] - corners[3]) * x;
                        let pt = top + (bot - top) * y;
                        let Some(q) = cam.project(&s.pose.transform(&pt)) else {
                            continue;
                        };
                        if cam.in_image(&q) && scene.visible_from(&c, &pt, p.object, 1e-6) {
                            visible += 1;
                            vis_px.push(q);
                        }
                    }
                }
                if visible == 0 {
                    continue;
                }
                let proj: Vec<Option<Vector2<f64>>> = corners
                    .iter()
                    .map(|q| cam.project(&s.pose.transform(q)))
                    .collect();
                let pts: Vec<Vector2<f64>> = if proj.iter().all(Option::is_some) {
                    proj.into_iter().flatten().collect()
                } else {
                    vis_px.clone()
                };
                let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
                for q in &pts {
                    x0 = x0.min(q.x);
                    y0 = y0.min(q.y);
                    x1 = x1.max(q.x);
                    y1 = y1.max(q.y);
                }
                let full = (x1 - x0).min(y1 - y0);
                let (cx0, cy0) = (x0.clamp(0.0, w), y0.clamp(0.0, h));
                let (cx1, cy1) = (x1.clamp(0.0, w), y1.clamp(0.0, h));
                let r2 = |v: f64| (v * 100.0).round() / 100.0;
                let bbox = [r2(cx0), r2(cy0), r2(cx1 - cx0), r2(cy1 - cy0)];
                let size = bbox[2].min(bbox[3]);
                let centre = (corners[0] + corners[2]) * 0.5;
                let angle = p.normal.angle(&(c - centre)).to_degrees();
                let frac = visible as f64 / (G * G) as f64;
                faces.push(FaceBox {
                    poster: p.name.clone(),
                    image: img_name.clone(),
                    bbox,
                    size_px: size,
                    full_size_px: r2(full),
                    visible_fraction: frac,
                    view_angle_deg: r2(angle),
                    expected_detectable: size >= MIN_DETECTABLE_PX && frac >= 0.9 && angle <= 50.0,
                });
            }
            PhotoFaces {
                name: s.name.clone(),
                faces,
            }
        })
        .collect();
    FacesFile {
        format: "flythrough-synth-faces/1".into(),
        rule:
            "expected_detectable = size_px >= 24 && visible_fraction >= 0.9 && view_angle_deg <= 50"
                .into(),
        min_detectable_px: MIN_DETECTABLE_PX,
        photos,
    }
}

fn a3(v: &V3) -> [f64; 3] {
    [v.x, v.y, v.z]
}

#[allow(clippy::too_many_arguments)]
fn scene_info(
    scene: &Scene,
    cam: &Camera,
    shots: &[Shot],
    opts: &SynthOptions,
    keyframes: &[String],
    calibration: &[CalibrationInfo],
    points3d: usize,
) -> SceneInfo {
    let (fx, fy) = cam.focal();
    let (cx, cy) = cam.principal_point();
    let ev_ref = walk::ev_ref();
    SceneInfo {
        format: "flythrough-synth-scene/1".into(),
        seed: opts.seed,
        units: "metres".into(),
        up: [0.0, 0.0, 1.0],
        gravity: [0.0, 0.0, -1.0],
        room_min: [0.0; 3],
        room_max: ROOM,
        conventions:
            "world: metres, +z up; poses (images.txt): world-to-camera, OpenCV camera axes \
                      (x right, y down, z forward), pixel centres at +0.5 (COLMAP)"
                .into(),
        camera: CameraInfo {
            model: cam.model.name().into(),
            width: cam.width,
            height: cam.height,
            fx,
            fy,
            cx,
            cy,
            hfov_deg: 2.0 * (cam.width as f64 / 2.0 / fx).atan().to_degrees(),
            vfov_deg: 2.0 * (cam.height as f64 / 2.0 / fy).atan().to_degrees(),
            focal_mm: walk::focal_mm(),
            focal_35mm: walk::FOCAL_35MM,
            crop_factor: walk::CROP_FACTOR,
        },
        exposure: ExposureInfo {
            formula:
                "ev = log2(exposure_time_s * iso / 100 / f_number^2); photo radiance scaled by \
                      2^(ev - ev_ref) before the sRGB OETF"
                    .into(),
            f_number: walk::F_NUMBER,
            ref_exposure_time_s: 1.0 / walk::REF_SHUTTER_DEN as f64,
            ref_iso: walk::REF_ISO,
            ev_ref,
            range_ev: opts.exposure_range_ev,
        },
        lightings: scene
            .lightings
            .iter()
            .map(|l| LightingInfo {
                id: l.id,
                name: l.name.clone(),
                ambient: l.ambient,
                lights: l
                    .lights
                    .iter()
                    .map(|p| LightInfo {
                        position: a3(&p.position),
                        color: p.color,
                    })
                    .collect(),
            })
            .collect(),
        photos: shots
            .iter()
            .map(|s| PhotoInfo {
                name: s.name.clone(),
                image_id: s.index as u32 + 1,
                center: a3(&s.pose.center()),
                forward: a3(&s.pose.forward()),
                ev: s.ev,
                ev_offset: s.ev - ev_ref,
                exposure_scale: s.exposure_scale(),
                exposure_time_s: s.exposure_time(),
                shutter: format!("1/{}", s.shutter_den),
                iso: s.iso,
                f_number: walk::F_NUMBER,
                lighting: s.lighting,
                datetime: s.datetime.clone(),
            })
            .collect(),
        keyframes: keyframes.to_vec(),
        calibration: calibration.to_vec(),
        objects: scene
            .objects
            .iter()
            .map(|o| {
                let (lo, hi) = o.shape.bounds();
                let kind = match o.shape {
                    geometry::Shape::Quad { .. } => "quad",
                    geometry::Shape::Box { .. } => "box",
                    geometry::Shape::Cylinder { .. } => "cylinder",
                    geometry::Shape::Sphere { .. } => "sphere",
                };
                ObjectInfo {
                    name: o.name.clone(),
                    kind: kind.into(),
                    min: a3(&lo),
                    max: a3(&hi),
                }
            })
            .collect(),
        posters: scene
            .posters
            .iter()
            .map(|p| PosterInfo {
                name: p.name.clone(),
                face_image: p.face.as_ref().map(|f| f.0.clone()),
                center: a3(&(p.origin + p.right * (p.width / 2.0) + p.up * (p.height / 2.0))),
                normal: a3(&p.normal),
                width: p.width,
                height: p.height,
                face_corners: p.face.as_ref().map(|f| f.1.map(|c| a3(&c))),
            })
            .collect(),
        points3d,
    }
}

/// The `venue.toml` text.
fn venue_toml(
    opts: &SynthOptions,
    keyframes: &[String],
    calibration: &[CalibrationInfo],
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Synthetic venue written by `flythrough synth` (crate flythrough-synth), seed {}, {} photos {}x{}.",
        opts.seed, opts.images, opts.width, opts.height
    );
    s.push_str(
        "# Ground truth (poses, metric scale, exposures, lighting, faces) is in ground_truth/.\n",
    );
    s.push_str("# Stage sections are left at their defaults (`flythrough config --defaults`).\n\n");
    s.push_str("[venue]\nname = \"synthetic-venue\"\nphotos = \"photos\"\n");
    s.push_str(
        "# Photos evenly spaced along the walk (a closed loop around the table), in walk order.\n",
    );
    let kf: Vec<String> = keyframes.iter().map(|k| format!("\"{k}\"")).collect();
    let _ = writeln!(s, "keyframes = [{}]", kf.join(", "));
    for c in calibration {
        s.push_str("\n# True camera-centre distance from the ground truth, in metres.\n");
        let _ = writeln!(
            s,
            "[[calibration]]\na = \"{}\"\nb = \"{}\"\ndistance_m = {:?}",
            c.a, c.b, c.distance_m
        );
    }
    s
}
