//! H.264 encoding: the `ffmpeg` CLI (libx264, CRF, yuv420p) when it is on the PATH, otherwise
//! in-process OpenH264 + the muxide MP4 muxer (feature `openh264`, on by default).

use flythrough_core::config::Encoder as EncoderSetting;
use image::RgbImage;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("{0}")]
    Msg(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Which encoder to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoder {
    /// The ffmpeg CLI at this path.
    Ffmpeg(PathBuf),
    /// In-process OpenH264 + muxide.
    OpenH264,
}

impl Encoder {
    pub fn name(&self) -> &'static str {
        match self {
            Encoder::Ffmpeg(_) => "ffmpeg/libx264",
            Encoder::OpenH264 => "openh264+muxide",
        }
    }
}

/// `name` on the PATH, if it is there.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Pick the encoder for the `[render] encoder` setting (`auto`, `ffmpeg`, `openh264`).
pub fn choose(setting: EncoderSetting) -> Result<Encoder, EncodeError> {
    let ff = find_on_path("ffmpeg");
    match (setting, ff) {
        (EncoderSetting::Ffmpeg, Some(p)) | (EncoderSetting::Auto, Some(p)) => {
            Ok(Encoder::Ffmpeg(p))
        }
        (EncoderSetting::Ffmpeg, None) => Err(EncodeError::Msg(
            "[render] encoder = \"ffmpeg\" but ffmpeg is not on the PATH; install it (Debian: apt-get install ffmpeg) or use encoder = \"auto\"".into(),
        )),
        (EncoderSetting::Openh264, _) | (EncoderSetting::Auto, None) => {
            if cfg!(feature = "openh264") {
                Ok(Encoder::OpenH264)
            } else {
                Err(EncodeError::Msg(
                    "no H.264 encoder: ffmpeg is not on the PATH and this build has no in-process encoder (cargo feature `openh264`)".into(),
                ))
            }
        }
    }
}

/// Video parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoSpec {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub crf: u32,
}

impl VideoSpec {
    /// Keyframe interval: every half second, so that scrubbing in the viewer seeks quickly.
    pub fn gop(&self) -> u32 {
        ((self.fps / 2.0).round() as u32).max(1)
    }
}

/// Encode frames (each `width × height` RGB) into an H.264 MP4 at `out`.
pub fn encode<I>(
    encoder: &Encoder,
    spec: VideoSpec,
    frames: I,
    out: &Path,
) -> Result<u64, EncodeError>
where
    I: Iterator<Item = Result<RgbImage, EncodeError>>,
{
    match encoder {
        Encoder::Ffmpeg(bin) => encode_ffmpeg(bin, spec, frames, out),
        Encoder::OpenH264 => encode_openh264(spec, frames, out),
    }
}

/// `fps` as an exact-enough rational for ffmpeg's `-r`.
fn rational(fps: f64) -> String {
    if (fps - fps.round()).abs() < 1e-9 {
        format!("{}", fps.round() as u64)
    } else {
        format!("{}/1000000", (fps * 1e6).round() as u64)
    }
}

/// `path` as an ffmpeg URL of the `file` protocol, absolute, so that no part of it can be read as
/// another protocol (`ftp:/x`, `http:…`, `concat:…` are file names here).
pub fn ffmpeg_file_url(path: &Path) -> Result<std::ffi::OsString, EncodeError> {
    let abs = std::path::absolute(path).map_err(|source| EncodeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut url = std::ffi::OsString::from("file:");
    url.push(abs.as_os_str());
    Ok(url)
}

/// The last `MAX` bytes of what a child wrote to a pipe (its error log), read on a thread so the
/// child never blocks on a full pipe. Kept in memory: on a full disk a log file could not be written.
fn tail_of<R: std::io::Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<String> {
    const MAX: usize = 64 << 10;
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * MAX {
                kept.drain(..kept.len() - MAX);
            }
        }
        let from = kept.len().saturating_sub(MAX);
        String::from_utf8_lossy(&kept[from..]).trim().to_string()
    })
}

/// ffmpeg's error text said the disk is full.
fn says_no_space(log: &str) -> bool {
    log.contains("No space left on device") || log.contains("Disk quota exceeded")
}

