//! `RUN/report.html`: one self-contained page (images as data URIs) summarising a run: stage
//! timings, capture QA, redactions, SfM figures, the training curve and held-out PSNR/SSIM, rendered
//! stills beside their nearest real photo, and links to the videos.
//!
//! Every section is optional: a stage that has not run (or a file that does not parse) is shown as
//! "not available". Real photos are read **only** through [`flythrough_core::RedactedImages`]
//! (`privacy/images/`), never from the original photo folder.

use crate::stage::{PATH_JSON, STILLS_JSON, Still, VIDEO_360, VIDEO_PREVIEW, VIEWER};
use crate::viewer::{base64, escape_html};
use crate::{RenderError, io_at};
use flythrough_core::run::Stage;
use flythrough_core::{RedactedImages, RunDir};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("–".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if n.is_f64() => {
                if f.abs() >= 1000.0 || f == f.trunc() {
                    format!("{f:.1}")
                } else {
                    format!("{f:.4}")
                }
            }
            _ => n.to_string(),
        }),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// A key/value table of an object's scalar members, short arrays inline, longer ones counted.
fn kv_table(v: &Value, max_rows: usize) -> String {
    let Some(obj) = v.as_object() else {
        return format!("<pre>{}</pre>", escape_html(&v.to_string()));
    };
    let mut s = String::from("<table class=\"kv\">");
    for (k, val) in obj.iter().take(max_rows) {
        let cell = match val {
            Value::Array(a) if a.is_empty() => "none".to_string(),
            Value::Array(a) if a.len() <= 6 && a.iter().all(|x| scalar(x).is_some()) => {
                a.iter().filter_map(scalar).collect::<Vec<_>>().join(", ")
            }
            Value::Array(a) => format!("{} items", a.len()),
            Value::Object(o) => {
                let inner: Vec<String> = o
                    .iter()
                    .take(8)
                    .filter_map(|(k2, v2)| scalar(v2).map(|x| format!("{k2}: {x}")))
                    .collect();
                inner.join(", ")
            }
            x => scalar(x).unwrap_or_default(),
        };
        let _ = write!(
            s,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape_html(k),
            escape_html(&cell)
        );
    }
    if obj.len() > max_rows {
        let _ = write!(
            s,
            "<tr><td colspan=2>… {} more</td></tr>",
            obj.len() - max_rows
        );
    }
    s.push_str("</table>");
    s
}

fn missing(what: &str) -> String {
    format!(
        "<p class=\"na\">{} — not available (stage not run yet, or the file is missing).</p>",
        escape_html(what)
    )
}

fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", base64(bytes))
}

