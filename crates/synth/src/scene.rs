//! The synthetic room: geometry, materials, lights, ray tracing and rendering.
//!
//! World frame: metres, **+z up** (gravity is −z), the room spans `[0, 6] x [0, 5] x [0, 3]`.
//! Walls: `x = 0` brick, `x = 6` leaf wallpaper, `y = 0` plaster over a wainscot, `y = 5` tiles;
//! planked floor with a rug, suspended ceiling. Rays: `o + t d`, `d` unit, `t` in metres.
//! Cameras follow `flythrough_core` (world-to-camera poses, OpenCV axes, pixel centres at +0.5):
//! the ray of pixel position `px` is `pose⁻¹ · camera.ray(px)`, the exact inverse of
//! `camera.project(pose.transform(p))`.

use crate::geometry::{LocalHit, Shape, V3};
use crate::rng::Rng;
use crate::texture::{
    FaceImage, Material, Painting, PosterContent, Rgb, TextureSet, linear_to_srgb, srgb,
    srgb_to_linear,
};
use flythrough_core::{Camera, Pose};
use image::RgbImage;
use nalgebra::Vector2;
use rayon::prelude::*;

/// Room size in metres (x, y, z).
pub const ROOM: [f64; 3] = [6.0, 5.0, 3.0];

/// The embedded face photos: `(name, PNG bytes, face region x0, y0, x1, y1 as fractions)`.
/// See `data/faces/LICENCE.md` for their origin (public domain) and how they were derived.
pub const FACE_IMAGES: &[(&str, &[u8], [f64; 4])] = &[
    (
        "astronaut_face.png",
        include_bytes!("../../../data/faces/astronaut_face.png"),
        [0.25, 0.21, 0.75, 0.66],
    ),
    (
        "hopper_face.png",
        include_bytes!("../../../data/faces/hopper_face.png"),
        [0.27, 0.26, 0.72, 0.68],
    ),
];

/// One object of the scene.
#[derive(Debug, Clone)]
pub struct Object {
    pub name: String,
    pub shape: Shape,
    pub material: Material,
}

/// A point light (no shadows); `color` is its intensity per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct PointLight {
    pub position: V3,
    pub color: Rgb,
}

/// A lighting state. Radiance of a surface point (Lambertian, no shadows):
/// `L = albedo * (ambient + Σ_l color_l * max(0, n·l̂) / (|l|² + 0.5))`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lighting {
    pub id: u32,
    pub name: String,
    pub ambient: Rgb,
    pub lights: Vec<PointLight>,
}

/// A framed poster on a wall.
#[derive(Debug, Clone)]
pub struct Poster {
    /// Index of its object in [`Scene::objects`].
    pub object: usize,
    pub name: String,
    /// Lower-left corner seen from the front, the right and up directions, size in metres.
    pub origin: V3,
    pub right: V3,
    pub up: V3,
    pub normal: V3,
    pub width: f64,
    pub height: f64,
    pub frame: f64,
    /// For face posters: the face image's name and the face region's corners in the world,
    /// ordered top-left, top-right, bottom-right, bottom-left as seen from the front.
    pub face: Option<(String, [V3; 4])>,
}

impl Poster {
    /// World point at content coordinates `(x, y)` in `[0, 1]^2` (y down), on the poster's plane.
    pub fn content_point(&self, x: f64, y: f64) -> V3 {
        let cw = self.width - 2.0 * self.frame;
        let ch = self.height - 2.0 * self.frame;
        self.origin + self.right * (self.frame + x * cw) + self.up * (self.frame + (1.0 - y) * ch)
    }
}

/// A surface hit.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub t: f64,
    pub point: V3,
    /// Unit normal facing the incoming ray.
    pub normal: V3,
    /// Linear albedo.
    pub albedo: Rgb,
    /// Index into [`Scene::objects`].
    pub object: usize,
    /// Surface coordinates in metres.
    pub u: f64,
    pub v: f64,
}