fn encode_ffmpeg<I>(bin: &Path, spec: VideoSpec, frames: I, out: &Path) -> Result<u64, EncodeError>
where
    I: Iterator<Item = Result<RgbImage, EncodeError>>,
{
    let out_url = ffmpeg_file_url(out)?;
    let mut child = Command::new(bin)
        .args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-protocol_whitelist",
            "pipe",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
        ])
        .arg("-s")
        .arg(format!("{}x{}", spec.width, spec.height))
        .arg("-r")
        .arg(rational(spec.fps))
        .args([
            "-i", "pipe:0", "-an", "-c:v", "libx264", "-preset", "medium", "-crf",
        ])
        .arg(spec.crf.to_string())
        .arg("-g")
        .arg(spec.gop().to_string())
        .args(["-pix_fmt", "yuv420p", "-f", "mp4"])
        .arg(&out_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| EncodeError::Msg(format!("cannot start {}: {e}", bin.display())))?;
    let log = tail_of(child.stderr.take().expect("piped stderr"));
    let mut n = 0u64;
    let mut feed_err = None;
    {
        let stdin = child.stdin.as_mut().expect("piped stdin");
        for f in frames {
            match f {
                Ok(img) => {
                    if img.width() != spec.width || img.height() != spec.height {
                        feed_err = Some(EncodeError::Msg(format!(
                            "frame {n} is {}x{}, the video is {}x{}",
                            img.width(),
                            img.height(),
                            spec.width,
                            spec.height
                        )));
                        break;
                    }
                    if let Err(e) = stdin.write_all(img.as_raw()) {
                        feed_err = Some(EncodeError::Msg(format!(
                            "ffmpeg stopped reading frames: {e}"
                        )));
                        break;
                    }
                    n += 1;
                }
                Err(e) => {
                    feed_err = Some(e);
                    break;
                }
            }
        }
    }
    drop(child.stdin.take());
    let status = child
        .wait()
        .map_err(|e| EncodeError::Msg(format!("waiting for ffmpeg: {e}")))?;
    let log_text = log.join().unwrap_or_default();
    let said = if log_text.is_empty() {
        "(it printed no reason)".to_string()
    } else {
        log_text.clone()
    };
    if says_no_space(&log_text) {
        // The same words as the rest of the pipeline (a full disk is an I/O error, not a message).
        return Err(EncodeError::Io {
            path: out.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("no space left on the device; ffmpeg said: {said}"),
            ),
        });
    }
    if let Some(e) = feed_err {
        return Err(match log_text.is_empty() {
            true => e,
            false => EncodeError::Msg(format!("{e}; ffmpeg said: {log_text}")),
        });
    }
    if !status.success() {
        return Err(EncodeError::Msg(format!(
            "ffmpeg failed ({status}) writing {}: {said}",
            out.display()
        )));
    }
    Ok(n)
}

