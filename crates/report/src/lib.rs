//! `RUN/report.html`: one self-contained page (images as data URIs) assembled by the run (`flythrough
//! run` writes it after its last stage) from the typed summaries the stages stored in their
//! `stage.json` ([`flythrough_core::summary`]): the same structs the stages wrote, so no field can
//! be misnamed. Only the stages that finished get a section: a report after `--until capture` shows
//! capture and nothing more. A run that stops at a failed stage writes it too, opening with the
//! failed stage and its error ([`write_report_with_failure`]).
//!
//! Sections: the stages with their times; the fly-through (videos, a 360° frame, rendered stills
//! beside the nearest redacted photo); capture quality; privacy, with a thumbnail of every face
//! detection cropped from the **redacted** photo (so it shows what was blurred), its score and a
//! ready-to-paste `[[privacy.keep]]` snippet for false detections; structure from motion; training
//! (loss curve, held-out PSNR/SSIM per photo).
//!
//! Real photos are read **only** through [`RedactedImages`] (`privacy/images/`), never from the
//! original photo folder.

use flythrough_core::RedactedImages;
use flythrough_core::html::{base64, escape_html};
use flythrough_core::run::{PROGRAM_VERSION, RunDir, Stage, StageRecord, write_atomic};
use flythrough_core::summary::{
    BakeSummary, CaptureSummary, FileIssue, PrivacySummary, Redactions, RenderSummary, SfmSummary,
    Summary, TrainSummary,
};
use image::RgbImage;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Face detections shown with a thumbnail; beyond this they are listed in a table.
pub const MAX_DETECTION_THUMBNAILS: usize = 300;
/// Long side of a detection thumbnail, pixels.
pub const DETECTION_THUMB_PX: u32 = 128;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ReportError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Write `RUN/report.html` from the stages that finished; returns its path.
pub fn write_report(run: &RunDir) -> Result<PathBuf, ReportError> {
    write_report_with_failure(run, None)
}

/// [`write_report`] for a run that stopped: with `failure` (the stage that failed and its error
/// message) the page opens with a section naming them, and shows only the stages before the failed
/// one (a later stage's committed output, if any, is from an earlier run).
pub fn write_report_with_failure(
    run: &RunDir,
    failure: Option<(Stage, &str)>,
) -> Result<PathBuf, ReportError> {
    let html = report_html_with_failure(run, failure);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReportError { path, source }
    };
    std::fs::create_dir_all(run.root()).map_err(io(run.root()))?;
    let path = run.root().join("report.html");
    write_atomic(&path, html.as_bytes()).map_err(io(&path))?;
    Ok(path)
}

/// The page, from the stages that finished.
pub fn report_html(run: &RunDir) -> String {
    report_html_with_failure(run, None)
}

/// The page of [`write_report_with_failure`].
pub fn report_html_with_failure(run: &RunDir, failure: Option<(Stage, &str)>) -> String {
    let name = run
        .root()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let records: Vec<StageRecord> = Stage::ALL
        .iter()
        .filter(|s| failure.is_none_or(|(failed, _)| **s < failed))
        .filter_map(|s| run.record(*s))
        .collect();
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · flythrough report</title>\
         <style>{STYLE}</style></head><body><h1>{t}</h1><p>flythrough {PROGRAM_VERSION} · run folder {r}</p>",
        t = escape_html(&name),
        r = escape_html(&run.root().display().to_string())
    );
    if let Some((stage, error)) = failure {
        let _ = write!(
            html,
            "<div class=\"failed\" id=\"failure\"><h2>Run failed at stage {stage}</h2><pre>{}</pre>\
             <p>The sections below are of the stages before it.</p></div>",
            escape_html(error)
        );
    }
    let _ = write!(html, "<h2>Stages</h2>{}", section_stages(&records));
    for rec in &records {
        let (title, body) = stage_section(run, rec);
        let _ = write!(html, "<h2 id=\"{}\">{title}</h2>{body}", rec.stage);
    }
    html.push_str("</body></html>\n");
    html
}

/// One stage's section of the report: its summary type, the section's title and its HTML.
trait Section: Summary {
    const TITLE: &'static str;
    fn html(&self, run: &RunDir) -> String;
}

impl Section for CaptureSummary {
    const TITLE: &'static str = "Capture quality";
    fn html(&self, _: &RunDir) -> String {
        section_capture(self)
    }
}