/// The analytic room.
#[derive(Debug, Clone)]
pub struct Scene {
    pub seed: u64,
    pub objects: Vec<Object>,
    /// Bounding-box groups of objects for faster tracing (built by `Scene::new`), without the shell.
    groups: Vec<Group>,
    /// The room shell's objects by exit side: `2 axis + (1 if the max side)`.
    shell: [usize; 6],
    pub posters: Vec<Poster>,
    pub paintings: Vec<Painting>,
    pub faces: Vec<FaceImage>,
    /// `lightings[0]` is the normal lighting, `lightings[1]` the changed one.
    pub lightings: Vec<Lighting>,
    /// Global radiance scale so that the reference exposure gives a mid-grey image.
    pub radiance_scale: f32,
}

fn load_face(name: &'static str, bytes: &[u8], region: [f64; 4]) -> FaceImage {
    // The bytes are compiled in and checked by a test, so decoding cannot fail at run time.
    let img = image::load_from_memory(bytes)
        .expect("embedded face image is a valid PNG")
        .to_rgb8();
    let pixels = img
        .pixels()
        .map(|p| p.0.map(|c| srgb_to_linear(c as f32 / 255.0)))
        .collect();
    FaceImage {
        name,
        width: img.width() as usize,
        height: img.height() as usize,
        pixels,
        face_region: region,
    }
}

