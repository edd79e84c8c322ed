//! viewer.html in headless Chromium (WebGL through SwiftShader): the page draws a non-blank view,
//! and a scripted ArrowUp moves the video forward, both opened as a file (embedded video) and
//! served by the `flythrough view` server (video loaded over HTTP with Range requests).

mod common;

use flythrough_core::Stage;
use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| flythrough_testkit::testdata::find_on_path(n));
    if found.is_none() {
        flythrough_testkit::testdata::skip(
            "chromium (chromium, chromium-browser or google-chrome on the PATH)",
            "Debian: apt-get install chromium",
        );
    }
    found
}

/// Virtual-time budgets tried in turn: media decoding runs in real time, so on a loaded machine the
/// page may need more (virtual) time before the video has loaded and seeked.
const BUDGETS_MS: [u32; 4] = [8_000, 30_000, 90_000, 240_000];

/// Headless Chromium with the flags that work offline, as root, without a GPU.
fn headless(bin: &Path, profile: &Path, budget_ms: u32) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-unsafe-swiftshader",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--mute-audio",
        "--window-size=480,270",
    ])
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// `autotest ok t0=… t1=… var0=… var1=…` → the numbers.
fn autotest(bin: &Path, url: &str, profile: &Path) -> (f64, f64, f64, f64) {
    let mut line = String::new();
    for (i, budget) in BUDGETS_MS.iter().enumerate() {
        let out = headless(bin, &profile.join(i.to_string()), *budget)
            .arg("--dump-dom")
            .arg(url)
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&out.stdout);
        line = dom
            .split("<pre id=\"autotest\">")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or("")
            .to_string();
        if line != "autotest waiting" {
            break;
        }
        println!("viewer not ready within {budget} ms of virtual time; retrying with more");
    }
    assert!(
        line.starts_with("autotest ok"),
        "page self-test: {line:?} ({url})"
    );
    let get = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} missing in {line:?}"))
    };
    (get("t0"), get("t1"), get("var0"), get("var1"))
}

/// Luminance variance of a PNG screenshot.
fn variance(png: &Path) -> f64 {
    let img = image::open(png).unwrap().to_luma8();
    let n = img.len() as f64;
    let m = img.iter().map(|&v| v as f64).sum::<f64>() / n;
    img.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n
}

/// Mean chroma (max − min channel) of a PNG: the page's own text and bars are grey, the synthetic
/// room is colourful, so a page that failed to show the video scores ~0.
fn chroma(png: &Path) -> f64 {
    let img = image::open(png).unwrap().to_rgb8();
    let n = (img.width() * img.height()) as f64;
    img.pixels()
        .map(|p| (p.0.iter().max().unwrap() - p.0.iter().min().unwrap()) as f64)
        .sum::<f64>()
        / n
}

#[test]
fn viewer_draws_and_arrow_up_travels_forward() {
    let Some(bin) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cfg, run) = common::venue(dir.path(), |c| {
        c.render.max_frames = 24;
        c.render.stills = 0;
    });
    let (out, _) = common::render(&cfg, &run, &flythrough_render::AnalyticRoom::demo());
    let html = out.join("viewer.html");
    assert!(
        std::fs::read_to_string(&html)
            .unwrap()
            .contains("const EMBED = \"AAAA"),
        "small video is embedded"
    );
    let url = format!("file://{}", html.display());

    // Screenshot: the WebGL view is not blank.
    let shot = dir.path().join("shot.png");
    let mut v = 0.0;
    for (i, budget) in BUDGETS_MS.iter().enumerate() {
        let st = headless(&bin, &dir.path().join(format!("p1-{i}")), *budget)
            .arg(format!("--screenshot={}", shot.display()))
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            shot.is_file(),
            "no screenshot: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        v = variance(&shot);
        println!(
            "screenshot: luminance variance {v:.1}, mean chroma {:.1}",
            chroma(&shot)
        );
        if chroma(&shot) > 15.0 {
            break;
        }
        println!("screenshot blank within {budget} ms of virtual time; retrying with more");
    }
    assert!(
        v > 200.0,
        "screenshot looks blank (luminance variance {v:.1})"
    );

    // Four ArrowUp presses = 4 × 0.25 m at 1 m/s = 1 s further along the video.
    let (t0, t1, var0, var1) = autotest(&bin, &format!("{url}?autotest=1"), &dir.path().join("p2"));
    assert_eq!(t0, 0.0);
    assert!(
        (t1 - 1.0).abs() < 1e-3,
        "ArrowUp ×4 moved the video to {t1} s, expected 1 s"
    );
    assert!(
        var0 > 200.0 && var1 > 200.0,
        "drawn view is blank: {var0} {var1}"
    );
    assert_ne!(var0, var1, "the drawn view did not change after moving");

    // Served over HTTP with the video as a separate file (Range requests).
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(run.work_dir(Stage::Render));
    let mut cfg = cfg;
    cfg.render.viewer_embed_max_mb = 0.0;
    let (out, _) = common::render(&cfg, &run, &flythrough_render::AnalyticRoom::demo());
    assert!(
        std::fs::read_to_string(out.join("viewer.html"))
            .unwrap()
            .contains("const EMBED = \"\"")
    );
    let server = flythrough_render::serve::Server::bind(run.root(), 0).unwrap();
    let addr = server.addr();
    std::thread::spawn(move || server.serve_forever());
    let (t0, t1, var0, _) = autotest(
        &bin,
        &format!("http://{addr}/?autotest=1"),
        &dir.path().join("p3"),
    );
    assert_eq!(t0, 0.0);
    assert!((t1 - 1.0).abs() < 1e-3, "served: video at {t1} s");
    assert!(var0 > 200.0, "served: blank view");
}

/// The blank-detector itself: the page with a video that cannot load is rejected.
#[test]
fn a_page_without_its_video_counts_as_blank() {
    let Some(bin) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let html = flythrough_render::viewer::viewer_html(&flythrough_render::viewer::ViewerInfo {
        video_file: "missing.mp4".into(),
        embedded: None,
        title: "broken".into(),
        duration_s: 5.0,
        fps: 10.0,
        length_m: 5.0,
        speed_m_per_s: 1.0,
    });
    let page = dir.path().join("viewer.html");
    std::fs::write(&page, html).unwrap();
    let shot = dir.path().join("shot.png");
    headless(&bin, &dir.path().join("p"), BUDGETS_MS[0])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let c = chroma(&shot);
    println!(
        "broken page: luminance variance {:.1}, mean chroma {c:.1}",
        variance(&shot)
    );
    assert!(c < 5.0, "mean chroma {c}");
}
