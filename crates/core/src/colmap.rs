//! COLMAP sparse models: `cameras`, `images`, `points3D`, in text (read + write) and binary (read + write).
//!
//! Layout and conventions follow COLMAP's `doc/format.rst`: poses are world-to-camera, quaternions are
//! Hamilton with the scalar first, a 2D point's `POINT3D_ID` is −1 when it is not triangulated.
//! If a folder holds both, binary files are preferred, as COLMAP does.
//!
//! The files are untrusted input: every count and length read from a binary file is checked against
//! the bytes that remain before anything is allocated or looped over, sizes must fit COLMAP's `u32`,
//! poses and positions must be finite, ids must not repeat, and each error names the file and the
//! line or byte offset. Text files are read one line at a time.

use crate::camera::{Camera, CameraModel};
use crate::pose::Pose;
use nalgebra::{Quaternion, UnitQuaternion, Vector2, Vector3};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ColmapError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    /// A binary file: the byte offset where the problem is.
    #[error("{path}: at byte {offset}: {msg}")]
    Binary {
        path: PathBuf,
        offset: usize,
        msg: String,
    },
    #[error(
        "{0}: no COLMAP model here (expected cameras.txt/images.txt/points3D.txt or the .bin files)"
    )]
    NotAModel(PathBuf),
}

type Result<T> = std::result::Result<T, ColmapError>;

/// One registered image.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub id: u32,
    pub camera_id: u32,
    pub name: String,
    pub pose: Pose,
    /// Keypoints in pixels with the id of the 3D point they observe, if any.
    pub points2d: Vec<(Vector2<f64>, Option<u64>)>,
}

/// One triangulated point with its track `(image_id, point2d_idx)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Point3D {
    pub id: u64,
    pub xyz: Vector3<f64>,
    pub rgb: [u8; 3],
    /// Mean reprojection error in pixels.
    pub error: f64,
    pub track: Vec<(u32, u32)>,
}

/// A sparse reconstruction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconstruction {
    pub cameras: BTreeMap<u32, Camera>,
    pub images: BTreeMap<u32, Image>,
    pub points: BTreeMap<u64, Point3D>,
}

impl Reconstruction {
    /// Image by file name.
    pub fn image_by_name(&self, name: &str) -> Option<&Image> {
        self.images.values().find(|im| im.name == name)
    }

    /// Read a model folder, binary if `cameras.bin` exists, text otherwise.
    pub fn read(dir: &Path) -> Result<Self> {
        if dir.join("cameras.bin").exists() {
            Self::read_binary(dir)
        } else if dir.join("cameras.txt").exists() {
            Self::read_text(dir)
        } else {
            Err(ColmapError::NotAModel(dir.to_path_buf()))
        }
    }