/// A JPEG thumbnail (long side `max_side`) as a data URI.
fn thumbnail(img: &image::RgbImage, max_side: u32) -> Option<String> {
    let (w, h) = img.dimensions();
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

fn section_stages(run: &RunDir) -> String {
    let mut s = String::from(
        "<table class=\"grid\"><tr><th>stage</th><th>status</th><th>seconds</th><th>figures</th></tr>",
    );
    for st in Stage::ALL {
        match run.record(st) {
            Some(rec) => {
                let figs: Vec<String> = rec
                    .summary
                    .iter()
                    .filter_map(|(k, v)| scalar(v).map(|x| format!("{k}: {x}")))
                    .take(12)
                    .collect();
                let _ = write!(
                    s,
                    "<tr><td>{st}</td><td>done</td><td>{:.1}</td><td>{}</td></tr>",
                    rec.seconds,
                    escape_html(&figs.join(" · "))
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<tr><td>{st}</td><td class=\"na\">not run</td><td></td><td></td></tr>"
                );
            }
        }
    }
    s.push_str("</table>");
    s
}

fn section_capture(run: &RunDir) -> String {
    let Some(qa) = read_json(&run.stage_dir(Stage::Capture).join("qa.json")) else {
        return missing("capture/qa.json");
    };
    let mut s = String::new();
    if let Some(w) = qa
        .get("warnings")
        .and_then(|w| w.as_array())
        .filter(|w| !w.is_empty())
    {
        s.push_str("<ul class=\"warn\">");
        for x in w.iter().take(30) {
            let _ = write!(
                s,
                "<li>{}</li>",
                escape_html(x.as_str().unwrap_or(&x.to_string()))
            );
        }
        s.push_str("</ul>");
    }
    let mut brief = qa.clone();
    if let Some(o) = brief.as_object_mut() {
        o.remove("per_photo");
        o.remove("warnings");
    }
    s.push_str(&kv_table(&brief, 40));
    s
}

fn section_privacy(run: &RunDir) -> String {
    let Some(r) = read_json(&run.stage_dir(Stage::Privacy).join("redactions.json")) else {
        return missing("privacy/redactions.json");
    };
    let photos = r
        .get("photos")
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    let (mut faces, mut blurred, mut with_faces, mut regions, mut unscannable) = (0, 0, 0, 0, 0);
    for p in &photos {
        let f = p
            .get("faces")
            .and_then(|f| f.as_array())
            .map(|a| a.as_slice())
            .unwrap_or(&[]);
        faces += f.len();
        blurred += f
            .iter()
            .filter(|x| x.get("blurred").and_then(|b| b.as_bool()).unwrap_or(true))
            .count();
        with_faces += usize::from(!f.is_empty());
        regions += p
            .get("extra_regions")
            .and_then(|e| e.as_array())
            .map_or(0, |a| a.len());
        unscannable += usize::from(p.get("status").and_then(|s| s.as_str()) == Some("unscannable"));
    }
    let det = r
        .get("detector")
        .map(|d| kv_table(d, 8))
        .unwrap_or_default();
    format!(
        "<table class=\"kv\"><tr><th>photos scanned</th><td>{}</td></tr><tr><th>photos with faces</th><td>{with_faces}</td></tr>\
         <tr><th>faces found</th><td>{faces}</td></tr><tr><th>faces blurred</th><td>{blurred}</td></tr>\
         <tr><th>extra regions blurred</th><td>{regions}</td></tr><tr><th>unscannable (kept out)</th><td>{unscannable}</td></tr></table>\
         <h3>detector</h3>{det}",
        photos.len()
    )
}

fn section_sfm(run: &RunDir) -> String {
    match read_json(&run.stage_dir(Stage::Sfm).join("report.json")) {
        Some(v) => kv_table(&v, 40),
        None => missing("sfm/report.json"),
    }
}

fn section_train(run: &RunDir) -> String {
    let dir = run.stage_dir(Stage::Train);
    let mut s = String::new();
    match std::fs::read(dir.join("loss.png")) {
        Ok(png) => {
            let _ = write!(
                s,
                "<img class=\"plot\" alt=\"training loss\" src=\"{}\">",
                data_uri("image/png", &png)
            );
        }
        Err(_) => s.push_str(&missing("train/loss.png")),
    }
    match read_json(&dir.join("eval.json")) {
        Some(v) => {
            s.push_str("<h3>held-out photos</h3>");
            s.push_str(&kv_table(&v, 30));
        }
        None => s.push_str(&missing("train/eval.json")),
    }
    s
}

fn section_render(run: &RunDir) -> String {
    let dir = run.stage_dir(Stage::Render);
    let Some(p) = read_json(&dir.join(PATH_JSON)) else {
        return missing("render/path.json");
    };
    let mut s = String::new();
    let mut brief = p.clone();
    if let Some(o) = brief.as_object_mut() {
        o.remove("frames");
    }
    s.push_str(&kv_table(&brief, 20));
    s.push_str("<p class=\"links\">");
    for (f, what) in [
        (VIEWER, "360° viewer"),
        (VIDEO_360, "360° video (equirectangular)"),
        (VIDEO_PREVIEW, "preview video"),
    ] {
        if dir.join(f).is_file() {
            let _ = write!(s, "<a href=\"render/{f}\">{what}</a> ");
        }
    }
    s.push_str("</p>");
    let pano = std::fs::read(dir.join("stills/pano.png"))
        .ok()
        .and_then(|png| image::load_from_memory(&png).ok())
        .and_then(|img| thumbnail(&img.to_rgb8(), 1024));
    if let Some(uri) = pano {
        let _ = write!(
            s,
            "<h3>a 360° frame (middle of the path)</h3><img class=\"pano\" src=\"{uri}\">"
        );
    }
    let stills: Vec<Still> = std::fs::read_to_string(dir.join(STILLS_JSON))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if stills.is_empty() {
        return s;
    }
    // Real photos only through the privacy boundary.
    let redacted = RedactedImages::open(run).ok();
    s.push_str(
        "<h3>rendered frames beside the nearest real photo (redacted)</h3><div class=\"strip\">",
    );
    for st in &stills {
        let rendered = std::fs::read(dir.join(crate::stage::STILLS_DIR).join(&st.file))
            .ok()
            .and_then(|b| image::load_from_memory(&b).ok())
            .and_then(|i| thumbnail(&i.to_rgb8(), 360));
        let photo = match (&redacted, &st.nearest_photo) {
            (Some(r), Some(name)) => r.load_rgb(name).ok().and_then(|i| thumbnail(&i, 360)),
            _ => None,
        };
        let _ = write!(s, "<figure>");
        match rendered {
            Some(u) => {
                let _ = write!(s, "<img src=\"{u}\">");
            }
            None => s.push_str("<div class=\"na\">frame missing</div>"),
        }
        match photo {
            Some(u) => {
                let _ = write!(s, "<img src=\"{u}\">");
            }
            None => s.push_str(
                "<div class=\"na\">photo not available (privacy stage output missing)</div>",
            ),
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

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}\
h1{margin-bottom:0}h2{border-bottom:1px solid #ccc;margin-top:32px}table{border-collapse:collapse}\
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}\
.na{color:#999;font-style:italic}.warn li{color:#a60}.plot{max-width:640px}.pano{max-width:100%}\
.strip{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;border:1px solid #ddd;padding:6px}\
figure img{display:block;max-width:360px;margin-bottom:4px}figcaption{font-size:12px;color:#555}\
.links a{margin-right:16px}";

/// Write `RUN/report.html` from whatever stages have finished; returns its path.
pub fn write_report(run: &RunDir) -> Result<PathBuf, RenderError> {
    let name = run
        .root()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · flythrough report</title>\
         <style>{STYLE}</style></head><body><h1>{t}</h1><p>flythrough {v} · run folder {r}</p>",
        t = escape_html(&name),
        v = flythrough_core::run::PROGRAM_VERSION,
        r = escape_html(&run.root().display().to_string())
    );
    let sections: [(&str, String); 6] = [
        ("Stages", section_stages(run)),
        ("Fly-through", section_render(run)),
        ("Capture quality", section_capture(run)),
        ("Privacy: redactions", section_privacy(run)),
        ("Structure from motion", section_sfm(run)),
        ("Training", section_train(run)),
    ];
    for (title, body) in sections {
        let _ = write!(html, "<h2>{title}</h2>{body}");
    }
    html.push_str("</body></html>\n");
    std::fs::create_dir_all(run.root()).map_err(io_at(run.root()))?;
    let path = run.root().join("report.html");
    flythrough_core::run::write_atomic(&path, html.as_bytes()).map_err(io_at(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_run_still_gets_a_report() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("cafe"));
        let p = write_report(&run).unwrap();
        let html = std::fs::read_to_string(p).unwrap();
        assert_eq!(
            html.matches("<td class=\"na\">not run</td>").count(),
            Stage::ALL.len()
        );
        assert!(html.contains("capture/qa.json — not available"));
        assert!(html.contains("<h1>cafe</h1>"));
    }

    #[test]
    fn counts_redactions_and_shows_figures() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        std::fs::create_dir_all(run.stage_dir(Stage::Privacy)).unwrap();
        std::fs::write(
            run.stage_dir(Stage::Privacy).join("redactions.json"),
            r#"{"detector":{"name":"centerface"},"blur":{},"photos":[
                {"file":"a.jpg","status":"redacted","faces":[{"box":[0,0,1,1],"score":0.9,"blurred":true},{"box":[0,0,1,1],"score":0.8,"blurred":false}],"extra_regions":[[0,0,2,2]]},
                {"file":"b.jpg","status":"unscannable","faces":[],"extra_regions":[]}]}"#,
        )
        .unwrap();
        std::fs::create_dir_all(run.stage_dir(Stage::Train)).unwrap();
        std::fs::write(
            run.stage_dir(Stage::Train).join("eval.json"),
            r#"{"psnr": 27.123456, "ssim": 0.8312}"#,
        )
        .unwrap();
        let html = std::fs::read_to_string(write_report(&run).unwrap()).unwrap();
        assert!(html.contains("<th>faces found</th><td>2</td>"), "{html}");
        assert!(html.contains("<th>faces blurred</th><td>1</td>"));
        assert!(html.contains("<th>unscannable (kept out)</th><td>1</td>"));
        assert!(html.contains("<th>psnr</th><td>27.1235</td>"));
        assert!(html.contains("train/loss.png — not available"));
    }
}
