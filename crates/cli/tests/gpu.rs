//! `flythrough run --device gpu` end to end on a tiny synthetic venue, through the real binary, on
//! whatever GPU adapter there is (Mesa lavapipe in CI; `CI=true` without one fails, elsewhere the
//! test skips with one line). SfM is imported from the venue's ground truth to keep it short.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn run_with_device_gpu_trains_and_renders_on_the_gpu() {
    let Some(gpu) = flythrough_testkit::test_gpu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let venue = dir.path().join("venue");
    let cfg = flythrough_testkit::synth_venue(&venue, 10, 64, 48).config_path;
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    // The config says cpu: `--device gpu` overrides both sections.
    text.push_str(
        "
[sfm]
import = \"ground_truth\"

[train]
device = \"cpu\"
steps = 20
max_seconds = 0
batch_rays = 128
prop_samples = [12, 12]
nerf_samples = 12
hash_levels = 6
hash_table_log2 = 12
hash_max_res = 128
mlp_width = 16
glo_dim = 4
checkpoint_every = 10
glo_eval_steps = 4
eval_max_photos = 1

[render]
device = \"cpu\"
width = 64
height = 32
preview_width = 32
preview_height = 24
max_frames = 3
stills = 1
unregistered_keyframes = \"skip\"
",
    );
    std::fs::write(&cfg, text).unwrap();
    let run_dir = dir.path().join("run");
    let out = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_flythrough")))
        .args([
            "run",
            cfg.to_str().unwrap(),
            "--out",
            run_dir.to_str().unwrap(),
            "--device",
            "gpu",
        ])
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "flythrough run failed:\n{log}");
    let adapter = &gpu.adapter().name;
    for stage in ["train", "render"] {
        let rec: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(run_dir.join(stage).join("stage.json")).unwrap(),
        )
        .unwrap();
        let s = &rec["summary"];
        assert_eq!(s["device"], "gpu", "{stage}: {s}");
        assert_eq!(
            s["adapter"]["name"].as_str(),
            Some(adapter.as_str()),
            "{stage}: {s}"
        );
        assert!(
            s["adapter"]["backend"].is_string() && s["adapter"]["driver"].is_string(),
            "{s}"
        );
        // The atomic path in use and what the adapter offers (issue 19), as the device has them.
        let want = serde_json::to_value(gpu.atomic_mode()).unwrap();
        assert_eq!(s["adapter"]["atomics"], want, "{stage}: {s}");
        assert_eq!(s["adapter"]["subgroups"], gpu.caps().subgroups, "{s}");
        assert_eq!(s["adapter"]["shader_f16"], gpu.caps().shader_f16, "{s}");
        assert_eq!(
            s["adapter"]["subgroup_max_size"],
            gpu.limits().subgroup_max_size,
            "{s}"
        );
        assert_eq!(s["adapter"]["runtime_checks"], gpu.runtime_checks(), "{s}");
        // How training stored its activations and scattered the grid gradients (f16 and the
        // plain scatter on lavapipe).
        let act = serde_json::to_value(flythrough_nerf::gpu::training_act(&gpu)).unwrap();
        assert_eq!(s["adapter"]["mlp_activations"], act, "{s}");
        assert_eq!(
            s["adapter"]["hash_scatter"],
            flythrough_nerf::gpu::hash_scatter(&gpu),
            "{s}"
        );
        assert_eq!(
            s["adapter"]["mlp_weights"],
            flythrough_nerf::gpu::mlp_weights(),
            "{s}"
        );
        assert_eq!(
            s["adapter"]["mlp_register_tile"],
            format!("{}x4", flythrough_nerf::gpu::mlp_rows()),
            "{s}"
        );
    }
    assert!(
        log.contains("train: on gpu: ") && log.contains("render: NeRF on gpu: "),
        "{log}"
    );
    let pano = image::open(run_dir.join("render/stills/pano.png")).unwrap();
    assert_eq!((pano.width(), pano.height()), (64, 32));
    assert!(run_dir.join("render/flythrough_360.mp4").is_file());
    assert!(run_dir.join("train/eval.json").is_file());
}
