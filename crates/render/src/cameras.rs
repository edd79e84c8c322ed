//! Output cameras: pixel → world ray.
//!
//! Pixel coordinates are continuous with pixel centres at `+0.5` (COLMAP convention): pixel
//! `(i, j)` (column, row) is sampled at `(i + 0.5, j + 0.5)`. Rays are `(origin, unit direction)` in
//! the world frame of the reconstruction.

use nalgebra::{UnitQuaternion, Vector3};

/// A camera that casts one ray per pixel.
pub trait RayCamera: Sync {
    fn size(&self) -> (u32, u32);
    /// World ray through continuous pixel position `(x, y)`.
    fn ray(&self, x: f64, y: f64) -> (Vector3<f64>, Vector3<f64>);
    /// Cone radius per unit distance at pixel row `y` (mip-NeRF `radii`): `2/√12 ×` the pixel's
    /// angular size.
    fn pixel_radius(&self, y: f64) -> f64;
    /// The rays through the pixel centres of the `tw × th` tile at `(x0, y0)`, row by row, as
    /// `f32` (what the renderers take), appended to `origins` and `dirs`.
    fn tile_rays(
        &self,
        (x0, y0, tw, th): (u32, u32, u32, u32),
        origins: &mut Vec<[f32; 3]>,
        dirs: &mut Vec<[f32; 3]>,
    ) {
        for y in y0..y0 + th {
            for x in x0..x0 + tw {
                let (o, d) = self.ray(x as f64 + 0.5, y as f64 + 0.5);
                origins.push([o.x as f32, o.y as f32, o.z as f32]);
                dirs.push([d.x as f32, d.y as f32, d.z as f32]);
            }
        }
    }
}

/// `2 / √12`: the radius of a cone whose cross-section has the variance of a unit pixel square
/// (mip-NeRF, Barron et al. 2021, §3 "Cone tracing").
pub const PIXEL_CONE: f64 = 0.577_350_269_189_625_8;

/// Equirectangular (latitude–longitude) 360° camera, levelled with the world up vector.
///
/// Local frame: `f` = forward (horizontal), `r = f × up` = right, `up`. A pixel at `(x, y)` in a
/// `W × H` frame has longitude `λ = 2π (x / W − ½)` (0 at the centre column, positive to the right)
/// and latitude `φ = π (½ − y / H)` (+90° at the top row edge, −90° at the bottom):
/// `d = cos φ sin λ · r + cos φ cos λ · f + sin φ · up`. This is the layout Spherical Video V2's
/// `equi` projection and 360° players expect (centre of the frame = initial view direction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Equirect {
    pub width: u32,
    pub height: u32,
    pub center: Vector3<f64>,
    pub forward: Vector3<f64>,
    pub right: Vector3<f64>,
    pub up: Vector3<f64>,
}

impl Equirect {
    /// `forward` is projected onto the plane ⟂ `up` and normalised; both must be non-degenerate.
    pub fn new(
        width: u32,
        height: u32,
        center: Vector3<f64>,
        forward: Vector3<f64>,
        up: Vector3<f64>,
    ) -> Equirect {
        let up = up.normalize();
        let f = (forward - up * forward.dot(&up)).normalize();
        let right = f.cross(&up);
        Equirect {
            width,
            height,
            center,
            forward: f,
            right,
            up,
        }
    }

    /// `(λ, φ)` → unit world direction.
    pub fn direction(&self, lon: f64, lat: f64) -> Vector3<f64> {
        self.direction_sin_cos(lon.sin_cos(), lat.sin_cos())
    }

    /// [`Equirect::direction`] from `(sin λ, cos λ)` and `(sin φ, cos φ)`.
    fn direction_sin_cos(&self, (sl, cl): (f64, f64), (sp, cp): (f64, f64)) -> Vector3<f64> {
        self.right * (cp * sl) + self.forward * (cp * cl) + self.up * sp
    }

    /// Continuous pixel → `(λ, φ)`.
    pub fn pixel_to_angles(&self, x: f64, y: f64) -> (f64, f64) {
        let lon = 2.0 * std::f64::consts::PI * (x / self.width as f64 - 0.5);
        let lat = std::f64::consts::PI * (0.5 - y / self.height as f64);
        (lon, lat)
    }