    /// Write `cameras.txt`, `images.txt`, `points3D.txt` into `dir` (created if needed).
    pub fn write_text(&self, dir: &Path) -> Result<()> {
        let io = |path: PathBuf| {
            move |source| ColmapError::Io {
                path: path.clone(),
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let mut s = String::new();
        s.push_str("# Camera list with one line of data per camera:\n");
        s.push_str("#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n");
        let _ = writeln!(s, "# Number of cameras: {}", self.cameras.len());
        for c in self.cameras.values() {
            let _ = write!(s, "{} {} {} {}", c.id, c.model.name(), c.width, c.height);
            for p in &c.params {
                let _ = write!(s, " {}", fmt_f64(*p));
            }
            s.push('\n');
        }
        let p = dir.join("cameras.txt");
        std::fs::write(&p, s).map_err(io(p.clone()))?;

        let mut s = String::new();
        s.push_str("# Image list with two lines of data per image:\n");
        s.push_str("#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n");
        s.push_str("#   POINTS2D[] as (X, Y, POINT3D_ID)\n");
        let _ = writeln!(s, "# Number of images: {}", self.images.len());
        for im in self.images.values() {
            let q = im.pose.rotation.quaternion();
            let t = im.pose.translation;
            let _ = writeln!(
                s,
                "{} {} {} {} {} {} {} {} {} {}",
                im.id,
                fmt_f64(q.w),
                fmt_f64(q.i),
                fmt_f64(q.j),
                fmt_f64(q.k),
                fmt_f64(t.x),
                fmt_f64(t.y),
                fmt_f64(t.z),
                im.camera_id,
                im.name
            );
            let mut first = true;
            for (xy, pid) in &im.points2d {
                if !first {
                    s.push(' ');
                }
                first = false;
                let _ = write!(
                    s,
                    "{} {} {}",
                    fmt_f64(xy.x),
                    fmt_f64(xy.y),
                    pid.map(|v| v as i64).unwrap_or(-1)
                );
            }
            s.push('\n');
        }
        let p = dir.join("images.txt");
        std::fs::write(&p, s).map_err(io(p.clone()))?;

        let mut s = String::new();
        s.push_str("# 3D point list with one line of data per point:\n");
        s.push_str("#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n");
        let _ = writeln!(s, "# Number of points: {}", self.points.len());
        for pt in self.points.values() {
            let _ = write!(
                s,
                "{} {} {} {} {} {} {} {}",
                pt.id,
                fmt_f64(pt.xyz.x),
                fmt_f64(pt.xyz.y),
                fmt_f64(pt.xyz.z),
                pt.rgb[0],
                pt.rgb[1],
                pt.rgb[2],
                fmt_f64(pt.error)
            );
            for (iid, idx) in &pt.track {
                let _ = write!(s, " {iid} {idx}");
            }
            s.push('\n');
        }
        let p = dir.join("points3D.txt");
        std::fs::write(&p, s).map_err(io(p.clone()))?;
        Ok(())
    }

    /// Read the text format. `points3D.txt` may be missing (cameras and poses only).
    pub fn read_text(dir: &Path) -> Result<Self> {
        let cameras = parse_cameras_txt(
            &dir.join("cameras.txt"),
            &mut open_text(&dir.join("cameras.txt"))?,
        )?;
        let images = parse_images_txt(
            &dir.join("images.txt"),
            &mut open_text(&dir.join("images.txt"))?,
        )?;
        let path = dir.join("points3D.txt");
        let points = if path.exists() {
            parse_points_txt(&path, &mut open_text(&path)?)?
        } else {
            BTreeMap::new()
        };
        Ok(Reconstruction {
            cameras,
            images,
            points,
        })
    }

    /// Write `cameras.bin`, `images.bin`, `points3D.bin`.
    pub fn write_binary(&self, dir: &Path) -> Result<()> {
        let io = |path: PathBuf| {
            move |source| ColmapError::Io {
                path: path.clone(),
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let mut b = Vec::new();
        b.extend((self.cameras.len() as u64).to_le_bytes());
        for c in self.cameras.values() {
            b.extend((c.id as i32).to_le_bytes());
            b.extend(c.model.id().to_le_bytes());
            b.extend((c.width as u64).to_le_bytes());
            b.extend((c.height as u64).to_le_bytes());
            for p in &c.params {
                b.extend(p.to_le_bytes());
            }
        }
        let p = dir.join("cameras.bin");
        std::fs::write(&p, &b).map_err(io(p.clone()))?;
        let mut b = Vec::new();
        b.extend((self.images.len() as u64).to_le_bytes());
        for im in self.images.values() {
            b.extend((im.id as i32).to_le_bytes());
            let q = im.pose.rotation.quaternion();
            for v in [
                q.w,
                q.i,
                q.j,
                q.k,
                im.pose.translation.x,
                im.pose.translation.y,
                im.pose.translation.z,
            ] {
                b.extend(v.to_le_bytes());
            }
            b.extend((im.camera_id as i32).to_le_bytes());
            b.extend(im.name.as_bytes());
            b.push(0);
            b.extend((im.points2d.len() as u64).to_le_bytes());
            for (xy, id) in &im.points2d {
                b.extend(xy.x.to_le_bytes());
                b.extend(xy.y.to_le_bytes());
                b.extend(id.map(|v| v as i64).unwrap_or(-1).to_le_bytes());
            }
        }
        let p = dir.join("images.bin");
        std::fs::write(&p, &b).map_err(io(p.clone()))?;
        let mut b = Vec::new();
        b.extend((self.points.len() as u64).to_le_bytes());
        for pt in self.points.values() {
            b.extend(pt.id.to_le_bytes());
            for v in [pt.xyz.x, pt.xyz.y, pt.xyz.z] {
                b.extend(v.to_le_bytes());
            }
            b.extend(pt.rgb);
            b.extend(pt.error.to_le_bytes());
            b.extend((pt.track.len() as u64).to_le_bytes());
            for (i, j) in &pt.track {
                b.extend((*i as i32).to_le_bytes());
                b.extend((*j as i32).to_le_bytes());
            }
        }
        let p = dir.join("points3D.bin");
        std::fs::write(&p, &b).map_err(io(p.clone()))?;
        Ok(())
    }

    /// Read the binary format. Every count in the files is checked against the bytes that remain
    /// before anything is allocated, so a crafted or damaged file is an error naming the file, the
    /// byte offset and what is wrong, never a huge allocation.
    pub fn read_binary(dir: &Path) -> Result<Self> {
        let cameras = parse_cameras_bin(BinReader::open(&dir.join("cameras.bin"))?)?;
        let images = parse_images_bin(BinReader::open(&dir.join("images.bin"))?)?;
        let path = dir.join("points3D.bin");
        let points = if path.exists() {
            parse_points_bin(BinReader::open(&path)?)?
        } else {
            BTreeMap::new()
        };
        Ok(Reconstruction {
            cameras,
            images,
            points,
        })
    }

    /// What makes an imported model unusable although each file reads: no image, or an image whose
    /// camera is not in the model. `Err` says what, naming the image.
    pub fn check_usable(&self) -> std::result::Result<(), String> {
        if self.images.is_empty() {
            return Err("the model holds no image".into());
        }
        if let Some(im) = self
            .images
            .values()
            .find(|im| !self.cameras.contains_key(&im.camera_id))
        {
            return Err(format!(
                "image {} ({:?}) refers to camera {}, which the model does not hold",
                im.id, im.name, im.camera_id
            ));
        }
        Ok(())
    }
}

/// Smallest size in bytes of one record of each binary file, to bound every count read from a file
/// by the bytes that remain after it.
const CAMERA_MIN_BYTES: usize = 4 + 4 + 8 + 8 + 8 * 3; // id, model, width, height, 3 params (SIMPLE_PINHOLE)
const IMAGE_MIN_BYTES: usize = 4 + 7 * 8 + 4 + 2 + 8; // id, qvec, tvec, camera id, 1-byte name + NUL, num_points2D
const POINT2D_BYTES: usize = 8 + 8 + 8; // x, y, point3D id
const POINT3D_MIN_BYTES: usize = 8 + 3 * 8 + 3 + 8 + 8; // id, xyz, rgb, error, track length
const TRACK_ELEM_BYTES: usize = 4 + 4; // image id, point2D index
/// Longest image name accepted (bytes; a path's limit on Linux).
const MAX_NAME_BYTES: usize = 4096;

fn parse_cameras_bin(mut r: BinReader) -> Result<BTreeMap<u32, Camera>> {
    let n = r.count("the file", "cameras", CAMERA_MIN_BYTES)?;
    let mut cameras = BTreeMap::new();
    for _ in 0..n {
        let at = r.pos;
        let id = r.id("camera")?;
        let mid = r.i32()?;
        let model = CameraModel::from_id(mid).ok_or_else(|| {
            r.err_at(
                r.pos - 4,
                format!("camera {id}: camera model id {mid} is not supported (0-4: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV)"),
            )
        })?;
        let size_at = r.pos;
        let (width, height) = (r.u64()?, r.u64()?);
        let mut params = Vec::with_capacity(model.num_params());
        for _ in 0..model.num_params() {
            params.push(r.f64()?);
        }
        let cam = camera(id, model, width, height, params).map_err(|m| r.err_at(size_at, m))?;
        if cameras.insert(id, cam).is_some() {
            return Err(r.err_at(at, format!("camera id {id} appears twice")));
        }
    }
    r.finish("camera")?;
    Ok(cameras)
}

fn parse_images_bin(mut r: BinReader) -> Result<BTreeMap<u32, Image>> {
    let n = r.count("the file", "images", IMAGE_MIN_BYTES)?;
    let mut images = BTreeMap::new();
    for _ in 0..n {
        let at = r.pos;
        let id = r.id("image")?;
        let pose_at = r.pos;
        let mut v = [0.0; 7];
        for x in &mut v {
            *x = r.f64()?;
        }
        let pose = pose(v).map_err(|m| r.err_at(pose_at, format!("image {id}: {m}")))?;
        let camera_id = r.id("camera")?;
        let name = r.name(id)?;
        let n = r.count(&format!("image {id}"), "2D points", POINT2D_BYTES)?;
        let mut points2d = Vec::with_capacity(n);
        for _ in 0..n {
            let x = r.f64()?;
            let y = r.f64()?;
            let pid = r.i64()?;
            points2d.push((Vector2::new(x, y), (pid >= 0).then_some(pid as u64)));
        }
        let im = Image {
            id,
            camera_id,
            name,
            pose,
            points2d,
        };
        if images.insert(id, im).is_some() {
            return Err(r.err_at(at, format!("image id {id} appears twice")));
        }
    }
    r.finish("image")?;
    Ok(images)
}

fn parse_points_bin(mut r: BinReader) -> Result<BTreeMap<u64, Point3D>> {
    let n = r.count("the file", "points", POINT3D_MIN_BYTES)?;
    let mut points = BTreeMap::new();
    for _ in 0..n {
        let at = r.pos;
        let id = r.u64()?;
        let xyz = Vector3::new(r.f64()?, r.f64()?, r.f64()?);
        if !xyz.iter().all(|v| v.is_finite()) {
            return Err(r.err_at(
                at + 8,
                format!("point {id}: position {xyz:?} is not finite"),
            ));
        }
        let rgb = [r.u8()?, r.u8()?, r.u8()?];
        let error = r.f64()?;
        let n = r.count(&format!("point {id}"), "track elements", TRACK_ELEM_BYTES)?;
        let mut track = Vec::with_capacity(n);
        for _ in 0..n {
            track.push((r.u32()?, r.u32()?));
        }
        let pt = Point3D {
            id,
            xyz,
            rgb,
            error,
            track,
        };
        if points.insert(id, pt).is_some() {
            return Err(r.err_at(at, format!("point id {id} appears twice")));
        }
    }
    r.finish("point")?;
    Ok(points)
}

/// A camera from file values: width and height in 1..=u32::MAX, every parameter finite and the
/// focal length(s) positive. `Err` says what is wrong, naming the camera.
fn camera(
    id: u32,
    model: CameraModel,
    width: u64,
    height: u64,
    params: Vec<f64>,
) -> std::result::Result<Camera, String> {
    let size = |v: u64| u32::try_from(v).ok().filter(|&v| v > 0);
    let (Some(w), Some(h)) = (size(width), size(height)) else {
        return Err(format!(
            "camera {id}: width {width} x height {height} is not an image size (each in 1..=4294967295)"
        ));
    };
    if let Some(p) = params.iter().find(|p| !p.is_finite()) {
        return Err(format!("camera {id}: parameter {p} is not a number"));
    }
    let focals = match model {
        CameraModel::Pinhole | CameraModel::Opencv => 2,
        _ => 1,
    };
    if let Some(f) = params[..focals].iter().find(|&&f| f <= 0.0) {
        return Err(format!("camera {id}: focal length {f} must be > 0"));
    }
    Ok(Camera {
        id,
        model,
        width: w,
        height: h,
        params,
    })
}

/// A world-to-camera pose from `QW QX QY QZ TX TY TZ`: every value finite and the quaternion not
/// zero (it is normalised).
fn pose(v: [f64; 7]) -> std::result::Result<Pose, String> {
    let q = Quaternion::new(v[0], v[1], v[2], v[3]);
    let norm = q.norm();
    if !norm.is_finite() || norm < 1e-12 {
        return Err(format!(
            "rotation (QW, QX, QY, QZ) = ({}, {}, {}, {}) is not a rotation: it must be finite and not zero",
            v[0], v[1], v[2], v[3]
        ));
    }
    if !v[4..].iter().all(|t| t.is_finite()) {
        return Err(format!(
            "translation ({}, {}, {}) is not finite",
            v[4], v[5], v[6]
        ));
    }
    Ok(Pose::new(
        unit_quaternion(v[0], v[1], v[2], v[3]),
        Vector3::new(v[4], v[5], v[6]),
    ))
}

/// COLMAP's invalid id (`-1` as written by tools that store ids as `int`) is not an id.
fn check_id(what: &str, id: u32) -> std::result::Result<u32, String> {
    if id == u32::MAX {
        Err(format!(
            "{what} id {id} (-1) is COLMAP's invalid id, not an id"
        ))
    } else {
        Ok(id)
    }
}

/// A unit quaternion from file values: kept bit-exact when already normalised (so models round-trip
/// exactly), normalised otherwise.
fn unit_quaternion(w: f64, x: f64, y: f64, z: f64) -> UnitQuaternion<f64> {
    let q = Quaternion::new(w, x, y, z);
    if (q.norm() - 1.0).abs() < 1e-12 {
        UnitQuaternion::new_unchecked(q)
    } else {
        UnitQuaternion::from_quaternion(q)
    }
}

/// Shortest decimal that round-trips an f64 (Rust's `Display` does this).
fn fmt_f64(v: f64) -> String {
    format!("{v}")
}

fn parse<T: std::str::FromStr>(s: &str, path: &Path, line: usize) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| ColmapError::Parse {
        path: path.to_path_buf(),
        line,
        msg: format!("{:?}: {e}", excerpt(s)),
    })
}

/// A token of a file as an error quotes it: at most 64 characters (a file may hold one of megabytes).
fn excerpt(s: &str) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]).into(),
        None => s.into(),
    }
}