impl Scene {
    /// Build the room for `seed`: the layout is fixed up to small jitters; every texture,
    /// colour and painting depends on the seed.
    pub fn new(seed: u64) -> Scene {
        let mut rng = Rng::new(seed);
        let mut s = Scene {
            seed,
            objects: Vec::new(),
            groups: Vec::new(),
            shell: [0; 6],
            posters: Vec::new(),
            paintings: Vec::new(),
            faces: FACE_IMAGES
                .iter()
                .map(|(n, b, r)| load_face(n, b, *r))
                .collect(),
            lightings: Vec::new(),
            radiance_scale: 1.0,
        };
        let [rx, ry, rz] = ROOM;
        let salt = |rng: &mut Rng| rng.next_u64();

        // Room shell, every quad facing inwards, u to the right as seen from inside, v up.
        let m = Material::Planks {
            salt: salt(&mut rng),
        };
        s.add(
            "floor",
            Shape::Quad {
                o: V3::zeros(),
                eu: V3::x(),
                ev: V3::y(),
                su: rx,
                sv: ry,
                n: V3::z(),
            },
            m,
        );
        let m = Material::CeilingTiles {
            salt: salt(&mut rng),
        };
        s.add(
            "ceiling",
            Shape::Quad {
                o: V3::new(0.0, 0.0, rz),
                eu: V3::x(),
                ev: V3::y(),
                su: rx,
                sv: ry,
                n: -V3::z(),
            },
            m,
        );
        let m = Material::Bricks {
            salt: salt(&mut rng),
        };
        s.add("wall_x0", Shape::wall_quad(V3::zeros(), V3::x(), ry, rz), m);
        let m = Material::LeafPaper {
            salt: salt(&mut rng),
        };
        s.add(
            "wall_x6",
            Shape::wall_quad(V3::new(rx, ry, 0.0), -V3::x(), ry, rz),
            m,
        );
        let m = Material::Plaster {
            salt: salt(&mut rng),
            base: srgb(214, 190, 160),
            wainscot: 0.95,
        };
        s.add(
            "wall_y0",
            Shape::wall_quad(V3::new(rx, 0.0, 0.0), V3::y(), rx, rz),
            m,
        );
        let m = Material::Tiles {
            salt: salt(&mut rng),
            top: 2.2,
        };
        s.add(
            "wall_y5",
            Shape::wall_quad(V3::new(0.0, ry, 0.0), -V3::y(), rx, rz),
            m,
        );

        // Rug under the central table (slightly above the floor).
        let (rw, rh) = (2.2, 1.6);
        let rug_o = V3::new(
            3.0 - rw / 2.0 + rng.sym(0.1),
            2.5 - rh / 2.0 + rng.sym(0.1),
            0.004,
        );
        let m = Material::Rug {
            salt: salt(&mut rng),
            w: rw,
            h: rh,
        };
        s.add(
            "rug",
            Shape::Quad {
                o: rug_o,
                eu: V3::x(),
                ev: V3::y(),
                su: rw,
                sv: rh,
                n: V3::z(),
            },
            m,
        );

        // Central table with legs, a vase and fruit.
        let (tx, ty) = (3.0 + rng.sym(0.08), 2.5 + rng.sym(0.08));
        let (tw, td, th) = (1.0, 0.64, 0.75);
        let tint = srgb(150, 100, 60);
        let m = Material::Wood {
            salt: salt(&mut rng),
            tint,
        };
        s.add(
            "table_top",
            Shape::Box {
                min: V3::new(tx - tw / 2.0, ty - td / 2.0, th - 0.05),
                max: V3::new(tx + tw / 2.0, ty + td / 2.0, th),
            },
            m.clone(),
        );
        for (i, (sx, sy)) in [(-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0)]
            .into_iter()
            .enumerate()
        {
            let (lx, ly) = (tx + sx * (tw / 2.0 - 0.06), ty + sy * (td / 2.0 - 0.06));
            s.add(
                &format!("table_leg{}", i + 1),
                Shape::Box {
                    min: V3::new(lx - 0.03, ly - 0.03, 0.0),
                    max: V3::new(lx + 0.03, ly + 0.03, th - 0.05),
                },
                m.clone(),
            );
        }
        let m = Material::Painted {
            salt: salt(&mut rng),
            color: srgb(40, 90, 160),
        };
        s.add(
            "vase",
            Shape::Cylinder {
                cx: tx - 0.25,
                cy: ty + 0.05,
                r: 0.07,
                z0: th,
                z1: th + 0.3,
            },
            m,
        );
        let m = Material::Foliage {
            salt: salt(&mut rng),
        };
        s.add(
            "flowers",
            Shape::Sphere {
                c: V3::new(tx - 0.25, ty + 0.05, th + 0.38),
                r: 0.12,
            },
            m,
        );
        for (i, (dx, col)) in [(0.15, srgb(220, 140, 30)), (0.3, srgb(170, 30, 25))]
            .into_iter()
            .enumerate()
        {
            let m = Material::Painted {
                salt: salt(&mut rng),
                color: col,
            };
            s.add(
                &format!("fruit{}", i + 1),
                Shape::Sphere {
                    c: V3::new(tx + dx, ty - 0.1 + 0.1 * i as f64, th + 0.045),
                    r: 0.045,
                },
                m,
            );
        }

        // Bookshelf against the tiled wall (y = 5), front face at its min y (face index 2).
        let bx = 0.7 + rng.sym(0.15);
        let m = Material::Books {
            salt: salt(&mut rng),
            front: 2,
        };
        s.add(
            "bookshelf",
            Shape::Box {
                min: V3::new(bx, ry - 0.34, 0.0),
                max: V3::new(bx + 1.2, ry, 1.85),
            },
            m,
        );

        // Sofa against the plaster wall (y = 0).
        let sx = 3.4 + rng.sym(0.2);
        let col = srgb(
            60 + (rng.f64() * 80.0) as u8,
            50 + (rng.f64() * 60.0) as u8,
            90 + (rng.f64() * 90.0) as u8,
        );
        let m = Material::Fabric {
            salt: salt(&mut rng),
            color: col,
        };
        s.add(
            "sofa_seat",
            Shape::Box {
                min: V3::new(sx - 0.9, 0.05, 0.0),
                max: V3::new(sx + 0.9, 0.85, 0.42),
            },
            m.clone(),
        );
        s.add(
            "sofa_back",
            Shape::Box {
                min: V3::new(sx - 0.9, 0.0, 0.0),
                max: V3::new(sx + 0.9, 0.25, 0.85),
            },
            m.clone(),
        );
        for (i, ax) in [sx - 1.05, sx + 0.9].into_iter().enumerate() {
            s.add(
                &format!("sofa_arm{}", i + 1),
                Shape::Box {
                    min: V3::new(ax, 0.0, 0.0),
                    max: V3::new(ax + 0.15, 0.85, 0.62),
                },
                m.clone(),
            );
        }
        let m = Material::Fabric {
            salt: salt(&mut rng),
            color: srgb(200, 160, 60),
        };
        s.add(
            "cushion",
            Shape::Box {
                min: V3::new(sx - 0.6, 0.25, 0.42),
                max: V3::new(sx - 0.2, 0.4, 0.75),
            },
            m,
        );

        // Bar counter against the wallpaper (x = 6) with bottles.
        let cy0 = 1.0 + rng.sym(0.15);
        let m = Material::Wood {
            salt: salt(&mut rng),
            tint: srgb(95, 60, 40),
        };
        s.add(
            "counter",
            Shape::Box {
                min: V3::new(rx - 0.55, cy0, 0.0),
                max: V3::new(rx, cy0 + 2.1, 1.05),
            },
            m,
        );
        for i in 0..6 {
            let col = srgb(
                (rng.f64() * 200.0 + 30.0) as u8,
                (rng.f64() * 200.0 + 30.0) as u8,
                (rng.f64() * 200.0 + 30.0) as u8,
            );
            let m = Material::Painted {
                salt: salt(&mut rng),
                color: col,
            };
            let r = rng.range(0.03, 0.05);
            let h = rng.range(0.2, 0.34);
            s.add(
                &format!("bottle{}", i + 1),
                Shape::Cylinder {
                    cx: rx - 0.3 + rng.sym(0.08),
                    cy: cy0 + 0.2 + 0.32 * i as f64 + rng.sym(0.05),
                    r,
                    z0: 1.05,
                    z1: 1.05 + h,
                },
                m,
            );
        }

        // Plant in the corner (x = 0, y = 0) and a stool near the far corner.
        let m = Material::Painted {
            salt: salt(&mut rng),
            color: srgb(170, 85, 50),
        };
        s.add(
            "plant_pot",
            Shape::Cylinder {
                cx: 0.45,
                cy: 0.45,
                r: 0.22,
                z0: 0.0,
                z1: 0.5,
            },
            m,
        );
        let m = Material::Foliage {
            salt: salt(&mut rng),
        };
        s.add(
            "plant",
            Shape::Sphere {
                c: V3::new(0.45, 0.45, 0.9),
                r: 0.38,
            },
            m,
        );
        let m = Material::Wood {
            salt: salt(&mut rng),
            tint: srgb(60, 45, 35),
        };
        s.add(
            "stool",
            Shape::Cylinder {
                cx: 5.2 + rng.sym(0.1),
                cy: 4.3 + rng.sym(0.1),
                r: 0.2,
                z0: 0.0,
                z1: 0.65,
            },
            m,
        );
        let m = Material::Fabric {
            salt: salt(&mut rng),
            color: srgb(60, 110, 70),
        };
        s.add(
            "armchair",
            Shape::Box {
                min: V3::new(0.0, 3.0 + rng.sym(0.1), 0.0),
                max: V3::new(0.75, 3.8, 0.5),
            },
            m,
        );

        // Paintings and face posters. (wall normal, lower-left corner on the wall plane's
        // horizontal axis, centre height, size, content).
        for _ in 0..6 {
            s.paintings.push(Painting::random(&mut rng));
        }
        struct P {
            name: &'static str,
            wall: usize,
            along: f64,
            zc: f64,
            w: f64,
            h: f64,
            content: PosterContent,
        }
        let j = |rng: &mut Rng| rng.sym(0.15);
        let specs = [
            P {
                name: "face_poster_astronaut",
                wall: 0,
                along: 2.3 + j(&mut rng),
                zc: 1.6,
                w: 0.85,
                h: 1.02,
                content: PosterContent::Face {
                    image: 0,
                    mirrored: false,
                },
            },
            P {
                name: "face_poster_hopper",
                wall: 3,
                along: 3.4 + j(&mut rng),
                zc: 1.6,
                w: 0.8,
                h: 0.96,
                content: PosterContent::Face {
                    image: 1,
                    mirrored: false,
                },
            },
            P {
                name: "face_poster_astronaut_mirrored",
                wall: 1,
                along: 2.6 + j(&mut rng),
                zc: 1.65,
                w: 0.85,
                h: 1.02,
                content: PosterContent::Face {
                    image: 0,
                    mirrored: true,
                },
            },
            P {
                name: "face_poster_hopper_mirrored",
                wall: 2,
                along: 4.1 + j(&mut rng),
                zc: 1.6,
                w: 0.8,
                h: 0.96,
                content: PosterContent::Face {
                    image: 1,
                    mirrored: true,
                },
            },
            P {
                name: "painting1",
                wall: 2,
                along: 2.0 + j(&mut rng),
                zc: 1.65,
                w: 1.1,
                h: 0.75,
                content: PosterContent::Painting(0),
            },
            P {
                name: "painting2",
                wall: 0,
                along: 1.25 + j(&mut rng),
                zc: 1.5,
                w: 0.55,
                h: 0.75,
                content: PosterContent::Painting(1),
            },
            P {
                name: "painting3",
                wall: 3,
                along: 2.2 + j(&mut rng),
                zc: 1.55,
                w: 0.5,
                h: 0.5,
                content: PosterContent::Painting(2),
            },
            P {
                name: "painting4",
                wall: 1,
                along: 0.5 + j(&mut rng),
                zc: 1.7,
                w: 0.6,
                h: 0.8,
                content: PosterContent::Painting(3),
            },
            P {
                name: "painting5",
                wall: 2,
                along: 0.8 + j(&mut rng),
                zc: 1.6,
                w: 0.7,
                h: 0.55,
                content: PosterContent::Painting(4),
            },
            P {
                name: "painting6",
                wall: 0,
                along: 3.8 + j(&mut rng),
                zc: 1.45,
                w: 0.8,
                h: 0.6,
                content: PosterContent::Painting(5),
            },
        ];
        for p in specs {
            // Wall frames as in the shell above: origin of the wall's lower-left corner and normal.
            let (wo, n) = match p.wall {
                0 => (V3::zeros(), V3::x()),
                1 => (V3::new(rx, ry, 0.0), -V3::x()),
                2 => (V3::new(rx, 0.0, 0.0), V3::y()),
                _ => (V3::new(0.0, ry, 0.0), -V3::y()),
            };
            let right = V3::z().cross(&n);
            let origin = wo + right * p.along + V3::z() * (p.zc - p.h / 2.0) + n * 0.012;
            let frame = 0.035;
            let shape = Shape::wall_quad(origin, n, p.w, p.h);
            let object = s.objects.len();
            let face = if let PosterContent::Face { image, mirrored } = &p.content {
                let img = &s.faces[*image];
                let [mut x0, y0, mut x1, y1] = img.face_region;
                if *mirrored {
                    (x0, x1) = (1.0 - x1, 1.0 - x0);
                }
                Some((
                    img.name.to_string(),
                    [(x0, y0), (x1, y0), (x1, y1), (x0, y1)],
                ))
            } else {
                None
            };
            let mut poster = Poster {
                object,
                name: p.name.to_string(),
                origin,
                right,
                up: V3::z(),
                normal: n,
                width: p.w,
                height: p.h,
                frame,
                face: None,
            };
            if let Some((name, c)) = face {
                poster.face = Some((name, c.map(|(x, y)| poster.content_point(x, y))));
            }
            s.add(
                p.name,
                shape,
                Material::Poster {
                    content: p.content,
                    w: p.w,
                    h: p.h,
                    frame,
                },
            );
            s.posters.push(poster);
        }

        // Lights: three warm ceiling lamps; the changed lighting is dimmer and cooler with one
        // lamp off (what per-photo appearance latents must absorb; not recorded in EXIF).
        let lamps = [
            V3::new(1.6 + rng.sym(0.2), 1.4 + rng.sym(0.2), 2.75),
            V3::new(4.4 + rng.sym(0.2), 1.4 + rng.sym(0.2), 2.75),
            V3::new(3.0 + rng.sym(0.2), 3.7 + rng.sym(0.2), 2.75),
        ];
        let warm = [1.0, 0.88, 0.7];
        s.lightings.push(Lighting {
            id: 0,
            name: "normal: three warm ceiling lamps".into(),
            ambient: [0.3, 0.29, 0.27],
            lights: lamps
                .iter()
                .map(|&p| PointLight {
                    position: p,
                    color: warm.map(|c| c * 1.6),
                })
                .collect(),
        });
        s.lightings.push(Lighting {
            id: 1,
            name: "changed: cool daylight tint, lamp 2 off".into(),
            ambient: [0.2, 0.26, 0.34],
            lights: lamps
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 1)
                .map(|(_, &p)| PointLight {
                    position: p,
                    color: [0.75, 0.95, 1.35],
                })
                .collect(),
        });
        s.radiance_scale = 0.55;
        s.build_groups();
        s
    }

    /// Group nearby objects (a table and what stands on it, the sofa, the counter and its bottles,
    /// the posters of one wall) under one bounding box; every other object is its own group.
    fn build_groups(&mut self) {
        let key = |o: &Object| -> Option<String> {
            let n = o.name.as_str();
            if let (Material::Poster { .. }, Shape::Quad { n, .. }) = (&o.material, &o.shape) {
                return Some(format!("posters {:.0} {:.0}", n.x, n.y));
            }
            let prefixes = [
                ("table", "table"),
                ("vase", "table"),
                ("flowers", "table"),
                ("fruit", "table"),
                ("sofa", "sofa"),
                ("cushion", "sofa"),
                ("counter", "counter"),
                ("bottle", "counter"),
                ("plant", "plant"),
            ];
            prefixes
                .iter()
                .find(|(p, _)| n.starts_with(p))
                .map(|(_, g)| g.to_string())
        };
        let side = |name: &str| match name {
            "wall_x0" => Some(0),
            "wall_x6" => Some(1),
            "wall_y0" => Some(2),
            "wall_y5" => Some(3),
            "floor" => Some(4),
            "ceiling" => Some(5),
            _ => None,
        };
        let mut keyed: Vec<(Option<String>, Vec<usize>)> = Vec::new();
        for (i, o) in self.objects.iter().enumerate() {
            if let Some(k) = side(&o.name) {
                self.shell[k] = i;
                continue;
            }
            let k = key(o);
            match keyed.iter_mut().find(|(g, _)| g.is_some() && *g == k) {
                Some((_, v)) => v.push(i),
                None => keyed.push((k, vec![i])),
            }
        }
        self.groups = keyed
            .into_iter()
            .map(|(_, objects)| {
                let (mut lo, mut hi) = self.objects[objects[0]].shape.bounds();
                for &i in &objects[1..] {
                    let (a, b) = self.objects[i].shape.bounds();
                    lo = lo.inf(&a);
                    hi = hi.sup(&b);
                }
                let pad = V3::repeat(1e-6);
                Group {
                    min: lo - pad,
                    max: hi + pad,
                    objects,
                }
            })
            .collect();
    }

    fn add(&mut self, name: &str, shape: Shape, material: Material) {
        self.objects.push(Object {
            name: name.to_string(),
            shape,
            material,
        });
    }

    /// The lighting with id `id` (0 normal, 1 changed); `None` for an unknown id.
    pub fn lighting(&self, id: u32) -> Option<&Lighting> {
        self.lightings.iter().find(|l| l.id == id)
    }

    /// Nearest object hit along a ray (geometry only), closer than `t_max`.
    pub fn nearest(&self, o: &V3, d: &V3, t_max: f64) -> Option<(usize, LocalHit)> {
        let mut best: Option<(usize, LocalHit)> = None;
        let mut limit = t_max;
        let inv = d.map(|c| 1.0 / c);
        // The shell: from inside the room only the wall the ray exits through can be hit.
        let inside = (0..3).all(|k| o[k] > 0.0 && o[k] < ROOM[k]);
        let exit_wall;
        let shell_candidates: &[usize] = if inside {
            let mut exit = (f64::INFINITY, 0usize);
            for k in 0..3 {
                if d[k] != 0.0 {
                    let (bound, side) = if d[k] > 0.0 { (ROOM[k], 1) } else { (0.0, 0) };
                    let t = (bound - o[k]) * inv[k];
                    if t < exit.0 {
                        exit = (t, 2 * k + side);
                    }
                }
            }
            exit_wall = [self.shell[exit.1]];
            &exit_wall
        } else {
            &self.shell
        };
        for &i in shell_candidates {
            if let Some(h) = self.objects[i].shape.intersect(o, d, limit) {
                limit = h.t;
                best = Some((i, h));
            }
        }
        for g in &self.groups {
            if g.objects.len() > 1 && !aabb_hit(o, &inv, &g.min, &g.max, limit) {
                continue;
            }
            for &i in &g.objects {
                if let Some(h) = self.objects[i].shape.intersect(o, d, limit) {
                    limit = h.t;
                    best = Some((i, h));
                }
            }
        }
        best
    }

    /// Trace a ray (any non-zero `dir`) and return the first surface hit with its full-detail albedo.
    pub fn trace(&self, origin: &V3, dir: &V3) -> Option<Hit> {
        self.trace_footprint(origin, &dir.normalize(), 0.0)
    }

    /// Trace a unit ray whose samples each cover `spread` radians, for band-limited textures.
    pub fn trace_footprint(&self, o: &V3, d: &V3, spread: f64) -> Option<Hit> {
        let (object, h) = self.nearest(o, d, f64::INFINITY)?;
        let normal = if h.normal.dot(d) > 0.0 {
            -h.normal
        } else {
            h.normal
        };
        let cos = normal.dot(d).abs().max(0.05);
        // Footprint: the sample's width at distance t, stretched at grazing angles (geometric mean
        // of the two axes of the footprint ellipse).
        let fp = h.t * spread / cos.sqrt();
        let tex = TextureSet {
            paintings: &self.paintings,
            faces: &self.faces,
        };
        let albedo = tex.albedo(&self.objects[object].material, &h, fp);
        Some(Hit {
            t: h.t,
            point: o + d * h.t,
            normal,
            albedo,
            object,
            u: h.u,
            v: h.v,
        })
    }

    /// Linear radiance leaving a hit towards the camera under `lighting`.
    pub fn shade(&self, hit: &Hit, lighting: &Lighting) -> Rgb {
        let mut e = lighting.ambient;
        for l in &lighting.lights {
            let dl = l.position - hit.point;
            let d2 = dl.norm_squared();
            let cos = hit.normal.dot(&dl) / d2.sqrt();
            if cos > 0.0 {
                let k = (cos / (d2 + 0.5)) as f32;
                for (ec, lc) in e.iter_mut().zip(l.color) {
                    *ec += lc * k;
                }
            }
        }
        [0, 1, 2].map(|c| hit.albedo[c] * e[c] * self.radiance_scale)
    }

    /// Linear radiance along a ray (black if it escapes, which cannot happen inside the room).
    pub fn radiance(&self, origin: &V3, dir: &V3, lighting: &Lighting) -> Rgb {
        self.trace(origin, dir)
            .map_or([0.0; 3], |h| self.shade(&h, lighting))
    }

    /// World ray (origin, unit direction) of pixel position `px` (COLMAP convention: the centre
    /// of the top-left pixel is (0.5, 0.5)).
    pub fn pixel_ray(cam: &Camera, pose: &Pose, px: Vector2<f64>) -> (V3, V3) {
        let d = pose.dir_to_world(&cam.ray(px)).normalize();
        (pose.center(), d)
    }

    /// Render linear radiance (before exposure), 2x2 supersampled, row-major `width x height`.
    pub fn render_linear(&self, cam: &Camera, pose: &Pose, lighting: &Lighting) -> Vec<Rgb> {
        let (w, h) = (cam.width as usize, cam.height as usize);
        let mut out = vec![[0.0f32; 3]; w * h];
        // Angular size of one sub-sample.
        let spread = 0.5 / cam.mean_focal();
        // Same rays as `pixel_ray`, with the rotation as a matrix and, without distortion, the
        // pinhole inverse written out (`Camera::ray` is then `((x - cx) / fx, (y - cy) / fy, 1)`).
        let r_c2w = pose.r().transpose();
        let o = pose.center();
        let pinhole = cam.distortion().iter().all(|&v| v == 0.0);
        let ((fx, fy), (cx, cy)) = (cam.focal(), cam.principal_point());
        let ray = |px: f64, py: f64| -> V3 {
            let d_cam = if pinhole {
                V3::new((px - cx) / fx, (py - cy) / fy, 1.0)
            } else {
                cam.ray(Vector2::new(px, py))
            };
            (r_c2w * d_cam).normalize()
        };
        out.par_chunks_mut(w.max(1))
            .enumerate()
            .for_each(|(y, row)| {
                for (x, px) in row.iter_mut().enumerate() {
                    let mut acc = [0.0f32; 3];
                    for (sx, sy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                        let d = ray(x as f64 + sx, y as f64 + sy);
                        if let Some(hit) = self.trace_footprint(&o, &d, spread) {
                            let r = self.shade(&hit, lighting);
                            for c in 0..3 {
                                acc[c] += r[c];
                            }
                        }
                    }
                    *px = acc.map(|c| c * 0.25);
                }
            });
        out
    }

    /// Render a photo: linear radiance x `exposure_scale`, then the sRGB OETF, clamped, 8 bits.
    pub fn render(
        &self,
        cam: &Camera,
        pose: &Pose,
        exposure_scale: f64,
        lighting: &Lighting,
    ) -> RgbImage {
        let lin = self.render_linear(cam, pose, lighting);
        tone_map(&lin, cam.width, cam.height, exposure_scale)
    }

    /// Is world point `p` (on a surface of object `object`) seen unoccluded from `center`?
    pub fn visible_from(&self, center: &V3, p: &V3, object: usize, tol: f64) -> bool {
        let to = p - center;
        let dist = to.norm();
        if dist < 1e-9 {
            return false;
        }
        let d = to / dist;
        match self.nearest(center, &d, dist + tol) {
            Some((i, h)) => i == object && (h.t - dist).abs() <= tol,
            None => false,
        }
    }
}