impl Section for PrivacySummary {
    const TITLE: &'static str = "Privacy: redactions";
    fn html(&self, run: &RunDir) -> String {
        section_privacy(run, self)
    }
}

impl Section for SfmSummary {
    const TITLE: &'static str = "Structure from motion";
    fn html(&self, _: &RunDir) -> String {
        section_sfm(self)
    }
}

impl Section for TrainSummary {
    const TITLE: &'static str = "Training";
    fn html(&self, run: &RunDir) -> String {
        section_train(run, self)
    }
}

impl Section for BakeSummary {
    const TITLE: &'static str = "Baked model";
    fn html(&self, _: &RunDir) -> String {
        section_bake(self)
    }
}

impl Section for RenderSummary {
    const TITLE: &'static str = "Fly-through";
    fn html(&self, run: &RunDir) -> String {
        section_render(run, self)
    }
}

/// A stage's section, when `rec` is that stage's record; a summary this program cannot read is
/// named, not skipped quietly.
fn section_of<S: Section>(run: &RunDir, rec: &StageRecord) -> Option<(&'static str, String)> {
    (rec.stage == S::STAGE).then(|| {
        let body = match rec.summary::<S>() {
            Ok(s) => s.html(run),
            Err(e) => format!("<p class=\"na\">{}</p>", escape_html(&e)),
        };
        (S::TITLE, body)
    })
}