/// Open a model file, refusing anything but a regular file (a FIFO or `/dev/zero` would never end).
fn open_regular(path: &Path) -> Result<std::fs::File> {
    let io = |source| ColmapError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    if !f.metadata().map_err(io)?.is_file() {
        return Err(io(std::io::Error::other("not a regular file")));
    }
    Ok(f)
}

fn open_text(path: &Path) -> Result<BufReader<std::fs::File>> {
    Ok(BufReader::new(open_regular(path)?))
}

/// The lines of a text file with their 1-based numbers, comment lines (`#`) left out; empty lines are
/// kept (`images.txt` needs them: an image with no 2D points has an empty second line). Read one at
/// a time, so memory follows the longest line, not the file.
fn text_lines<'a>(
    path: &'a Path,
    r: &'a mut dyn BufRead,
) -> impl Iterator<Item = Result<(usize, String)>> + 'a {
    r.lines()
        .enumerate()
        .map(move |(i, l)| {
            l.map(|l| (i + 1, l)).map_err(|source| ColmapError::Io {
                path: path.to_path_buf(),
                source,
            })
        })
        .filter(|l| !matches!(l, Ok((_, l)) if l.starts_with('#')))
}

fn parse_cameras_txt(path: &Path, r: &mut dyn BufRead) -> Result<BTreeMap<u32, Camera>> {
    let mut cameras = BTreeMap::new();
    for l in text_lines(path, r) {
        let (ln, line) = l?;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let perr = |msg: String| ColmapError::Parse {
            path: path.to_path_buf(),
            line: ln,
            msg,
        };
        if f.len() < 4 {
            return Err(perr(
                "expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]".into(),
            ));
        }
        let model = CameraModel::from_name(f[1]).ok_or_else(|| {
            perr(format!(
                "camera model {} is not supported (use SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL or OPENCV)",
                excerpt(f[1])
            ))
        })?;
        if f.len() - 4 != model.num_params() {
            return Err(perr(format!(
                "{} takes {} parameters, found {}",
                model.name(),
                model.num_params(),
                f.len() - 4
            )));
        }
        let params = f[4..]
            .iter()
            .map(|v| parse::<f64>(v, path, ln))
            .collect::<Result<Vec<_>>>()?;
        let id = check_id("camera", parse(f[0], path, ln)?).map_err(perr)?;
        let cam = camera(
            id,
            model,
            parse(f[2], path, ln)?,
            parse(f[3], path, ln)?,
            params,
        )
        .map_err(perr)?;
        if cameras.insert(id, cam).is_some() {
            return Err(perr(format!("camera id {id} appears twice")));
        }
    }
    Ok(cameras)
}

