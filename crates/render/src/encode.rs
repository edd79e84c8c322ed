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

fn encode_ffmpeg<I>(bin: &Path, spec: VideoSpec, frames: I, out: &Path) -> Result<u64, EncodeError>
where
    I: Iterator<Item = Result<RgbImage, EncodeError>>,
{
    let log_path = out.with_extension("ffmpeg.log");
    let log = std::fs::File::create(&log_path).map_err(|source| EncodeError::Io {
        path: log_path.clone(),
        source,
    })?;
    let mut child = Command::new(bin)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
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
            "-i", "-", "-an", "-c:v", "libx264", "-preset", "medium", "-crf",
        ])
        .arg(spec.crf.to_string())
        .arg("-g")
        .arg(spec.gop().to_string())
        .args(["-pix_fmt", "yuv420p", "-f", "mp4"])
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| EncodeError::Msg(format!("cannot start {}: {e}", bin.display())))?;
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
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if let Some(e) = feed_err {
        return Err(EncodeError::Msg(format!(
            "{e}; ffmpeg said: {}",
            log_text.trim()
        )));
    }
    if !status.success() {
        return Err(EncodeError::Msg(format!(
            "ffmpeg failed ({status}) writing {}: {}",
            out.display(),
            log_text.trim()
        )));
    }
    let _ = std::fs::remove_file(&log_path);
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
