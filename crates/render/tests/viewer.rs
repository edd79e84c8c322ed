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

// ---- Walk mode (issue 18): the baked model ray-marched in WebGL2 by the page.

/// `GET path` from the view server: status line and body.
fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    (
        head.lines().next().unwrap_or("").to_string(),
        buf[split + 4..].to_vec(),
    )
}

/// RFC 4648 base64 (the page's `btoa`) to bytes.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for chunk in s.trim_end_matches('=').as_bytes().chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| val(c) as u32).collect();
        let n = v.iter().fold(0u32, |acc, &x| (acc << 6) | x) << (6 * (4 - v.len()));
        out.extend_from_slice(&n.to_be_bytes()[1..v.len()]);
    }
    out
}

/// A small baked model around the synthetic room (world: metres, z up): a 64^3 grid with stored
/// blocks inside the unit ball and in the contracted far field, smooth density from empty to
/// opaque, varied features, and a random colour head of width 18 (not a multiple of 4) with a
/// 2-d latent and exposure conditioning.
fn walk_model() -> flythrough_bake::BakedModel {
    use flythrough_bake::grid::{CHANNELS, from_field};
    use flythrough_nerf::coord::SceneNorm;
    use flythrough_nerf::field::ColorHead;
    let mut lo = [-1.0f32; CHANNELS];
    let mut scale = [2.0 / 255.0; CHANNELS];
    lo[0] = -12.0;
    scale[0] = 18.0 / 255.0;
    // About a third of the blocks, in a pattern that leaves empty space between them.
    let keep =
        |b: [usize; 3], _: &[[f32; CHANNELS]]| (b[0] * 7 + b[1] * 3 + b[2] * 5).is_multiple_of(3);
    let grid = from_field(64, lo, scale, keep, |p| {
        let mut v = [0f32; CHANNELS];
        v[0] = -3.0
            + 5.0 * (2.5 * p[0] + 0.5).sin() * (1.7 * p[1] - 0.3).cos()
            + 1.5 * (3.0 * p[2]).sin();
        for (c, f) in v.iter_mut().enumerate().skip(1) {
            *f = 0.9 * (c as f32 * 0.7 + 2.0 * p[0] - p[1] + 3.0 * p[2] * (c % 3) as f32).sin();
        }
        v
    });
    let head = ColorHead {
        mlp_width: 18,
        glo_dim: 2,
        exposure: true,
        params: Vec::new(),
    };
    let mut params = head.mlp().init_params(5);
    // Non-zero biases, so the folded bias (latent, exposure) is exercised too.
    let n = params.len();
    params[n - 3..].copy_from_slice(&[0.3, -0.2, 0.1]);
    flythrough_bake::BakedModel {
        grid,
        head: ColorHead { params, ..head },
        glo: vec![0.3, -0.2, 0.1, 0.4],
        norm: SceneNorm {
            center: [3.0, 2.5, 1.5],
            scale: 0.25,
            near: 0.02,
        },
        ev_mean: 0.5,
        train_names: vec!["a.jpg".into(), "b.jpg".into()],
        background: [0.35, 0.2, 0.55],
    }
}

/// Commit `model` as the run's bake stage (through the stage runner, with its blake3 recorded).
fn commit_bake(run: &flythrough_core::RunDir, model: &flythrough_bake::BakedModel) {
    flythrough_core::run::run_stage(run, Stage::Bake, "test", "test", true, |out, _| {
        let path = out.join(flythrough_core::BakeOutput::MODEL);
        let bytes = model.save(&path).map_err(std::io::Error::other)?;
        let summary = flythrough_core::summary::BakeSummary {
            representation: "test".into(),
            resolution: model.grid.res,
            block: 8,
            occupied_fraction: model.grid.occupied_fraction(),
            bytes,
            model_blake3: flythrough_core::run::hash_file(&path)?,
            ..Default::default()
        };
        Ok(flythrough_core::StageSummary::of(&summary))
    })
    .unwrap();
}

