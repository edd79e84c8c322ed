//! Ray generation (`raygen_camera` with lens distortion, `raygen_equirect`) against the CPU cameras.

use super::*;

#[test]
fn ray_generation_matches_cpu_with_distortion_and_equirect() {
    use flythrough_core::{Camera, CameraModel, Pose};
    use nalgebra::{UnitQuaternion, Vector3};
    let Some(g) = test_gpu() else { return };
    let mut r = rng(9);
    let model = crate::model::Model::new(
        crate::model::ModelConfig::from_train(
            &flythrough_core::config::TrainConfig {
                prop_samples: vec![8],
                nerf_samples: 8,
                hash_levels: 2,
                hash_table_log2: 10,
                hash_max_res: 32,
                mlp_width: 8,
                glo_dim: 2,
                ..Default::default()
            },
            1,
        ),
        0.1,
        0,
    );
    let mut rend = crate::gpu::GpuRenderer::new(g.clone(), &model, 256).unwrap();
    let norm = coord::SceneNorm {
        center: [0.3, -1.0, 2.0],
        scale: 0.4,
        near: 0.1,
    };
    let mut cam = Camera::new(1, CameraModel::Opencv, 37, 23, 30.0);
    cam.params[4..8].copy_from_slice(&[-0.12, 0.03, 0.002, -0.001]);
    let pose = Pose {
        rotation: UnitQuaternion::from_euler_angles(0.3, -0.2, 1.1),
        translation: Vector3::new(0.4, -0.7, 2.0),
    };
    let fc = crate::gpu::FrameCamera::photo(&norm, &cam, &pose);
    let rays = rend.frame_rays(&fc, 0.5).unwrap();
    for i in 0..(37 * 23) {
        let (o, d, rad) = crate::data::camera_ray(
            &norm,
            &cam,
            &pose,
            (i % 37) as f64 + 0.5,
            (i / 37) as f64 + 0.5,
        );
        let gr = rays[i];
        for a in 0..3 {
            assert!(
                (gr[a] - o[a]).abs() < 1e-5 * o[a].abs().max(1.0),
                "origin {i}"
            );
            assert!(
                (gr[3 + a] - d[a]).abs() < 1e-5,
                "pixel {i}: direction {:?} vs {d:?}",
                &gr[3..6]
            );
        }
        assert!((gr[6] - rad).abs() < 1e-5 * rad && gr[7] == 0.5);
    }
    // Equirectangular: the render stage's camera, in f64 here.
    let (w, h) = (48u32, 24u32);
    let up = Vector3::new(0.1, 0.2, 1.0).normalize();
    let f0 = Vector3::new(1.0, 0.3, 0.0);
    let f = (f0 - up * f0.dot(&up)).normalize();
    let right = f.cross(&up);
    let c = [r.random_range(-1.0..1.0), 0.5, 1.0];
    let fc = crate::gpu::FrameCamera::equirect(&norm, w, h, c, right.into(), f.into(), up.into());
    let rays = rend.frame_rays(&fc, -1.0).unwrap();
    let o = norm.point(c);
    for i in 0..(w * h) as usize {
        let (x, y) = ((i % w as usize) as f64 + 0.5, (i / w as usize) as f64 + 0.5);
        let lon = 2.0 * std::f64::consts::PI * (x / w as f64 - 0.5);
        let lat = std::f64::consts::PI * (0.5 - y / h as f64);
        let d = (right * (lat.cos() * lon.sin()) + f * (lat.cos() * lon.cos()) + up * lat.sin())
            .normalize();
        let rad = 0.5773502691896258 * std::f64::consts::PI / h as f64 * lat.cos().max(1e-3).sqrt();
        let gr = rays[i];
        for a in 0..3 {
            assert!((gr[a] as f64 - o[a]).abs() < 1e-5, "origin");
            assert!(
                (gr[3 + a] as f64 - d[a]).abs() < 1e-5,
                "pixel {i}: {:?} vs {d:?}",
                &gr[3..6]
            );
        }
        assert!(((gr[6] as f64 - rad) / rad).abs() < 1e-5 && gr[7] == -1.0);
    }
}
