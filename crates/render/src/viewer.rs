//! `viewer.html`: one self-contained page (no CDN, no network) that shows the 360° video on the
//! inside of a sphere with WebGL. Drag to look around; scroll or ↑/↓ to travel along the path
//! (the video is scrubbed: `video.currentTime` moves by `metres / speed`); a progress bar shows
//! the distance travelled.
//!
//! The video is embedded (base64, turned into a Blob URL) when it is small enough
//! (`[render] viewer_embed_max_mb`), so the page works opened straight from disk; otherwise it
//! loads `flythrough_360.mp4` from its own folder, which browsers only allow as a WebGL texture
//! when the page is served over HTTP (`flythrough view RUN_DIR`).
//!
//! Walk mode (`viewer.html?mode=walk`, `V`, the *Walk* button): the bake stage's model
//! ray-marched in WebGL2 as `Grid::march_visiting` does, then the deferred colour head; it needs the
//! page served by `flythrough view` (`/walk.json`, `/bake/baked.safetensors`, see [`crate::serve`]).
//! `window.flythroughWalk` exposes `ready`, `frames`, `lastFrameMs`, `setCamera`, `camera`,
//! `setSize` and `pixels` for tests; `?autotest=walk&cam=…&size=W,H` runs the walk self-test.
//!
//! `viewer.html?autotest=1` presses ArrowUp four times once the video is loaded and writes
//! `autotest ok t0=… t1=… var0=… var1=…` (video time before/after, variance of the drawn pixels)
//! into the title and `<pre id="autotest">`; the headless-browser test reads it.

use serde::Serialize;

const TEMPLATE: &str = include_str!("viewer.html");

/// What the page needs to know.
#[derive(Debug, Clone)]
pub struct ViewerInfo<'a> {
    /// The video's file name next to the page (used when not embedded).
    pub video_file: String,
    /// The video's bytes to embed, if any.
    pub embedded: Option<&'a [u8]>,
    pub title: String,
    pub duration_s: f64,
    pub fps: f64,
    pub length_m: f64,
    pub speed_m_per_s: f64,
}

#[derive(Serialize)]
struct PageInfo<'a> {
    video_file: &'a str,
    duration_s: f64,
    fps: f64,
    length_m: f64,
    speed_m_per_s: f64,
}

pub use flythrough_core::html::{base64, escape_html};

/// The page.
pub fn viewer_html(info: &ViewerInfo) -> String {
    let page = PageInfo {
        video_file: &info.video_file,
        duration_s: info.duration_s,
        fps: info.fps,
        length_m: info.length_m,
        speed_m_per_s: info.speed_m_per_s,
    };
    // JSON inside <script>: escape '<' so no "</script>" can appear.
    let json = serde_json::to_string(&page)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c");
    let embed = info.embedded.map(base64).unwrap_or_default();
    TEMPLATE
        .replace("__TITLE__", &escape_html(&info.title))
        .replace("__INFO_JSON__", &json)
        .replace("__EMBED__", &embed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn page_is_self_contained() {
        let html = viewer_html(&ViewerInfo {
            video_file: "flythrough_360.mp4".into(),
            embedded: Some(b"\0\0\0\x18ftypmp42"),
            title: "Caf\u{e9} <Bar>".into(),
            duration_s: 10.0,
            fps: 30.0,
            length_m: 9.0,
            speed_m_per_s: 1.0,
        });
        assert!(!html.contains("__"), "a placeholder was left");
        assert!(html.contains("Café &lt;Bar&gt;"));
        assert!(html.contains(&base64(b"\0\0\0\x18ftypmp42")));
        // No network: no http(s) URLs other than XML namespaces, no external scripts or styles.
        for bad in ["<script src", "<link", "http://", "https://", "import("] {
            assert!(!html.contains(bad), "{bad}");
        }
    }
}