/// A stage's section (title and HTML) when the record is of its stage.
type SectionFn = fn(&RunDir, &StageRecord) -> Option<(&'static str, String)>;

/// The sections, one per stage's summary type (a test checks that every stage has one).
const SECTIONS: [SectionFn; 6] = [
    section_of::<CaptureSummary>,
    section_of::<PrivacySummary>,
    section_of::<SfmSummary>,
    section_of::<TrainSummary>,
    section_of::<BakeSummary>,
    section_of::<RenderSummary>,
];

fn stage_section(run: &RunDir, rec: &StageRecord) -> (&'static str, String) {
    SECTIONS.iter().find_map(|f| f(run, rec)).unwrap_or((
        "Stage",
        "<p class=\"na\">no section for this stage</p>".into(),
    ))
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}\
h1{margin-bottom:0}h2{border-bottom:1px solid #ccc;margin-top:32px}table{border-collapse:collapse}\
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}\
.na{color:#999;font-style:italic}.warn li{color:#a60}.plot{max-width:640px}.pano{max-width:100%}\
.strip{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;border:1px solid #ddd;padding:6px}\
figure img{display:block;max-width:360px;margin-bottom:4px}figcaption{font-size:12px;color:#555}\
.faces figure img{max-width:128px}.faces pre{font-size:11px;background:#f7f7f7;margin:4px 0 0;padding:4px;user-select:all}\
.links a{margin-right:16px}.failed{border:2px solid #c00;background:#fff3f3;padding:0 12px 4px;margin-top:16px}\
.failed h2{color:#c00;border:0;margin-top:12px}.failed pre{white-space:pre-wrap}";

fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", base64(bytes))
}

/// A JPEG thumbnail (long side at most `max_side`) as a data URI.
fn thumbnail(img: &RgbImage, max_side: u32) -> Option<String> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return None;
    }
    let s = max_side as f64 / w.max(h) as f64;
    let small = if s < 1.0 {
        image::imageops::resize(
            img,
            ((w as f64 * s).round() as u32).max(1),
            ((h as f64 * s).round() as u32).max(1),
            image::imageops::FilterType::Triangle,
        )
    } else {
        img.clone()
    };
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 85)
        .encode_image(&small)
        .ok()?;
    Some(data_uri("image/jpeg", &buf))
}

fn kv_table(rows: &[(&str, String)]) -> String {
    let mut s = String::from("<table class=\"kv\">");
    for (k, v) in rows {
        let _ = write!(
            s,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape_html(k),
            escape_html(v)
        );
    }
    s.push_str("</table>");
    s
}

fn names(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else if v.len() <= 12 {
        v.join(", ")
    } else {
        format!("{} … ({} in all)", v[..12].join(", "), v.len())
    }
}

fn issue_list(title: &str, v: &[FileIssue]) -> String {
    if v.is_empty() {
        return String::new();
    }
    let mut s = format!("<h3>{}</h3><ul class=\"warn\">", escape_html(title));
    for i in v {
        let _ = write!(
            s,
            "<li>{}: {}</li>",
            escape_html(&i.file),
            escape_html(&i.reason)
        );
    }
    s.push_str("</ul>");
    s
}

fn section_stages(records: &[StageRecord]) -> String {
    if records.is_empty() {
        return "<p class=\"na\">No stage has finished yet.</p>".into();
    }
    let mut s = String::from(
        "<table class=\"grid\"><tr><th>stage</th><th>seconds</th><th>summary</th></tr>",
    );
    for rec in records {
        let headline = Stage::headline(rec);
        let _ = write!(
            s,
            "<tr><td><a href=\"#{st}\">{st}</a></td><td>{:.1}</td><td>{}</td></tr>",
            rec.seconds,
            escape_html(&headline),
            st = rec.stage
        );
    }
    s.push_str("</table>");
    s
}

fn section_capture(c: &CaptureSummary) -> String {
    let mut s = String::new();
    if !c.warnings.is_empty() {
        s.push_str("<ul class=\"warn\">");
        for w in c.warnings.iter().take(50) {
            let _ = write!(s, "<li>{}</li>", escape_html(w));
        }
        if c.warnings.len() > 50 {
            let _ = write!(s, "<li>… {} more</li>", c.warnings.len() - 50);
        }
        s.push_str("</ul>");
    }
    s.push_str(&kv_table(&[
        ("photos found", c.photos_found.to_string()),
        ("photos usable", c.photos_usable.to_string()),
        ("broken (left out)", c.broken.len().to_string()),
        ("photos without EXIF", c.missing_exif.to_string()),
        ("camera bodies", names(&c.camera_bodies)),
        ("blurry", names(&c.blurry)),
        ("over-exposed", names(&c.overexposed)),
        ("under-exposed", names(&c.underexposed)),
        ("near-duplicate pairs", c.near_duplicates.to_string()),
    ]));
    s.push_str(&issue_list("broken photos", &c.broken));
    s.push_str(&issue_list("files not read as photos", &c.ignored_files));
    s
}

fn section_privacy(run: &RunDir, p: &PrivacySummary) -> String {
    let mut s = kv_table(&[
        ("photos scanned", p.photos_in.to_string()),
        ("photos redacted and passed on", p.photos_out.to_string()),
        ("photos with faces", p.photos_with_faces.to_string()),
        ("faces found", p.faces.to_string()),
        ("faces blurred", p.faces_blurred.to_string()),
        ("faces kept ([[privacy.keep]])", p.faces_kept.to_string()),
        ("extra regions blurred", p.extra_regions.to_string()),
        ("unscannable (kept out)", p.unscannable.len().to_string()),
        (
            "detector",
            format!("{}, score threshold {}", p.detector, p.score_threshold),
        ),
    ]);
    s.push_str(&issue_list(
        "unscannable photos (never passed on)",
        &p.unscannable,
    ));
    s.push_str(&section_detections(run));
    s
}

/// One face detection for the report.
struct Detection<'a> {
    photo: &'a str,
    bbox: [f32; 4],
    score: f32,
    blurred: bool,
    kept_by: Option<usize>,
}

/// The `[[privacy.keep]]` table that leaves this detection unblurred (its box, rounded).
pub fn keep_snippet(photo: &str, bbox: [f32; 4]) -> String {
    let r = bbox.map(|v| v.max(0.0).round() as u32);
    format!(
        "[[privacy.keep]]\nphoto = {}\nrect = [{}, {}, {}, {}]\n",
        toml_string(photo),
        r[0],
        r[1],
        r[2],
        r[3]
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(o, "\\u{:04X}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The region of a detection shown in its thumbnail: the box grown by `grow` of its size on every
/// side (the blurred, padded ellipse and some context), clamped to the photo.
fn crop_region(bbox: [f32; 4], grow: f32, w: u32, h: u32) -> Option<(u32, u32, u32, u32)> {
    let [x, y, bw, bh] = bbox;
    let (gx, gy) = (bw * grow, bh * grow);
    let x0 = (x - gx).floor().clamp(0.0, w as f32) as u32;
    let y0 = (y - gy).floor().clamp(0.0, h as f32) as u32;
    let x1 = (x + bw + gx).ceil().clamp(0.0, w as f32) as u32;
    let y1 = (y + bh + gy).ceil().clamp(0.0, h as f32) as u32;
    (x1 > x0 && y1 > y0).then(|| (x0, y0, x1 - x0, y1 - y0))
}

/// Every face detection, least confident first (where false detections are), with a thumbnail
/// cropped from the redacted photo and the snippet that keeps it unblurred.
fn section_detections(run: &RunDir) -> String {
    let path = run.stage_dir(Stage::Privacy).join(Redactions::FILE);
    let red = match Redactions::read(&path) {
        Ok(r) => r,
        Err(e) => {
            return format!(
                "<p class=\"na\">face detections not available: {}</p>",
                escape_html(&e.to_string())
            );
        }
    };
    let mut dets: Vec<Detection> = red
        .photos
        .iter()
        .flat_map(|p| {
            p.faces.iter().map(move |f| Detection {
                photo: &p.file,
                bbox: f.bbox,
                score: f.score,
                blurred: f.blurred,
                kept_by: f.kept_by,
            })
        })
        .collect();
    let mut s = format!(
        "<h3 id=\"detections\">face detections ({})</h3>",
        dets.len()
    );
    if dets.is_empty() {
        s.push_str("<p>No face was detected.</p>");
        return s;
    }
    dets.sort_by(|a, b| a.score.total_cmp(&b.score).then(a.photo.cmp(b.photo)));
    s.push_str(
        "<p>Least confident first. Each thumbnail is cut from the redacted photo, so it shows what was \
         blurred. A false detection (a pattern, a bag, blossoms) is left unblurred by pasting its snippet \
         into the venue config and re-running (<code>flythrough run</code> redoes privacy and the stages \
         after it).</p><div class=\"strip faces\">",
    );
    let redacted = RedactedImages::open(run);
    if let Err(e) = &redacted {
        let _ = write!(
            s,
            "<p class=\"na\">thumbnails not available: {}</p>",
            escape_html(&e.to_string())
        );
    }
    // Decode each photo once for all its detections.
    let shown = &dets[..dets.len().min(MAX_DETECTION_THUMBNAILS)];
    let mut by_photo: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, d) in shown.iter().enumerate() {
        by_photo.entry(d.photo).or_default().push(i);
    }
    let grow = red.blur.padding.max(0.0) + 0.5;
    let mut thumbs: Vec<Option<String>> = vec![None; shown.len()];
    if let Ok(r) = &redacted {
        for (photo, idx) in &by_photo {
            let Ok(img) = r.load_rgb(photo) else { continue };
            for &i in idx {
                thumbs[i] = crop_region(shown[i].bbox, grow, img.width(), img.height()).and_then(
                    |(x, y, w, h)| {
                        let crop = image::imageops::crop_imm(&img, x, y, w, h).to_image();
                        thumbnail(&crop, DETECTION_THUMB_PX)
                    },
                );
            }
        }
    }
    for (d, thumb) in shown.iter().zip(&thumbs) {
        let _ = write!(s, "<figure>");
        match thumb {
            Some(u) => {
                let _ = write!(s, "<img alt=\"detection\" src=\"{u}\">");
            }
            None => s.push_str("<div class=\"na\">no thumbnail</div>"),
        }
        let status = match (d.blurred, d.kept_by) {
            (true, _) => "blurred".to_string(),
            (false, Some(k)) => format!("kept by [[privacy.keep]] #{}", k + 1),
            (false, None) => "not blurred".to_string(),
        };
        let _ = write!(
            s,
            "<figcaption>{} · score {:.2} · {status}</figcaption>",
            escape_html(d.photo),
            d.score
        );
        if d.blurred {
            let _ = write!(
                s,
                "<pre>{}</pre>",
                escape_html(&keep_snippet(d.photo, d.bbox))
            );
        }
        s.push_str("</figure>");
    }
    s.push_str("</div>");
    if dets.len() > shown.len() {
        let _ = write!(
            s,
            "<h3>{} more detections (no thumbnail)</h3><table class=\"grid\"><tr><th>photo</th><th>score</th><th>snippet</th></tr>",
            dets.len() - shown.len()
        );
        for d in &dets[shown.len()..] {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{:.2}</td><td><pre>{}</pre></td></tr>",
                escape_html(d.photo),
                d.score,
                escape_html(&keep_snippet(d.photo, d.bbox))
            );
        }
        s.push_str("</table>");
    }
    s
}

fn section_sfm(m: &SfmSummary) -> String {
    let mut rows = vec![
        (
            "photos registered",
            format!("{} of {}", m.registered, m.total),
        ),
        ("3D points", m.points.to_string()),
        ("mean track length", format!("{:.2}", m.mean_track_length)),
        (
            "reprojection error",
            format!(
                "{:.3} px mean, {:.3} px RMS",
                m.mean_reproj_px, m.rms_reproj_px
            ),
        ),
        (
            "scale",
            format!(
                "{:.5} m per model unit from {} calibration pair(s), spread {:.1} %",
                m.scale,
                m.calibration_pairs,
                100.0 * m.scale_spread
            ),
        ),
        ("cameras", m.cameras.to_string()),
        ("seconds", format!("{:.1}", m.seconds)),
    ];
    if let Some(p) = &m.init_pair {
        rows.push(("initial pair", format!("{} + {}", p[0], p[1])));
    }
    if let Some(i) = &m.imported {
        rows.push(("imported model", i.clone()));
    }
    let mut s = String::new();
    if let Some(w) = &m.scale_warning {
        let _ = write!(s, "<ul class=\"warn\"><li>{}</li></ul>", escape_html(w));
    }
    if !m.left_out.is_empty() {
        rows.push(("left out before matching", names(&m.left_out)));
    }
    for (i, other) in m.other_models.iter().enumerate() {
        rows.push((
            if i == 0 {
                "smaller models (not kept)"
            } else {
                ""
            },
            format!("{} photos: {}", other.len(), names(other)),
        ));
    }
    s.push_str(&kv_table(&rows));
    s.push_str(&issue_list("photos not registered", &m.unregistered));
    s
}

fn section_bake(b: &BakeSummary) -> String {
    kv_table(&[
        ("representation", b.representation.clone()),
        (
            "grid",
            format!(
                "{}^3 voxels in blocks of {}^3, {:.1} % of the blocks stored",
                b.resolution,
                b.block,
                100.0 * b.occupied_fraction
            ),
        ),
        ("size", format!("{:.1} MB", b.bytes as f64 / 1e6)),
        ("bake seconds", format!("{:.1}", b.bake_seconds)),
        (
            "fine-tuning",
            if b.finetune_steps == 0 {
                "none".into()
            } else {
                format!(
                    "{} steps in {:.1} s, training-batch PSNR {:.2} -> {:.2} dB",
                    b.finetune_steps,
                    b.finetune_seconds,
                    b.finetune_psnr_train_start,
                    b.finetune_psnr_train_end
                )
            },
        ),
        (
            "held-out PSNR / SSIM, baked",
            format!(
                "{:.2} dB / {:.3}",
                b.psnr_holdout_baked, b.ssim_holdout_baked
            ),
        ),
        (
            "held-out PSNR / SSIM, NeRF",
            format!("{:.2} dB / {:.3}", b.psnr_holdout_nerf, b.ssim_holdout_nerf),
        ),
        ("evaluation", b.eval_protocol.clone()),
    ])
}

fn section_train(run: &RunDir, t: &TrainSummary) -> String {
    let mut s = String::new();
    if let Ok(png) = std::fs::read(run.stage_dir(Stage::Train).join(&t.loss_plot)) {
        let _ = write!(
            s,
            "<img class=\"plot\" alt=\"training loss\" src=\"{}\">",
            data_uri("image/png", &png)
        );
    }
    s.push_str(&kv_table(&[
        (
            "steps",
            match t.resumed_from {
                Some(r) => format!(
                    "{} ({} this run, resumed from step {r})",
                    t.steps, t.steps_this_run
                ),
                None => t.steps.to_string(),
            },
        ),
        ("training seconds", format!("{:.1}", t.train_seconds)),
        (
            "photos",
            format!("{} training, {} held out", t.photos_train, t.photos_holdout),
        ),
        (
            "held-out PSNR / SSIM",
            format!("{:.2} dB / {:.3}", t.psnr_holdout, t.ssim_holdout),
        ),
        ("evaluation", t.eval_protocol.clone()),
        (
            "speed",
            format!(
                "{:.0} rays/s ({:.2} M samples/s) training, {:.0} rays/s rendering",
                t.rays_per_s,
                t.samples_per_s / 1e6,
                t.render_rays_per_s
            ),
        ),
    ]));
    if !t.holdout.is_empty() {
        s.push_str(
            "<h3>held-out photos</h3><table class=\"grid\"><tr><th>photo</th><th>PSNR (dB)</th><th>SSIM</th></tr>",
        );
        for h in &t.holdout {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{:.2}</td><td>{:.3}</td></tr>",
                escape_html(&h.name),
                h.psnr,
                h.ssim
            );
        }
        s.push_str("</table>");
    }
    s
}

fn section_render(run: &RunDir, r: &RenderSummary) -> String {
    let dir = run.stage_dir(Stage::Render);
    let mut s = kv_table(&[
        (
            "video",
            format!(
                "{} frames of {}x{} at {:.2} fps ({:.1} s), {} encoder",
                r.frames, r.width, r.height, r.fps, r.duration_s, r.encoder
            ),
        ),
        ("path length", format!("{:.2} m", r.path_length_m)),
        ("keyframes", names(&r.keyframes)),
        ("rendered by", r.source.clone()),
        (
            "seconds per 360° frame",
            format!("{:.2}", r.seconds_per_frame),
        ),
    ]);
    s.push_str("<p class=\"links\">");
    for (f, what) in [
        (&r.viewer, "360° viewer"),
        (&r.video_360, "360° video (equirectangular)"),
        (&r.video_preview, "preview video"),
    ] {
        if dir.join(f).is_file() {
            let _ = write!(s, "<a href=\"render/{}\">{what}</a> ", escape_html(f));
        }
    }
    s.push_str("</p>");
    let pano = std::fs::read(dir.join(&r.pano_still))
        .ok()
        .and_then(|png| image::load_from_memory(&png).ok())
        .and_then(|img| thumbnail(&img.to_rgb8(), 1024));
    if let Some(uri) = pano {
        let _ = write!(
            s,
            "<h3>a 360° frame (middle of the path)</h3><img class=\"pano\" alt=\"360° frame\" src=\"{uri}\">"
        );
    }
    if r.stills.is_empty() {
        return s;
    }
    // Real photos only through the privacy boundary.
    let redacted = RedactedImages::open(run);
    s.push_str(
        "<h3>rendered frames beside the nearest real photo (redacted)</h3><div class=\"strip\">",
    );
    for st in &r.stills {
        let rendered = std::fs::read(dir.join(&r.stills_dir).join(&st.file))
            .ok()
            .and_then(|b| image::load_from_memory(&b).ok())
            .and_then(|i| thumbnail(&i.to_rgb8(), 360));
        let photo = match (&redacted, &st.nearest_photo) {
            (Ok(red), Some(name)) => red.load_rgb(name).ok().and_then(|i| thumbnail(&i, 360)),
            _ => None,
        };
        s.push_str("<figure>");
        match rendered {
            Some(u) => {
                let _ = write!(s, "<img alt=\"rendered frame\" src=\"{u}\">");
            }
            None => s.push_str("<div class=\"na\">frame missing</div>"),
        }
        match (photo, &redacted) {
            (Some(u), _) => {
                let _ = write!(s, "<img alt=\"nearest photo\" src=\"{u}\">");
            }
            (None, Err(e)) => {
                let _ = write!(
                    s,
                    "<div class=\"na\">photo not available: {}</div>",
                    escape_html(&e.to_string())
                );
            }
            (None, Ok(_)) => s.push_str("<div class=\"na\">photo not available</div>"),
        }
        let _ = write!(
            s,
            "<figcaption>t = {:.1} s · frame {} · nearest photo {} ({} m, {}° apart)</figcaption></figure>",
            st.time_s,
            st.frame,
            escape_html(st.nearest_photo.as_deref().unwrap_or("–")),
            st.distance_m
                .map(|d| format!("{d:.2}"))
                .unwrap_or_else(|| "–".into()),
            st.angle_deg
                .map(|a| format!("{a:.0}"))
                .unwrap_or_else(|| "–".into())
        );
    }
    s.push_str("</div>");
    s
}

#[cfg(test)]
mod tests;