    /// World direction → continuous pixel (inverse of [`RayCamera::ray`]'s direction).
    pub fn direction_to_pixel(&self, d: &Vector3<f64>) -> (f64, f64) {
        let d = d.normalize();
        let lon = d.dot(&self.right).atan2(d.dot(&self.forward));
        let lat = d.dot(&self.up).clamp(-1.0, 1.0).asin();
        let x = (lon / (2.0 * std::f64::consts::PI) + 0.5) * self.width as f64;
        let y = (0.5 - lat / std::f64::consts::PI) * self.height as f64;
        (x, y)
    }
}

impl RayCamera for Equirect {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
    fn ray(&self, x: f64, y: f64) -> (Vector3<f64>, Vector3<f64>) {
        let (lon, lat) = self.pixel_to_angles(x, y);
        (self.center, self.direction(lon, lat))
    }
    /// [`RayCamera::ray`] of every pixel of the tile, with one `sin_cos` per column and per row
    /// (not per pixel): the same directions, bit for bit.
    fn tile_rays(
        &self,
        (x0, y0, tw, th): (u32, u32, u32, u32),
        origins: &mut Vec<[f32; 3]>,
        dirs: &mut Vec<[f32; 3]>,
    ) {
        let cols: Vec<(f64, f64)> = (x0..x0 + tw)
            .map(|x| self.pixel_to_angles(x as f64 + 0.5, 0.0).0.sin_cos())
            .collect();
        let o = [
            self.center.x as f32,
            self.center.y as f32,
            self.center.z as f32,
        ];
        for y in y0..y0 + th {
            let lat = self.pixel_to_angles(0.0, y as f64 + 0.5).1.sin_cos();
            for &lon in &cols {
                let d = self.direction_sin_cos(lon, lat);
                origins.push(o);
                dirs.push([d.x as f32, d.y as f32, d.z as f32]);
            }
        }
    }
    /// A pixel spans `π/H` in latitude and `cos φ · π/H` in longitude: geometric mean.
    fn pixel_radius(&self, y: f64) -> f64 {
        let (_, lat) = self.pixel_to_angles(0.0, y);
        PIXEL_CONE * std::f64::consts::PI / self.height as f64 * lat.cos().max(1e-3).sqrt()
    }
}

/// Ideal pinhole camera (no distortion) with a horizontal field of view, principal point at the
/// image centre; `rotation` is world-to-camera (OpenCV axes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perspective {
    pub width: u32,
    pub height: u32,
    /// Focal length in pixels: `f = (W / 2) / tan(fov_x / 2)`.
    pub focal: f64,
    pub center: Vector3<f64>,
    pub rotation: UnitQuaternion<f64>,
}

impl Perspective {
    pub fn new(
        width: u32,
        height: u32,
        fov_x_deg: f64,
        center: Vector3<f64>,
        rotation: UnitQuaternion<f64>,
    ) -> Perspective {
        let focal = 0.5 * width as f64 / (0.5 * fov_x_deg.to_radians()).tan();
        Perspective {
            width,
            height,
            focal,
            center,
            rotation,
        }
    }
}

