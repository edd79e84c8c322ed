//! What the frames are rendered from: anything that maps rays to colours.
//!
//! [`RaySource`] is the render stage's view of a trained model: rays in the SfM world frame
//! (metric), unit directions, an exposure value (EV, as in `capture/manifest.json`), and display
//! RGB in `[0, 1]` back. The NeRF adapter lives in [`crate::nerf_source`]; [`AnalyticRoom`] is an
//! exact procedural scene for tests and benchmarks.

use crate::cameras::{Equirect, Perspective};
use image::RgbImage;
use nalgebra::Vector3;

/// A whole frame's camera, for sources that generate its rays themselves (the GPU).
#[derive(Debug, Clone, Copy)]
pub enum FrameCam<'a> {
    Equirect(&'a Equirect),
    Perspective(&'a Perspective),
}

/// A frame rendering on a device; [`PendingFrame::wait`] returns it.
pub trait PendingFrame: Send {
    fn wait(self: Box<Self>) -> Result<RgbImage, String>;
}

/// Where a ray source renders.
pub use flythrough_core::summary::DeviceUsed as SourceDevice;

/// A renderer of rays.
pub trait RaySource: Sync {
    /// Colour of each ray (`origins[i]`, `dirs[i]`), display RGB in `[0, 1]`, rendered at
    /// exposure `exposure_ev`.
    fn render_rays(
        &self,
        origins: &[[f32; 3]],
        dirs: &[[f32; 3]],
        exposure_ev: f64,
    ) -> Vec<[f32; 3]>;

    /// Like [`RaySource::render_rays`] for cone-shaped rays (mip-NeRF): `radius` is the cone's
    /// radius per unit distance (`None` = the source's default). Sources without anti-aliasing
    /// ignore it.
    fn render_cone_rays(
        &self,
        origins: &[[f32; 3]],
        dirs: &[[f32; 3]],
        radius: Option<f32>,
        exposure_ev: f64,
    ) -> Vec<[f32; 3]> {
        let _ = radius;
        self.render_rays(origins, dirs, exposure_ev)
    }

    /// Short name for logs and `stage.json`.
    fn name(&self) -> String {
        "ray source".into()
    }

    /// Start a whole frame on the device that renders it (GPU sources: rays generated on the
    /// device, pixels read back once). `None`: render the frame by tiles of rays.
    fn start_frame(
        &self,
        cam: FrameCam,
        exposure_ev: f64,
    ) -> Option<Result<Box<dyn PendingFrame>, String>> {
        let _ = (cam, exposure_ev);
        None
    }

    /// Where this source renders.
    fn device(&self) -> SourceDevice {
        SourceDevice::cpu()
    }
}

/// A procedural room: an axis-aligned box (walls, floor, ceiling with distinct colours and a 0.5 m
/// grid of darker lines, a checker floor) with coloured pillars. `up` is the world's +`up_axis`.
/// Brightness scales as `2^(ev − ev_ref)`, like a camera's exposure.
#[derive(Debug, Clone)]
pub struct AnalyticRoom {
    pub min: Vector3<f64>,
    pub max: Vector3<f64>,
    /// Vertical pillars: `(x, y)` centre in the floor plane (axes 0 and 1), radius, colour.
    pub pillars: Vec<([f64; 2], f64, [f32; 3])>,
    pub ev_ref: f64,
}

impl AnalyticRoom {
    /// An 8 m × 6 m × 3 m room (z up) with three pillars.
    pub fn demo() -> AnalyticRoom {
        AnalyticRoom {
            min: Vector3::new(-1.0, -1.0, 0.0),
            max: Vector3::new(7.0, 5.0, 3.0),
            pillars: vec![
                ([2.0, 3.5], 0.3, [0.85, 0.2, 0.15]),
                ([4.5, 0.8], 0.25, [0.15, 0.6, 0.85]),
                ([5.8, 3.8], 0.35, [0.9, 0.8, 0.2]),
            ],
            ev_ref: 0.0,
        }
    }

    /// Albedo of the hit point and the distance, for one ray.
    pub fn trace(&self, o: Vector3<f64>, d: Vector3<f64>) -> ([f32; 3], f64) {
        // Nearest pillar (infinite cylinder along z, clipped by the room).
        let mut best_t = f64::INFINITY;
        let mut best_col = [0.0f32; 3];
        for &(c, r, col) in &self.pillars {
            let (ox, oy) = (o.x - c[0], o.y - c[1]);
            let a = d.x * d.x + d.y * d.y;
            if a < 1e-18 {
                continue;
            }
            let b = ox * d.x + oy * d.y;
            let cc = ox * ox + oy * oy - r * r;
            let disc = b * b - a * cc;
            if disc < 0.0 {
                continue;
            }
            let t = (-b - disc.sqrt()) / a;
            if t > 1e-6 && t < best_t {
                let z = o.z + t * d.z;
                if z > self.min.z && z < self.max.z {
                    best_t = t;
                    let p = o + d * t;
                    let ang = (p.y - c[1]).atan2(p.x - c[0]);
                    let stripe = if ((ang * 4.0 / std::f64::consts::PI).floor() as i64
                        + (z * 4.0).floor() as i64)
                        % 2
                        == 0
                    {
                        1.0
                    } else {
                        0.75
                    };
                    best_col = col.map(|v| v * stripe);
                }
            }
        }
        // Room walls from the inside: exit distance of the slab.
        let mut t_exit = f64::INFINITY;
        let mut axis = 0;
        let mut side_max = false;
        for k in 0..3 {
            if d[k].abs() < 1e-15 {
                continue;
            }
            let (t, is_max) = if d[k] > 0.0 {
                ((self.max[k] - o[k]) / d[k], true)
            } else {
                ((self.min[k] - o[k]) / d[k], false)
            };
            if t < t_exit {
                t_exit = t;
                axis = k;
                side_max = is_max;
            }
        }
        if best_t < t_exit {
            return (best_col, best_t);
        }
        let p = o + d * t_exit;
        let base: [f32; 3] = match (axis, side_max) {
            (2, false) => [0.55, 0.45, 0.35], // floor
            (2, true) => [0.92, 0.92, 0.9],   // ceiling
            (0, false) => [0.75, 0.55, 0.5],
            (0, true) => [0.5, 0.7, 0.55],
            (1, false) => [0.55, 0.6, 0.8],
            _ => [0.8, 0.75, 0.55],
        };
        // 0.5 m grid lines on walls, a 1 m checker on the floor.
        let (a, b) = match axis {
            0 => (p.y, p.z),
            1 => (p.x, p.z),
            _ => (p.x, p.y),
        };
        let line = |v: f64| {
            let f = (v * 2.0).rem_euclid(1.0);
            !(0.03..=0.97).contains(&f)
        };
        let mut k = if line(a) || line(b) { 0.45 } else { 1.0 };
        if axis == 2 && !side_max && ((a.floor() as i64 + b.floor() as i64) % 2 == 0) {
            k *= 0.7;
        }
        (base.map(|v| v * k), t_exit)
    }
}

impl RaySource for AnalyticRoom {
    fn render_rays(
        &self,
        origins: &[[f32; 3]],
        dirs: &[[f32; 3]],
        exposure_ev: f64,
    ) -> Vec<[f32; 3]> {
        let gain = (2.0f64).powf(exposure_ev - self.ev_ref) as f32;
        origins
            .iter()
            .zip(dirs)
            .map(|(o, d)| {
                let o = Vector3::new(o[0] as f64, o[1] as f64, o[2] as f64);
                let d = Vector3::new(d[0] as f64, d[1] as f64, d[2] as f64);
                let (c, _) = self.trace(o, d);
                c.map(|v| (v * gain).clamp(0.0, 1.0))
            })
            .collect()
    }

    fn name(&self) -> String {
        "analytic room".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_hits_the_expected_surfaces() {
        let room = AnalyticRoom::demo();
        let o = Vector3::new(0.0, 0.0, 1.5);
        // Straight down: the floor 1.5 m below; straight up: the ceiling 1.5 m above.
        let (c, t) = room.trace(o, -Vector3::z());
        assert!((t - 1.5).abs() < 1e-12 && c[0] > c[2]);
        let (_, t) = room.trace(o, Vector3::z());
        assert!((t - 1.5).abs() < 1e-12);
        // Towards the first pillar at (2, 3.5), r = 0.3.
        let to = Vector3::new(2.0, 3.5, 1.5) - o;
        let (c, t) = room.trace(o, to.normalize());
        assert!((t - (to.norm() - 0.3)).abs() < 1e-9, "{t}");
        assert!(c[0] > 0.5 && c[1] < 0.3);
        // Exposure: +1 EV doubles (unclipped) values.
        let dark = room.render_rays(&[[0.0, 0.0, 1.5]], &[[0.0, 0.0, -1.0]], -2.0)[0];
        let bright = room.render_rays(&[[0.0, 0.0, 1.5]], &[[0.0, 0.0, -1.0]], -1.0)[0];
        for k in 0..3 {
            assert!((bright[k] - 2.0 * dark[k]).abs() < 1e-6);
        }
    }
}