/// Objects tested together after their common bounding box.
#[derive(Debug, Clone)]
struct Group {
    min: V3,
    max: V3,
    objects: Vec<usize>,
}

/// Slab test (Kay & Kajiya 1986): does `o + t d`, `0 < t < t_max`, meet the box? `inv` is `1/d`.
#[inline]
fn aabb_hit(o: &V3, inv: &V3, min: &V3, max: &V3, t_max: f64) -> bool {
    let mut t0 = 0.0f64;
    let mut t1 = t_max;
    for k in 0..3 {
        let (a, b) = ((min[k] - o[k]) * inv[k], (max[k] - o[k]) * inv[k]);
        let (a, b) = if a < b { (a, b) } else { (b, a) };
        // NaN (0 * inf when the origin is on a slab plane) must not reject: max/min skip NaN.
        t0 = t0.max(a);
        t1 = t1.min(b);
    }
    t0 <= t1
}

/// Exposure and the sRGB OETF: `srgb(clamp(L * exposure_scale))`, rounded to 8 bits.
pub fn tone_map(lin: &[Rgb], width: u32, height: u32, exposure_scale: f64) -> RgbImage {
    let s = exposure_scale as f32;
    let mut img = RgbImage::new(width, height);
    for (p, l) in img.pixels_mut().zip(lin) {
        p.0 = l.map(|c| (linear_to_srgb(c * s) * 255.0 + 0.5) as u8);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk;

    #[test]
    fn embedded_faces_decode_with_sane_regions() {
        let s = Scene::new(1);
        assert_eq!(s.faces.len(), 2);
        for f in &s.faces {
            assert!(f.width >= 96 && f.height >= 96, "{}", f.name);
            let [x0, y0, x1, y1] = f.face_region;
            assert!(0.0 < x0 && x0 < x1 && x1 < 1.0 && 0.0 < y0 && y0 < y1 && y1 < 1.0);
        }
        assert_eq!(s.posters.iter().filter(|p| p.face.is_some()).count(), 4);
    }

    #[test]
    fn changed_lighting_is_cooler_and_dimmer_and_exposure_scales_linearly() {
        let s = Scene::new(2);
        let cam = walk::camera(80, 60);
        let pose = walk::plan(2, 8, 1.0, true)[3].pose;
        let mean = |l: &Lighting| {
            let px = s.render_linear(&cam, &pose, l);
            let mut m = [0.0f64; 3];
            for p in &px {
                for c in 0..3 {
                    m[c] += p[c] as f64 / px.len() as f64;
                }
            }
            m
        };
        let (a, b) = (mean(&s.lightings[0]), mean(&s.lightings[1]));
        // Normal lighting: warm (red > blue); changed: blue gains relative to red, less light.
        assert!(a[0] > a[2], "{a:?}");
        assert!(b[2] / b[0] > 1.3 * (a[2] / a[0]), "{a:?} {b:?}");
        assert!(b.iter().sum::<f64>() < a.iter().sum::<f64>());
        // Mid-grey-ish at the reference exposure: mean sRGB value between 60 and 190.
        let img = s.render(&cam, &pose, 1.0, &s.lightings[0]);
        let avg = img.as_raw().iter().map(|&v| v as f64).sum::<f64>() / img.as_raw().len() as f64;
        assert!((60.0..190.0).contains(&avg), "{avg}");
        // Exposure is a linear scale before the OETF.
        let lin = s.render_linear(&cam, &pose, &s.lightings[0]);
        let twice = tone_map(&lin, 80, 60, 2.0);
        let direct: Vec<Rgb> = lin.iter().map(|p| p.map(|c| c * 2.0)).collect();
        assert_eq!(twice, tone_map(&direct, 80, 60, 1.0));
    }
}