#[cfg(feature = "openh264")]
fn encode_openh264<I>(spec: VideoSpec, frames: I, out: &Path) -> Result<u64, EncodeError>
where
    I: Iterator<Item = Result<RgbImage, EncodeError>>,
{
    use openh264::encoder::{
        EncoderConfig, FrameRate, FrameType, IntraFramePeriod, QpRange, RateControlMode,
    };
    use openh264::formats::{RgbSliceU8, YUVBuffer};
    let m = |what: &str, e: &dyn std::fmt::Display| EncodeError::Msg(format!("{what}: {e}"));
    // OpenH264 has no CRF: rate control off, with the quantiser pinned near the CRF (x264's CRF
    // and QP scales coincide for a constant-quality encode; the range lets I/P frames differ).
    let q = spec.crf.min(51) as u8;
    let config = EncoderConfig::new()
        .skip_frames(false)
        .rate_control_mode(RateControlMode::Off)
        .qp(QpRange::new(q, (q + 4).min(51)))
        .max_frame_rate(FrameRate::from_hz(spec.fps as f32))
        .intra_frame_period(IntraFramePeriod::from_num_frames(spec.gop()));
    let mut enc =
        openh264::encoder::Encoder::with_api_config(openh264::OpenH264API::from_source(), config)
            .map_err(|e| m("openh264", &e))?;
    let file = std::fs::File::create(out).map_err(|source| EncodeError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let mut mux = muxide::api::MuxerBuilder::new(std::io::BufWriter::new(file))
        .video(
            muxide::api::VideoCodec::H264,
            spec.width,
            spec.height,
            spec.fps,
        )
        .with_fast_start(false)
        .build()
        .map_err(|e| m("muxide", &e))?;
    let mut n = 0u64;
    for f in frames {
        let img = f?;
        if img.width() != spec.width || img.height() != spec.height {
            return Err(EncodeError::Msg(format!("frame {n} has the wrong size")));
        }
        let yuv = YUVBuffer::from_rgb8_source(RgbSliceU8::new(
            img.as_raw(),
            (spec.width as usize, spec.height as usize),
        ));
        let bs = enc.encode(&yuv).map_err(|e| m("openh264 encode", &e))?;
        let key = matches!(bs.frame_type(), FrameType::IDR | FrameType::I);
        let data = bs.to_vec();
        mux.write_video(n as f64 / spec.fps, &data, key)
            .map_err(|e| m(&format!("muxide frame {n}"), &e))?;
        n += 1;
    }
    mux.finish().map_err(|e| m("muxide finish", &e))?;
    Ok(n)
}

#[cfg(not(feature = "openh264"))]
fn encode_openh264<I>(_spec: VideoSpec, _frames: I, _out: &Path) -> Result<u64, EncodeError>
where
    I: Iterator<Item = Result<RgbImage, EncodeError>>,
{
    Err(EncodeError::Msg(
        "built without the `openh264` feature".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flythrough_testkit::testdata;

    fn spec() -> VideoSpec {
        VideoSpec {
            width: 64,
            height: 32,
            fps: 10.0,
            crf: 30,
        }
    }

    fn frames(n: usize) -> impl Iterator<Item = Result<RgbImage, EncodeError>> {
        (0..n).map(|k| {
            Ok(RgbImage::from_pixel(
                64,
                32,
                image::Rgb([k as u8 * 20, 90, 40]),
            ))
        })
    }

    fn ffmpeg() -> Option<Encoder> {
        testdata::tool("ffmpeg", "Debian: apt-get install ffmpeg")?;
        Some(Encoder::Ffmpeg(find_on_path("ffmpeg")?))
    }

    /// Issue 20, defect 5: a file name that reads like a URL is a file for ffmpeg.
    #[test]
    fn url_like_names_are_written_as_local_files() {
        let Some(enc) = ffmpeg() else { return };
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("ftp:");
        std::fs::create_dir(&sub).unwrap();
        for out in [dir.path().join("http:x.mp4"), sub.join("host.mp4")] {
            let n = encode(&enc, spec(), frames(3), &out).unwrap();
            assert_eq!(n, 3);
            let len = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            assert!(len > 100, "{}: {len} bytes", out.display());
        }
        // A relative name that reads as a URL becomes an absolute file URL.
        let url = ffmpeg_file_url(Path::new("ftp:/host/x")).unwrap();
        let url = url.to_str().unwrap();
        assert!(
            url.starts_with("file:/") && url.ends_with("/ftp:/host/x"),
            "{url}"
        );
    }

    /// Issue 20, defect 6: a full disk while encoding says so, with ffmpeg's own reason (before, the
    /// log went to a file on the same full disk and the reason was empty).
    #[cfg(unix)]
    #[test]
    fn a_full_disk_while_encoding_says_so() {
        let Some(enc) = ffmpeg() else { return };
        if !Path::new("/dev/full").exists() {
            testdata::skip("/dev/full", "a Linux device file");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("flythrough_360.mp4");
        std::os::unix::fs::symlink("/dev/full", &out).unwrap();
        let e = encode(&enc, spec(), frames(3), &out).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, EncodeError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull),
            "{msg}"
        );
        assert!(
            msg.contains("no space left on the device; ffmpeg said: ")
                && msg.contains("No space left on device"),
            "{msg}"
        );
        assert_eq!(msg.matches("flythrough_360.mp4").count(), 1, "{msg}");
        // No log file is left beside the video.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
