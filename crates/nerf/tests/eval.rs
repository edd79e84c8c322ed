//! Bounded evaluation: the automatic rule scores at most `eval_max_photos` held-out photos, spread
//! over them, at a size whose pixels stay within a quarter of the rays trained; the full-size option
//! scores every held-out photo at the training size. Step counts, not seconds.
#![allow(clippy::field_reassign_with_default, clippy::explicit_counter_loop)]
mod common;

use flythrough_nerf::data::{Dataset, LoadOptions};
use flythrough_nerf::train::{self, EVAL_PIXELS_PER_TRAINED_RAY, EvalOptions};

#[test]
fn evaluation_is_bounded_by_default_and_full_size_on_request() {
    let dir = tempfile::tempdir().unwrap();
    // 17 photos, every 8th held out: 3 held out (room_000, room_008, room_016), 96x72.
    let scene = common::analytic_room(dir.path(), 96, 72, 17, 0.0);
    let mut cfg = common::tiny_config();
    cfg.steps = 60;
    cfg.batch_rays = 512;
    cfg.eval_max_photos = 2;
    let ds = Dataset::load(
        &scene.images,
        Some(&scene.manifest),
        &scene.sfm_dir,
        &LoadOptions::from_config(&cfg, &[]),
    )
    .unwrap();
    assert_eq!(ds.train_size(), (96, 72));
    assert_eq!(ds.holdout.len(), 3);
    let trained = train::train(&cfg, &ds, &dir.path().join("work")).unwrap();
    assert_eq!(trained.meta.step, 60);
    let trained_rays = 60 * 512;
    let auto = train::evaluate(
        &trained.model,
        &trained.meta,
        &ds,
        &EvalOptions {
            downscale: cfg.eval_downscale,
            max_photos: cfg.eval_max_photos,
            glo_steps: cfg.glo_eval_steps,
            trained_rays,
        },
        None,
    );
    let budget = EVAL_PIXELS_PER_TRAINED_RAY * trained_rays as f64;
    println!("auto: {:?}", auto.selection);
    assert_eq!(auto.selection.rule, "auto");
    assert_eq!(auto.selection.held_out, 3);
    assert_eq!(auto.selection.evaluated, 2);
    let names: Vec<&str> = auto.photos.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["room_000.png", "room_016.png"]);
    // 2 x 96 x 72 = 13824 pixels would exceed the budget of 7680: scored at 71x53.
    assert!(
        auto.selection.pixels as f64 <= budget,
        "{:?}",
        auto.selection
    );
    assert!(auto.selection.pixels as f64 >= 0.95 * budget);
    assert_eq!(auto.selection.eval_size, [71, 53]);
    assert!(auto.mean_psnr.is_finite());
    // The full-size option: every held-out photo at the training resolution.
    let full = train::evaluate(
        &trained.model,
        &trained.meta,
        &ds,
        &EvalOptions {
            downscale: 1,
            max_photos: 0,
            glo_steps: cfg.glo_eval_steps,
            trained_rays,
        },
        None,
    );
    assert_eq!(full.selection.evaluated, 3);
    assert_eq!(full.selection.eval_size, [96, 72]);
    assert_eq!(full.selection.pixels, 3 * 96 * 72);
    // What was evaluated is in eval.json.
    let v = serde_json::to_value(&auto).unwrap();
    assert_eq!(v["selection"]["evaluated"], 2);
    assert_eq!(v["selection"]["eval_size"][0], 71);
}