impl RayCamera for Perspective {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
    fn ray(&self, x: f64, y: f64) -> (Vector3<f64>, Vector3<f64>) {
        let d = Vector3::new(
            (x - 0.5 * self.width as f64) / self.focal,
            (y - 0.5 * self.height as f64) / self.focal,
            1.0,
        );
        (self.center, (self.rotation.inverse() * d).normalize())
    }
    fn pixel_radius(&self, _y: f64) -> f64 {
        PIXEL_CONE / self.focal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cams() -> Vec<Equirect> {
        let ups = [
            Vector3::z(),
            -Vector3::y(),
            Vector3::new(0.1, -0.9, 0.3).normalize(),
        ];
        let fwds = [
            Vector3::x(),
            Vector3::new(1.0, 0.2, -0.4),
            Vector3::new(-0.3, 0.1, 1.0),
        ];
        ups.iter()
            .zip(fwds)
            .map(|(u, f)| Equirect::new(256, 128, Vector3::new(1.0, 2.0, 3.0), f, *u))
            .collect()
    }

    /// A tile's rays with the sines and cosines per row and column are the per-pixel rays.
    #[test]
    fn equirect_tile_rays_are_its_pixel_rays() {
        let cam = Equirect::new(
            96,
            48,
            Vector3::new(0.3, -1.0, 2.0),
            Vector3::new(0.2, 1.0, 0.1),
            Vector3::new(0.05, 0.1, 1.0),
        );
        let (mut o, mut d) = (Vec::new(), Vec::new());
        cam.tile_rays((40, 10, 32, 16), &mut o, &mut d);
        assert_eq!(d.len(), 32 * 16);
        for (k, (ok, dk)) in o.iter().zip(&d).enumerate() {
            let (x, y) = (40 + k % 32, 10 + k / 32);
            let (wo, wd) = cam.ray(x as f64 + 0.5, y as f64 + 0.5);
            assert_eq!(*ok, [wo.x as f32, wo.y as f32, wo.z as f32]);
            assert_eq!(
                *dk,
                [wd.x as f32, wd.y as f32, wd.z as f32],
                "pixel ({x}, {y})"
            );
        }
    }

    #[test]
    fn centre_pixel_looks_forward() {
        for c in cams() {
            let (o, d) = c.ray(c.width as f64 / 2.0, c.height as f64 / 2.0);
            assert_eq!(o, c.center);
            assert!((d - c.forward).norm() < 1e-12, "{d:?} vs {:?}", c.forward);
            // Forward is horizontal (gravity aligned) and a quarter turn right of centre is `right`.
            assert!(c.forward.dot(&c.up).abs() < 1e-12);
            let (_, d) = c.ray(0.75 * c.width as f64, c.height as f64 / 2.0);
            assert!((d - c.right).norm() < 1e-12);
        }
    }

    #[test]
    fn rows_map_to_elevation_plus_90_to_minus_90() {
        for c in cams() {
            let h = c.height as f64;
            for j in 0..=c.height {
                let y = j as f64;
                let (_, d) = c.ray(c.width as f64 * 0.3, y);
                let elev = d.dot(&c.up).clamp(-1.0, 1.0).asin().to_degrees();
                let want = 90.0 - 180.0 * y / h;
                assert!((elev - want).abs() < 1e-9, "row {y}: {elev} vs {want}");
            }
            // Top edge straight up, bottom edge straight down.
            assert!((c.ray(10.0, 0.0).1 - c.up).norm() < 1e-12);
            assert!((c.ray(10.0, h).1 + c.up).norm() < 1e-12);
        }
    }

    #[test]
    fn direction_pixel_direction_round_trip() {
        for c in cams() {
            let mut worst: f64 = 0.0;
            for j in 0..c.height {
                for i in (0..c.width).step_by(3) {
                    let (x, y) = (i as f64 + 0.5, j as f64 + 0.5);
                    let (_, d) = c.ray(x, y);
                    assert!((d.norm() - 1.0).abs() < 1e-12);
                    let (x2, y2) = c.direction_to_pixel(&d);
                    let (_, d2) = c.ray(x2, y2);
                    worst = worst.max((d - d2).norm());
                    assert!((x - x2).abs() < 1e-6 && (y - y2).abs() < 1e-6);
                }
            }
            assert!(worst < 1e-6, "{worst}");
        }
    }

    #[test]
    fn pixel_cone_radius_matches_the_pixel_footprint() {
        let c = Equirect::new(256, 128, Vector3::zeros(), Vector3::x(), Vector3::z());
        // At the equator a pixel is π/128 rad square: radius 2/√12 · π/128.
        let want = 2.0 / 12f64.sqrt() * std::f64::consts::PI / 128.0;
        assert!((c.pixel_radius(64.0) - want).abs() < 1e-12);
        // Towards the poles pixels shrink horizontally.
        assert!(c.pixel_radius(4.0) < 0.5 * want);
        let f = Vector3::x();
        let p = Perspective::new(
            100,
            50,
            90.0,
            Vector3::zeros(),
            crate::path::level_rotation(&f, &Vector3::z()),
        );
        assert!((p.focal - 50.0).abs() < 1e-9);
        assert!((p.pixel_radius(0.0) - 2.0 / 12f64.sqrt() / 50.0).abs() < 1e-12);
    }

    #[test]
    fn perspective_centre_ray_is_the_optical_axis() {
        let f = Vector3::new(1.0, 1.0, 0.0).normalize();
        let q = crate::path::level_rotation(&f, &Vector3::z());
        let p = Perspective::new(64, 36, 90.0, Vector3::zeros(), q);
        let (_, d) = p.ray(32.0, 18.0);
        assert!((d - f).norm() < 1e-12);
        // Left and right edges are ±45° off axis for a 90° field of view.
        let (_, l) = p.ray(0.0, 18.0);
        let (_, r) = p.ray(64.0, 18.0);
        assert!((l.dot(&f).acos().to_degrees() - 45.0).abs() < 1e-9);
        assert!((l.angle(&r).to_degrees() - 90.0).abs() < 1e-9);
        // Image y goes down: row 0 looks up.
        assert!(p.ray(32.0, 0.0).1.z > 0.0);
    }
}