fn parse_images_txt(path: &Path, r: &mut dyn BufRead) -> Result<BTreeMap<u32, Image>> {
    let mut images = BTreeMap::new();
    let mut it = text_lines(path, r);
    while let Some(l) = it.next() {
        let (ln, line) = l?;
        if line.trim().is_empty() {
            continue;
        }
        let perr = |line: usize, msg: String| ColmapError::Parse {
            path: path.to_path_buf(),
            line,
            msg,
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            return Err(perr(
                ln,
                "expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME".into(),
            ));
        }
        let id = check_id("image", parse(f[0], path, ln)?).map_err(|m| perr(ln, m))?;
        let mut v = [0.0; 7];
        for (x, s) in v.iter_mut().zip(&f[1..8]) {
            *x = parse(s, path, ln)?;
        }
        let pose = pose(v).map_err(|m| perr(ln, format!("image {id}: {m}")))?;
        let camera_id = check_id("camera", parse(f[8], path, ln)?).map_err(|m| perr(ln, m))?;
        // Names may contain spaces: everything after CAMERA_ID.
        let name = f[9..].join(" ");
        if name.len() > MAX_NAME_BYTES {
            return Err(perr(
                ln,
                format!(
                    "image {id}: a name of {} bytes is not a file name",
                    name.len()
                ),
            ));
        }
        let mut points2d = Vec::new();
        if let Some(l) = it.next() {
            let (ln2, pts) = l?;
            let g: Vec<&str> = pts.split_whitespace().collect();
            if !g.len().is_multiple_of(3) {
                return Err(perr(ln2, "POINTS2D must be triples X Y POINT3D_ID".into()));
            }
            points2d.reserve_exact(g.len() / 3);
            for c in g.chunks(3) {
                let x: f64 = parse(c[0], path, ln2)?;
                let y: f64 = parse(c[1], path, ln2)?;
                let pid: i64 = parse(c[2], path, ln2)?;
                points2d.push((Vector2::new(x, y), (pid >= 0).then_some(pid as u64)));
            }
        }
        let im = Image {
            id,
            camera_id,
            name,
            pose,
            points2d,
        };
        if images.insert(id, im).is_some() {
            return Err(perr(ln, format!("image id {id} appears twice")));
        }
    }
    Ok(images)
}

