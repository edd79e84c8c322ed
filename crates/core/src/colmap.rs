//! COLMAP sparse models: `cameras`, `images`, `points3D`, in text (read + write) and binary (read + write).
//!
//! Layout and conventions follow COLMAP's `doc/format.rst`: poses are world-to-camera, quaternions are
//! Hamilton with the scalar first, a 2D point's `POINT3D_ID` is −1 when it is not triangulated.
//! If a folder holds both, binary files are preferred, as COLMAP does.

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
        let mut rec = Reconstruction::default();
        let path = dir.join("cameras.txt");
        for (ln, line) in data_lines(&path)? {
            let f: Vec<&str> = line.split_whitespace().collect();
            let perr = |msg: String| ColmapError::Parse {
                path: path.clone(),
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
                    f[1]
                ))
            })?;
            let params: Vec<f64> = f[4..]
                .iter()
                .map(|v| v.parse())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| perr(format!("bad parameter: {e}")))?;
            if params.len() != model.num_params() {
                return Err(perr(format!(
                    "{} takes {} parameters, found {}",
                    model.name(),
                    model.num_params(),
                    params.len()
                )));
            }
            let cam = Camera {
                id: parse(f[0], &path, ln)?,
                model,
                width: parse(f[2], &path, ln)?,
                height: parse(f[3], &path, ln)?,
                params,
            };
            rec.cameras.insert(cam.id, cam);
        }
        let path = dir.join("images.txt");
        let lines = data_lines_keep_empty(&path)?;
        let mut it = lines.into_iter();
        while let Some((ln, line)) = it.next() {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return Err(ColmapError::Parse {
                    path: path.clone(),
                    line: ln,
                    msg: "expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME".into(),
                });
            }
            let v: Vec<f64> = f[1..8]
                .iter()
                .map(|s| parse::<f64>(s, &path, ln))
                .collect::<Result<_>>()?;
            let rotation = unit_quaternion(v[0], v[1], v[2], v[3]);
            let pose = Pose::new(rotation, Vector3::new(v[4], v[5], v[6]));
            let mut points2d = Vec::new();
            if let Some((ln2, pts)) = it.next() {
                let g: Vec<&str> = pts.split_whitespace().collect();
                if !g.len().is_multiple_of(3) {
                    return Err(ColmapError::Parse {
                        path: path.clone(),
                        line: ln2,
                        msg: "POINTS2D must be triples X Y POINT3D_ID".into(),
                    });
                }
                for c in g.chunks(3) {
                    let x: f64 = parse(c[0], &path, ln2)?;
                    let y: f64 = parse(c[1], &path, ln2)?;
                    let id: i64 = parse(c[2], &path, ln2)?;
                    points2d.push((Vector2::new(x, y), (id >= 0).then_some(id as u64)));
                }
            }
            let im = Image {
                id: parse(f[0], &path, ln)?,
                camera_id: parse(f[8], &path, ln)?,
                // Names may contain spaces: everything after CAMERA_ID.
                name: f[9..].join(" "),
                pose,
                points2d,
            };
            rec.images.insert(im.id, im);
        }
        let path = dir.join("points3D.txt");
        if path.exists() {
            for (ln, line) in data_lines(&path)? {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() < 8 || !(f.len() - 8).is_multiple_of(2) {
                    return Err(ColmapError::Parse {
                        path: path.clone(),
                        line: ln,
                        msg: "expected POINT3D_ID X Y Z R G B ERROR TRACK[]".into(),
                    });
                }
                let track = f[8..]
                    .chunks(2)
                    .map(|c| Ok((parse(c[0], &path, ln)?, parse(c[1], &path, ln)?)))
                    .collect::<Result<Vec<_>>>()?;
                let pt = Point3D {
                    id: parse(f[0], &path, ln)?,
                    xyz: Vector3::new(
                        parse(f[1], &path, ln)?,
                        parse(f[2], &path, ln)?,
                        parse(f[3], &path, ln)?,
                    ),
                    rgb: [
                        parse(f[4], &path, ln)?,
                        parse(f[5], &path, ln)?,
                        parse(f[6], &path, ln)?,
                    ],
                    error: parse(f[7], &path, ln)?,
                    track,
                };
                rec.points.insert(pt.id, pt);
            }
        }
        Ok(rec)
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

    /// Read the binary format.
    pub fn read_binary(dir: &Path) -> Result<Self> {
        let mut rec = Reconstruction::default();
        let path = dir.join("cameras.bin");
        let mut r = BinReader::open(&path)?;
        for _ in 0..r.u64()? {
            let id = r.i32()? as u32;
            let mid = r.i32()?;
            let model = CameraModel::from_id(mid)
                .ok_or_else(|| r.err(format!("camera model id {mid} is not supported")))?;
            let width = r.u64()? as u32;
            let height = r.u64()? as u32;
            let params = (0..model.num_params())
                .map(|_| r.f64())
                .collect::<Result<Vec<_>>>()?;
            rec.cameras.insert(
                id,
                Camera {
                    id,
                    model,
                    width,
                    height,
                    params,
                },
            );
        }
        let path = dir.join("images.bin");
        let mut r = BinReader::open(&path)?;
        for _ in 0..r.u64()? {
            let id = r.i32()? as u32;
            let v = (0..7).map(|_| r.f64()).collect::<Result<Vec<_>>>()?;
            let camera_id = r.i32()? as u32;
            let mut name = Vec::new();
            loop {
                let c = r.u8()?;
                if c == 0 {
                    break;
                }
                name.push(c);
            }
            let n = r.u64()?;
            let mut points2d = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let x = r.f64()?;
                let y = r.f64()?;
                let pid = r.i64()?;
                points2d.push((Vector2::new(x, y), (pid >= 0).then_some(pid as u64)));
            }
            let rotation = unit_quaternion(v[0], v[1], v[2], v[3]);
            rec.images.insert(
                id,
                Image {
                    id,
                    camera_id,
                    name: String::from_utf8_lossy(&name).into_owned(),
                    pose: Pose::new(rotation, Vector3::new(v[4], v[5], v[6])),
                    points2d,
                },
            );
        }
        let path = dir.join("points3D.bin");
        if path.exists() {
            let mut r = BinReader::open(&path)?;
            for _ in 0..r.u64()? {
                let id = r.u64()?;
                let xyz = Vector3::new(r.f64()?, r.f64()?, r.f64()?);
                let rgb = [r.u8()?, r.u8()?, r.u8()?];
                let error = r.f64()?;
                let n = r.u64()?;
                let track = (0..n)
                    .map(|_| Ok((r.i32()? as u32, r.i32()? as u32)))
                    .collect::<Result<Vec<_>>>()?;
                rec.points.insert(
                    id,
                    Point3D {
                        id,
                        xyz,
                        rgb,
                        error,
                        track,
                    },
                );
            }
        }
        Ok(rec)
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
        msg: format!("{s:?}: {e}"),
    })
}

fn read_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let f = std::fs::File::open(path).map_err(|source| ColmapError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| ColmapError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        out.push((i + 1, line));
    }
    Ok(out)
}

fn data_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    Ok(read_lines(path)?
        .into_iter()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .collect())
}

/// `images.txt` needs its empty lines: an image with no 2D points has an empty second line.
fn data_lines_keep_empty(path: &Path) -> Result<Vec<(usize, String)>> {
    Ok(read_lines(path)?
        .into_iter()
        .filter(|(_, l)| !l.starts_with('#'))
        .collect())
}

struct BinReader {
    path: PathBuf,
    data: Vec<u8>,
    pos: usize,
}

impl BinReader {
    fn open(path: &Path) -> Result<Self> {
        let mut data = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|source| ColmapError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(BinReader {
            path: path.to_path_buf(),
            data,
            pos: 0,
        })
    }
    fn err(&self, msg: String) -> ColmapError {
        ColmapError::Parse {
            path: self.path.clone(),
            line: 0,
            msg: format!("at byte {}: {msg}", self.pos),
        }
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        if self.pos + N > self.data.len() {
            return Err(self.err("file ends early".into()));
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
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.take()?))
    }
    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.take()?))
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