/// The page's `walktest {…}` line, with more virtual time when the page was not done.
fn walktest(bin: &Path, url: &str, profile: &Path, netlog: Option<&Path>) -> serde_json::Value {
    let mut line = String::new();
    for (i, budget) in BUDGETS_MS.iter().enumerate() {
        let mut cmd = headless(bin, &profile.join(i.to_string()), *budget);
        if let Some(log) = netlog {
            cmd.arg(format!("--log-net-log={}", log.display()));
        }
        let out = cmd.arg("--dump-dom").arg(url).output().unwrap();
        let dom = String::from_utf8_lossy(&out.stdout);
        line = dom
            .split("<pre id=\"autotest\">")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or("")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        if !line.contains("\"status\":\"waiting\"") && !line.is_empty() {
            break;
        }
        println!("walk mode not done within {budget} ms of virtual time; retrying with more");
    }
    let json = line
        .strip_prefix("walktest ")
        .unwrap_or_else(|| panic!("no walk self-test line: {line:?} ({url})"));
    serde_json::from_str(json).unwrap()
}

/// Forward, right and up of the page's camera for `setCamera(pos, forward, up)` (as the page
/// computes them: the forward's horizontal part and its pitch about the given up).
fn camera_basis(forward: [f64; 3], up: [f64; 3]) -> ([f64; 3], [f64; 3], [f64; 3]) {
    let norm = |a: [f64; 3]| {
        let n = (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt();
        [a[0] / n, a[1] / n, a[2] / n]
    };
    let cross = |a: [f64; 3], b: [f64; 3]| {
        [
            a[1] * b[2] - a[2] * b[1],
            a[2] * b[0] - a[0] * b[2],
            a[0] * b[1] - a[1] * b[0],
        ]
    };
    let (f, u) = (norm(forward), norm(up));
    let fu = f[0] * u[0] + f[1] * u[1] + f[2] * u[2];
    let fr = norm([f[0] - fu * u[0], f[1] - fu * u[1], f[2] - fu * u[2]]);
    let r = cross(fr, u);
    let p = fu.clamp(-1.0, 1.0).asin();
    let fwd = [
        fr[0] * p.cos() + u[0] * p.sin(),
        fr[1] * p.cos() + u[1] * p.sin(),
        fr[2] * p.cos() + u[2] * p.sin(),
    ];
    (fwd, r, cross(r, fwd))
}

/// Walk mode: the page marches the baked model in WebGL2 (SwiftShader here) and matches the CPU
/// renderer (`BakedModel::render_rays`, same pinhole rays) to at least 30 dB; it starts on the path
/// at the video's position; ArrowUp moves the camera; every request stays on the view server; a
/// run without a bake stage and a model that does not match its `stage.json` are refused.
#[test]
fn walk_mode_matches_the_cpu_renderer() {
    let Some(bin) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cfg, run) = common::venue(dir.path(), |c| {
        c.render.max_frames = 12;
        c.render.stills = 0;
        c.render.viewer_embed_max_mb = 0.0;
        // The walk mode shades with the latent the video was rendered with.
        c.render.appearance = flythrough_core::config::Appearance::Photo("b.jpg".into());
    });
    let (out, _) = common::render(&cfg, &run, &flythrough_render::AnalyticRoom::demo());
    let path: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("path.json")).unwrap()).unwrap();
    let server = flythrough_render::serve::Server::bind(run.root(), 0).unwrap();
    let addr = server.addr();
    std::thread::spawn(move || server.serve_forever());

    // No bake stage: walk mode is unavailable, with the reason, on the server and on the page.
    let (status, body) = http_get(addr, "/walk.json");
    let walk: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        status.contains("200") && walk["ok"] == false,
        "{status} {walk}"
    );
    assert!(walk["reason"].as_str().unwrap().contains("no bake stage"));
    assert!(http_get(addr, "/bake/baked.safetensors").0.contains("404"));
    let r = walktest(
        &bin,
        &format!("http://{addr}/?mode=walk&autotest=walk"),
        &dir.path().join("w0"),
        None,
    );
    assert_eq!(r["status"], "error", "{r}");
    assert_eq!(r["available"], false, "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("no bake stage"),
        "{r}"
    );

    // The baked model, committed.
    let model = walk_model();
    commit_bake(&run, &model);
    let (status, body) = http_get(addr, "/walk.json");
    let walk: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        status.contains("200") && walk["ok"] == true,
        "{status} {walk}"
    );

    let (w, h) = (96usize, 64usize);
    let pos = [2.25f64, 1.75, 1.25];
    let forward = [0.8f64, 0.35, 0.12];
    let up = [0.0f64, 0.0, 1.0];
    let fov = 70.0f64;
    let cam = [pos, forward, up]
        .iter()
        .flatten()
        .chain([fov].iter())
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let netlog = dir.path().join("netlog.json");
    let t = std::time::Instant::now();
    let r = walktest(
        &bin,
        &format!("http://{addr}/?mode=walk&autotest=walk&cam={cam}&size={w},{h}"),
        &dir.path().join("w1"),
        Some(&netlog),
    );
    println!("walk page: {:.1} s wall", t.elapsed().as_secs_f64());
    assert_eq!(r["status"], "ok", "{}", {
        let mut r = r.clone();
        r["pixels"] = "…".into();
        r
    });
    assert_eq!(
        (r["width"].as_u64().unwrap(), r["height"].as_u64().unwrap()),
        (w as u64, h as u64)
    );
    // Progressive: the first view was drawn before any stored block had been uploaded, and the
    // compared frame after all of them.
    assert_eq!(
        r["firstFrameSlots"], 0,
        "first view drawn after blocks were uploaded"
    );
    assert_eq!(r["slots"].as_u64(), Some(model.grid.slots() as u64));

    // It started on the path at the video's position (time 0: the first frame).
    let start = &r["start"]["pos"];
    for a in 0..3 {
        let want = path["frames"][0]["center"][a].as_f64().unwrap();
        assert!(
            (start[a].as_f64().unwrap() - want).abs() < 1e-9,
            "start {start} vs the path's first frame {}",
            path["frames"][0]["center"]
        );
    }

    // The page's pixels against the CPU renderer's for the same rays.
    let (fwd, right, cup) = camera_basis(forward, up);
    let (tx, ty) = (
        (fov.to_radians() / 2.0).tan() * w as f64 / h as f64,
        (fov.to_radians() / 2.0).tan(),
    );
    let mut dirs = Vec::with_capacity(w * h);
    for j in 0..h {
        for i in 0..w {
            let nx = (i as f64 + 0.5) / w as f64 * 2.0 - 1.0;
            let ny = 1.0 - (j as f64 + 0.5) / h as f64 * 2.0;
            dirs.push([0, 1, 2].map(|a| (fwd[a] + nx * tx * right[a] + ny * ty * cup[a]) as f32));
        }
    }
    let origins = vec![pos.map(|v| v as f32); w * h];
    // The page shades with `[render] appearance`'s latent and the exposure of the path frame
    // nearest the camera, as the video does there.
    assert_eq!(path["appearance"], "b.jpg");
    let nearest = path["frames"]
        .as_array()
        .unwrap()
        .iter()
        .min_by(|a, b| {
            let d = |f: &serde_json::Value| {
                (0..3)
                    .map(|k| (f["center"][k].as_f64().unwrap() - pos[k]).powi(2))
                    .sum::<f64>()
            };
            d(a).total_cmp(&d(b))
        })
        .unwrap();
    let ev = nearest["exposure_ev"].as_f64();
    let cpu = model.render_rays(&origins, &dirs, ev, &model.latent(Some("b.jpg")));
    // Neither is the default: the mean latent at the training mean exposure renders differently.
    let plain = model.render_rays(&origins, &dirs, None, &model.latent(None));
    let moved = cpu
        .rgb
        .iter()
        .zip(&plain.rgb)
        .map(|(a, b)| (0..3).map(|k| (a[k] - b[k]).abs()).fold(0f32, f32::max))
        .fold(0f32, f32::max);
    assert!(
        moved > 0.02,
        "appearance and exposure change the colours by {moved}"
    );
    println!("walk mode: appearance b.jpg, exposure {ev:?} (training mean 0.5)");
    let px = base64_decode(r["pixels"].as_str().unwrap());
    assert_eq!(px.len(), w * h * 4);
    let mut se = 0.0f64;
    let mut covered = 0;
    for (k, c) in cpu.rgb.iter().enumerate() {
        for a in 0..3 {
            let want = (c[a].clamp(0.0, 1.0) * 255.0).round() as f64;
            se += (px[k * 4 + a] as f64 - want).powi(2);
        }
        covered += (cpu.opacity[k] > 0.05) as usize;
    }
    let mse = se / (w * h * 3) as f64;
    let psnr = 10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10();
    println!(
        "walk mode vs CPU: PSNR {psnr:.2} dB over {w}x{h} ({covered} pixels with opacity > 0.05)"
    );
    assert!(
        covered > w * h / 4,
        "the test camera sees too little of the model"
    );
    assert!(psnr >= 30.0, "walk mode vs the CPU renderer: {psnr:.2} dB");

    // ArrowUp moved the camera forward (horizontally, along the view).
    let (p0, p1) = (&r["p0"], &r["p1"]);
    let step: Vec<f64> = (0..3)
        .map(|a| p1[a].as_f64().unwrap() - p0[a].as_f64().unwrap())
        .collect();
    let along = step[0] * fwd[0] + step[1] * fwd[1];
    assert!(along > 1e-3, "ArrowUp did not move forward: {p0} -> {p1}");
    assert!(step[2].abs() < 1e-9, "ArrowUp changed the height: {step:?}");

    // No request left the view server: the page's own resource list, and Chromium's net log.
    let origin = format!("http://{addr}/");
    let resources = r["resources"].as_array().unwrap();
    assert!(
        resources
            .iter()
            .any(|u| u.as_str().unwrap().ends_with("/bake/baked.safetensors")),
        "{resources:?}"
    );
    for u in resources {
        assert!(u.as_str().unwrap().starts_with(&origin), "{u}");
    }
    // Chromium's own requests (component updates, network time) carry no page initiator; the
    // page's carry its origin.
    let log = std::fs::read_to_string(&netlog).unwrap();
    let log: serde_json::Value = serde_json::from_str(&log)
        .or_else(|_| serde_json::from_str(&format!("{}]}}", log.trim_end().trim_end_matches(','))))
        .unwrap();
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].clone();
    let page_site = format!("http://{}", addr.ip());
    let mut page_urls = Vec::new();
    for e in log["events"].as_array().unwrap() {
        let p = &e["params"];
        let from_page = p["initiator"].as_str() == Some(origin.trim_end_matches('/'))
            || p["network_isolation_key"]
                .as_str()
                .is_some_and(|k| k.starts_with(&page_site));
        if e["type"] == start_job && from_page {
            page_urls.push(p["url"].as_str().unwrap().to_string());
        }
    }
    println!("the page's requests (net log): {page_urls:?}");
    assert!(
        page_urls
            .iter()
            .any(|u| u.ends_with("/bake/baked.safetensors"))
    );
    for u in &page_urls {
        assert!(
            u.starts_with(&origin),
            "a request outside the view server: {u}"
        );
    }

    // For measuring by hand (`flythrough view` on the copy): the run folder with its model.
    if let Ok(keep) = std::env::var("FLYTHROUGH_KEEP_WALK_RUN") {
        let copy = Command::new("cp")
            .arg("-a")
            .arg(run.root())
            .arg(&keep)
            .status();
        assert!(
            copy.is_ok_and(|s| s.success()),
            "cannot copy the run to {keep}"
        );
    }

    // A model file that does not match bake/stage.json: refused by the server and by the page.
    let file = run
        .stage_dir(Stage::Bake)
        .join(flythrough_core::BakeOutput::MODEL);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    let (status, body) = http_get(addr, "/bake/baked.safetensors");
    let body = String::from_utf8_lossy(&body);
    assert!(
        status.contains("409") && body.contains("does not match"),
        "{status} {body}"
    );
    let r = walktest(
        &bin,
        &format!("http://{addr}/?mode=walk&autotest=walk"),
        &dir.path().join("w2"),
        None,
    );
    assert_eq!(r["status"], "error", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("does not match"),
        "{r}"
    );
}