fn parse_points_txt(path: &Path, r: &mut dyn BufRead) -> Result<BTreeMap<u64, Point3D>> {
    let mut points = BTreeMap::new();
    for l in text_lines(path, r) {
        let (ln, line) = l?;
        if line.trim().is_empty() {
            continue;
        }
        let perr = |msg: String| ColmapError::Parse {
            path: path.to_path_buf(),
            line: ln,
            msg,
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || !(f.len() - 8).is_multiple_of(2) {
            return Err(perr("expected POINT3D_ID X Y Z R G B ERROR TRACK[]".into()));
        }
        let track = f[8..]
            .chunks(2)
            .map(|c| Ok((parse(c[0], path, ln)?, parse(c[1], path, ln)?)))
            .collect::<Result<Vec<_>>>()?;
        let id: u64 = parse(f[0], path, ln)?;
        let xyz = Vector3::new(
            parse(f[1], path, ln)?,
            parse(f[2], path, ln)?,
            parse(f[3], path, ln)?,
        );
        if !xyz.iter().all(|v: &f64| v.is_finite()) {
            return Err(perr(format!("point {id}: position {xyz:?} is not finite")));
        }
        let pt = Point3D {
            id,
            xyz,
            rgb: [
                parse(f[4], path, ln)?,
                parse(f[5], path, ln)?,
                parse(f[6], path, ln)?,
            ],
            error: parse(f[7], path, ln)?,
            track,
        };
        if points.insert(id, pt).is_some() {
            return Err(perr(format!("point id {id} appears twice")));
        }
    }
    Ok(points)
}

/// A binary model file in memory, read front to back. Every error names the file and the byte
/// offset.
struct BinReader {
    path: PathBuf,
    data: Vec<u8>,
    pos: usize,
}

impl BinReader {
    fn open(path: &Path) -> Result<Self> {
        let mut data = Vec::new();
        open_regular(path)?
            .read_to_end(&mut data)
            .map_err(|source| ColmapError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(BinReader::new(path, data))
    }
    fn new(path: &Path, data: Vec<u8>) -> Self {
        BinReader {
            path: path.to_path_buf(),
            data,
            pos: 0,
        }
    }
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    fn err_at(&self, offset: usize, msg: String) -> ColmapError {
        ColmapError::Binary {
            path: self.path.clone(),
            offset,
            msg,
        }
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        if self.remaining() < N {
            return Err(self.err_at(
                self.pos,
                format!(
                    "the file ends early ({N} bytes needed, {} remain)",
                    self.remaining()
                ),
            ));
        }
        let mut a = [0u8; N];
        a.copy_from_slice(&self.data[self.pos..self.pos + N]);
        self.pos += N;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.take()?))
    }
    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.take()?))
    }
    /// A camera or image id (`u32`; COLMAP's invalid id refused).
    fn id(&mut self, what: &str) -> Result<u32> {
        let at = self.pos;
        let id = self.u32()?;
        check_id(what, id).map_err(|m| self.err_at(at, m))
    }
    /// A `u64` count of records of at least `record` bytes each, checked against the bytes that
    /// remain after it: `"{whose} claims {n} {what} but only {r} bytes remain"` when they cannot hold
    /// that many.
    fn count(&mut self, whose: &str, what: &str, record: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u64()?;
        let rem = self.remaining();
        if n > (rem / record) as u64 {
            return Err(self.err_at(
                at,
                format!(
                    "{whose} claims {n} {what} but only {rem} bytes remain (at least {record} bytes each)"
                ),
            ));
        }
        Ok(n as usize)
    }
    /// Image `id`'s NUL-terminated name: at most [`MAX_NAME_BYTES`], not empty.
    fn name(&mut self, id: u32) -> Result<String> {
        let at = self.pos;
        let window = &self.data[at..self.data.len().min(at + MAX_NAME_BYTES + 1)];
        let Some(len) = window.iter().position(|&c| c == 0) else {
            return Err(self.err_at(
                at,
                if window.len() > MAX_NAME_BYTES {
                    format!("image {id}: no NUL within {MAX_NAME_BYTES} bytes: the name is not a file name")
                } else {
                    format!("image {id}: the name has no terminating NUL before the end of the file")
                },
            ));
        };
        if len == 0 {
            return Err(self.err_at(at, format!("image {id} has an empty name")));
        }
        let name = String::from_utf8_lossy(&window[..len]).into_owned();
        self.pos += len + 1;
        Ok(name)
    }
    /// Every byte read: `Err` naming how many are left after the last `what`.
    fn finish(&self, what: &str) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.err_at(
                self.pos,
                format!("{n} bytes after the last {what}: not a COLMAP model file of this kind"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Reconstruction {
        let mut r = Reconstruction::default();
        r.cameras.insert(
            1,
            Camera::new(1, CameraModel::SimpleRadial, 640, 480, 512.25),
        );
        let pose = Pose::look_at(
            Vector3::new(1.0, 0.5, -2.0),
            Vector3::zeros(),
            Vector3::new(0.0, -1.0, 0.0),
        );
        r.images.insert(
            3,
            Image {
                id: 3,
                camera_id: 1,
                name: "IMG 0001.JPG".into(),
                pose,
                points2d: vec![
                    (Vector2::new(10.5, 20.25), Some(7)),
                    (Vector2::new(1.0, 2.0), None),
                ],
            },
        );
        r.images.insert(
            4,
            Image {
                id: 4,
                camera_id: 1,
                name: "b.png".into(),
                pose: Pose::identity(),
                points2d: vec![],
            },
        );
        r.points.insert(
            7,
            Point3D {
                id: 7,
                xyz: Vector3::new(0.1, 0.2, 0.3),
                rgb: [1, 2, 3],
                error: 0.5,
                track: vec![(3, 0)],
            },
        );
        r
    }

    #[test]
    fn text_round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let r = sample();
        r.write_text(dir.path()).unwrap();
        let back = Reconstruction::read(dir.path()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn binary_round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let r = sample();
        r.write_binary(dir.path()).unwrap();
        let back = Reconstruction::read(dir.path()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn bad_model_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cameras.txt"),
            "# c\n1 FISHEYE_X 10 10 1 2 3\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("images.txt"), "").unwrap();
        let e = Reconstruction::read(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("cameras.txt:2") && e.contains("FISHEYE_X"),
            "{e}"
        );
    }
}

/// Crafted binary and text models (issue 20): every count, size and value read from the file is
/// checked before it is used, and the error names the file and what is wrong.
#[cfg(test)]
mod crafted {
    use super::*;

    fn sample_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reconstruction::default();
        r.cameras.insert(
            1,
            Camera::new(1, CameraModel::SimpleRadial, 640, 480, 500.0),
        );
        for (id, name) in [(3u32, "a.jpg"), (4, "b.jpg")] {
            r.images.insert(
                id,
                Image {
                    id,
                    camera_id: 1,
                    name: name.into(),
                    pose: Pose::identity(),
                    points2d: vec![(Vector2::new(1.0, 2.0), Some(7))],
                },
            );
        }
        r.points.insert(
            7,
            Point3D {
                id: 7,
                xyz: Vector3::new(0.0, 0.0, 1.0),
                rgb: [1, 2, 3],
                error: 0.5,
                track: vec![(3, 0), (4, 0)],
            },
        );
        r.write_binary(dir.path()).unwrap();
        dir
    }

    /// Overwrite `bytes` at `offset` of `file` in `dir`.
    fn patch(dir: &Path, file: &str, offset: usize, bytes: &[u8]) {
        let p = dir.join(file);
        let mut b = std::fs::read(&p).unwrap();
        b[offset..offset + bytes.len()].copy_from_slice(bytes);
        std::fs::write(&p, b).unwrap();
    }

    /// Offset of image `a.jpg`'s `num_points2D` in `images.bin`.
    fn points2d_count_offset(dir: &Path) -> usize {
        let b = std::fs::read(dir.join("images.bin")).unwrap();
        b.windows(6).position(|w| w == b"a.jpg\0").unwrap() + 6
    }

    fn read_err(dir: &Path) -> String {
        match Reconstruction::read(dir) {
            Ok(_) => panic!("the crafted model was read without an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_points2d_count_of_2_pow_60_is_an_error_naming_the_file() {
        let dir = sample_dir();
        let at = points2d_count_offset(dir.path());
        patch(dir.path(), "images.bin", at, &(1u64 << 60).to_le_bytes());
        let e = read_err(dir.path());
        assert!(
            e.contains("images.bin")
                && e.contains("image 3")
                && e.contains("claims 1152921504606846976 2D points")
                && e.contains("bytes remain"),
            "{e}"
        );
    }

    /// Before the bounds this aborted the process on a 512 GB allocation.
    #[test]
    fn a_points2d_count_of_2_pow_34_is_an_error_naming_the_file() {
        let dir = sample_dir();
        let at = points2d_count_offset(dir.path());
        patch(dir.path(), "images.bin", at, &(1u64 << 34).to_le_bytes());
        let e = read_err(dir.path());
        assert!(
            e.contains("images.bin") && e.contains("17179869184 2D points"),
            "{e}"
        );
    }

    #[test]
    fn huge_record_counts_are_errors_naming_the_file() {
        for (file, what) in [
            ("cameras.bin", "cameras"),
            ("images.bin", "images"),
            ("points3D.bin", "points"),
        ] {
            let dir = sample_dir();
            patch(dir.path(), file, 0, &u64::MAX.to_le_bytes());
            let e = read_err(dir.path());
            assert!(
                e.contains(file)
                    && e.contains("at byte 0")
                    && e.contains(&format!("claims 18446744073709551615 {what}")),
                "{e}"
            );
        }
        // A track length: after id, xyz, rgb and error of the first point.
        let dir = sample_dir();
        patch(
            dir.path(),
            "points3D.bin",
            8 + 8 + 24 + 3 + 8,
            &(1u64 << 60).to_le_bytes(),
        );
        let e = read_err(dir.path());
        assert!(
            e.contains("points3D.bin")
                && e.contains("point 7 claims 1152921504606846976 track elements"),
            "{e}"
        );
    }

    #[test]
    fn a_camera_size_beyond_u32_is_an_error() {
        let dir = sample_dir();
        // width: after the count, the id and the model id.
        patch(
            dir.path(),
            "cameras.bin",
            16,
            &((1u64 << 32) + 640).to_le_bytes(),
        );
        let e = read_err(dir.path());
        assert!(
            e.contains("cameras.bin") && e.contains("width 4294967936"),
            "{e}"
        );
        let dir = sample_dir();
        patch(dir.path(), "cameras.bin", 16, &0u64.to_le_bytes());
        let e = read_err(dir.path());
        assert!(e.contains("cameras.bin") && e.contains("width 0"), "{e}");
    }

    #[test]
    fn a_nan_or_zero_rotation_is_an_error() {
        for q in [[f64::NAN, 0.0, 0.0, 0.0], [0.0; 4]] {
            let dir = sample_dir();
            let mut b = Vec::new();
            for v in q {
                b.extend(v.to_le_bytes());
            }
            // qw..qz: after the count and the image id.
            patch(dir.path(), "images.bin", 12, &b);
            let e = read_err(dir.path());
            assert!(
                e.contains("images.bin") && e.contains("image 3") && e.contains("rotation"),
                "{e}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cameras.txt"),
            "1 PINHOLE 640 480 500 500 320 240\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("images.txt"),
            "3 NaN 0 0 0 0 0 0 1 a.jpg\n\n",
        )
        .unwrap();
        let e = read_err(dir.path());
        assert!(e.contains("images.txt:1") && e.contains("rotation"), "{e}");
    }

    #[test]
    fn a_name_without_its_nul_is_an_error() {
        // One image whose name runs to the end of the file, then one whose name is 5000 bytes.
        for (name, want) in [
            (vec![b'x'; 100], "no terminating NUL"),
            (
                [vec![b'x'; 5000], vec![0], vec![0; 8]].concat(),
                "no NUL within 4096 bytes",
            ),
        ] {
            let dir = sample_dir();
            let mut b = 1u64.to_le_bytes().to_vec();
            b.extend(3u32.to_le_bytes());
            b.extend(1f64.to_le_bytes());
            b.extend([0u8; 48]);
            b.extend(1u32.to_le_bytes());
            b.extend(name);
            std::fs::write(dir.path().join("images.bin"), b).unwrap();
            let e = read_err(dir.path());
            assert!(
                e.contains("images.bin: at byte 72") && e.contains("image 3") && e.contains(want),
                "{e}"
            );
        }
    }

    #[test]
    fn duplicate_ids_and_trailing_bytes_are_errors() {
        let dir = sample_dir();
        // The second image gets the first one's id.
        let b = std::fs::read(dir.path().join("images.bin")).unwrap();
        let at = b.windows(6).position(|w| w == b"b.jpg\0").unwrap() - 4 - 56 - 4;
        patch(dir.path(), "images.bin", at, &3u32.to_le_bytes());
        let e = read_err(dir.path());
        assert!(
            e.contains("images.bin") && e.contains("image id 3 appears twice"),
            "{e}"
        );

        let dir = sample_dir();
        let p = dir.path().join("cameras.bin");
        let mut b = std::fs::read(&p).unwrap();
        b.extend([0u8; 5]);
        std::fs::write(&p, b).unwrap();
        let e = read_err(dir.path());
        assert!(
            e.contains("cameras.bin") && e.contains("5 bytes after the last camera"),
            "{e}"
        );
    }

    #[test]
    fn text_sizes_and_parameters_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("images.txt"), "").unwrap();
        for (cams, want) in [
            ("1 PINHOLE 0 480 500 500 320 240\n", "width 0"),
            ("1 PINHOLE 640 480 NaN 500 320 240\n", "parameter"),
            (
                "1 PINHOLE 640 480 500 500 320 240\n1 PINHOLE 640 480 500 500 320 240\n",
                "camera id 1 appears twice",
            ),
        ] {
            std::fs::write(dir.path().join("cameras.txt"), cams).unwrap();
            let e = read_err(dir.path());
            assert!(e.contains("cameras.txt") && e.contains(want), "{want}: {e}");
        }
        // A token of a megabyte is quoted by its first 64 characters.
        let cams = format!("1 PINHOLE 640 {} 500 500 320 240\n", "9".repeat(1 << 20));
        std::fs::write(dir.path().join("cameras.txt"), cams).unwrap();
        let e = read_err(dir.path());
        assert!(
            e.contains("cameras.txt:1") && e.contains("9…") && e.len() < 400,
            "{e}"
        );
    }
}

/// Fuzz properties of the readers (issue 20): arbitrary bytes and damaged valid files (bits
/// flipped, cut short, counts overwritten with huge values, text tokens replaced with edge values)
/// give `Ok` or `Err`, never a panic or a huge allocation. [`flythrough_testkit::fuzz::CASES`]
/// (256) cases per property; the set runs in well under a second in release mode.
#[cfg(test)]
mod fuzz {
    use super::*;
    use flythrough_testkit::fuzz::{self as fz, proptest::prelude::*};

    /// The valid model of the `crafted` tests, as (file name, bytes) in both formats.
    fn seeds(binary: bool) -> Vec<(&'static str, Vec<u8>)> {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reconstruction::default();
        r.cameras
            .insert(1, Camera::new(1, CameraModel::Opencv, 640, 480, 500.0));
        r.cameras.insert(
            2,
            Camera::new(2, CameraModel::SimplePinhole, 320, 240, 300.0),
        );
        for (id, cam, name) in [(3u32, 1u32, "a.jpg"), (4, 2, "sub dir/b.jpg")] {
            r.images.insert(
                id,
                Image {
                    id,
                    camera_id: cam,
                    name: name.into(),
                    pose: Pose::look_at(
                        Vector3::new(1.0, 0.5, -2.0),
                        Vector3::zeros(),
                        Vector3::new(0.0, -1.0, 0.0),
                    ),
                    points2d: vec![
                        (Vector2::new(1.0, 2.0), Some(7)),
                        (Vector2::new(3.5, 4.25), None),
                    ],
                },
            );
        }
        r.points.insert(
            7,
            Point3D {
                id: 7,
                xyz: Vector3::new(0.0, 0.0, 1.0),
                rgb: [1, 2, 3],
                error: 0.5,
                track: vec![(3, 0), (4, 0)],
            },
        );
        if binary {
            r.write_binary(dir.path()).unwrap();
        } else {
            r.write_text(dir.path()).unwrap();
        }
        let names = if binary { BIN } else { TXT };
        names
            .into_iter()
            .map(|name| (name, std::fs::read(dir.path().join(name)).unwrap()))
            .collect()
    }

    const BIN: [&str; 3] = ["cameras.bin", "images.bin", "points3D.bin"];
    const TXT: [&str; 3] = ["cameras.txt", "images.txt", "points3D.txt"];

    /// Parse `bytes` as the model file `name`; only whether it panics matters.
    fn parse_file(name: &str, bytes: Vec<u8>) -> bool {
        let path = Path::new(name);
        match name {
            "cameras.bin" => parse_cameras_bin(BinReader::new(path, bytes)).is_ok(),
            "images.bin" => parse_images_bin(BinReader::new(path, bytes)).is_ok(),
            "points3D.bin" => parse_points_bin(BinReader::new(path, bytes)).is_ok(),
            "cameras.txt" => parse_cameras_txt(path, &mut bytes.as_slice()).is_ok(),
            "images.txt" => parse_images_txt(path, &mut bytes.as_slice()).is_ok(),
            _ => parse_points_txt(path, &mut bytes.as_slice()).is_ok(),
        }
    }

    #[test]
    fn the_seeds_parse() {
        for binary in [true, false] {
            for (name, bytes) in seeds(binary) {
                assert!(parse_file(name, bytes), "{name}");
            }
        }
    }

    /// One of the three files with its seed damaged, or arbitrary bytes.
    fn damaged(binary: bool) -> impl Strategy<Value = (&'static str, Vec<u8>)> {
        let files: Vec<BoxedStrategy<(&'static str, Vec<u8>)>> = seeds(binary)
            .into_iter()
            .map(|(name, seed)| {
                if binary {
                    fz::bytes_or_mutated(vec![seed], 512)
                        .prop_map(move |b| (name, b))
                        .boxed()
                } else {
                    fz::text_or_mutated(vec![String::from_utf8(seed).unwrap()], 512)
                        .prop_map(move |s| (name, s.into_bytes()))
                        .boxed()
                }
            })
            .collect();
        proptest::strategy::Union::new(files)
    }

    proptest! {
        #![proptest_config(fz::config())]

        #[test]
        fn binary_files_never_panic((name, bytes) in damaged(true)) {
            parse_file(name, bytes);
        }

        #[test]
        fn text_files_never_panic((name, bytes) in damaged(false)) {
            parse_file(name, bytes);
        }

        /// Through the files, as the pipeline reads them: a model folder with one file damaged.
        #[test]
        fn model_folders_never_panic(
            binary in any::<bool>(),
            which in 0usize..3,
            ms in proptest::collection::vec(fz::mutation(), 1..=4),
        ) {
            let dir = tempfile::tempdir().unwrap();
            for (i, (name, mut bytes)) in seeds(binary).into_iter().enumerate() {
                if i == which {
                    for m in &ms {
                        m.apply(&mut bytes);
                    }
                }
                std::fs::write(dir.path().join(name), bytes).unwrap();
            }
            let _ = Reconstruction::read(dir.path());
        }
    }
}
