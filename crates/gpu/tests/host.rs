//! The host module on whatever adapter there is (lavapipe in CI): kernels, bindings, uploads,
//! read-backs, the 2-D grid for large dispatches, poisoned buffers and the profiler.

use flythrough_gpu::{Bind, BindingKind, Profiler, validate_wgsl};
use flythrough_testkit::test_gpu;
use std::sync::{Mutex, MutexGuard};

/// Held by every test of this binary that records work, so the device's running counters move
/// only by what the holder records (the tests of one binary run on parallel threads).
static DEVICE: Mutex<()> = Mutex::new(());

fn device_lock() -> MutexGuard<'static, ()> {
    DEVICE.lock().unwrap_or_else(|p| p.into_inner())
}

const SAXPY: &str = r#"
struct P { n: u32, a: f32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn saxpy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n) { return; }
    y[i] = p.a * x[i] + y[i];
}
"#;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct P {
    n: u32,
    a: f32,
    _p: [u32; 2],
}

#[test]
fn saxpy_bindings_readback_and_profile() {
    let Some(gpu) = test_gpu() else { return };
    let _lock = device_lock();
    assert_eq!(
        validate_wgsl(SAXPY, false).unwrap(),
        vec!["saxpy".to_string()]
    );
    let k = gpu.kernel("saxpy", SAXPY, "saxpy").unwrap();
    assert_eq!(
        k.bindings,
        vec![
            BindingKind::Uniform,
            BindingKind::StorageRead,
            BindingKind::StorageReadWrite
        ]
    );
    assert_eq!(k.workgroup_size, [64, 1, 1]);
    // Same source and entry: the cached pipeline.
    assert!(std::sync::Arc::ptr_eq(
        &k,
        &gpu.kernel("saxpy", SAXPY, "saxpy").unwrap()
    ));
    let n = 5000usize;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let y0: Vec<f32> = (0..n).map(|i| 1.0 - i as f32).collect();
    let xb = gpu.upload("x", &x).unwrap();
    let yb = gpu.upload("y", &y0).unwrap();
    let pb = gpu
        .uniform(
            "p",
            &P {
                n: n as u32,
                a: 3.0,
                _p: [0; 2],
            },
        )
        .unwrap();
    let bg = gpu.bind(&k, &[Bind::from(&pb), (&xb).into(), (&yb).into()]);
    let mut prof = Profiler::new(&gpu, 8);
    let mut rec = gpu.recorder("saxpy");
    if let Some(p) = prof.as_mut() {
        rec.profile(p);
    }
    rec.dispatch_threads(&k, &bg, n as u64);
    rec.submit();
    let y: Vec<f32> = gpu.read(&yb).unwrap();
    for i in 0..n {
        assert_eq!(y[i], 3.0 * x[i] + y0[i], "element {i}");
    }
    if let Some(p) = prof.as_mut() {
        p.collect(&gpu);
        let t = p.totals();
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].0.as_str(), t[0].2), ("saxpy", 1));
        assert!(t[0].1 >= 0.0);
    }
    // A range binding: only the second half is updated.
    let half = (n / 2) as u64 * 4;
    let align = gpu.limits().storage_offset_align as u64;
    let off = half.next_multiple_of(align);
    let m = (n as u64 * 4 - off) / 4;
    let pb2 = gpu
        .uniform(
            "p2",
            &P {
                n: m as u32,
                a: 1.0,
                _p: [0; 2],
            },
        )
        .unwrap();
    let bg2 = gpu.bind(
        &k,
        &[(&pb2).into(), xb.range(off, m * 4), yb.range(off, m * 4)],
    );
    let c0 = gpu.counters();
    gpu.write(
        &pb2,
        0,
        std::slice::from_ref(&P {
            n: m as u32,
            a: 1.0,
            _p: [0; 2],
        }),
    );
    let mut rec = gpu.recorder("saxpy range");
    rec.dispatch_threads(&k, &bg2, m);
    let rb = rec.read_back(&yb, 0, yb.bytes());
    rec.submit();
    // The counters saw at least this recording (other tests share the device).
    let d = gpu.counters().since(&c0);
    assert!(
        d.dispatches >= 1 && d.passes >= 1 && d.submits >= 1,
        "{d:?}"
    );
    assert!(
        d.upload_bytes >= 16 && d.readback_bytes >= yb.bytes(),
        "{d:?}"
    );
    let y2: Vec<f32> = rb.wait_as(&gpu).unwrap();
    let first = (off / 4) as usize;
    assert_eq!(y2[first - 1], y[first - 1]);
    assert_eq!(y2[first], y[first] + x[first]);
}

#[test]
fn grid_covers_more_than_one_dimension_and_poison_is_nan() {
    let Some(gpu) = test_gpu() else { return };
    let _lock = device_lock();
    let max = gpu.limits().max_workgroups_per_dim as u64;
    let g = gpu.grid(64 * max * 3 + 5, 64);
    assert!(g[0] as u64 * g[1] as u64 * 64 >= 64 * max * 3 + 5 && g[0] as u64 <= max);
    assert_eq!(gpu.grid(100, 64), [2, 1, 1]);
    let b = gpu.storage_len("poisoned", 10).unwrap();
    let v: Vec<f32> = gpu.read(&b).unwrap();
    assert!(v.iter().all(|x| x.is_nan()), "{v:?}");
    let mut rec = gpu.recorder("clear");
    rec.clear(&b);
    rec.submit();
    let v: Vec<f32> = gpu.read(&b).unwrap();
    assert!(v.iter().all(|&x| x == 0.0));
}

#[test]
fn invalid_wgsl_is_reported_with_the_line() {
    let e = validate_wgsl("fn f() -> f32 { return 1u; }", false).unwrap_err();
    assert!(e.contains("return"), "{e}");
    // f32 atomics need the capability.
    let src = "@group(0) @binding(0) var<storage, read_write> a: array<atomic<f32>>;\n@compute @workgroup_size(1) fn k() { atomicAdd(&a[0], 1.0); }";
    assert!(validate_wgsl(src, true).is_ok());
    assert!(validate_wgsl(src, false).is_err());
}

/// One step of a dependent chain: `dst[i] = 3 src[i] + src[(7 i + 1) mod n] + k` (u32, wrapping:
/// exact), so every element of a step depends on elements other invocations wrote in the step
/// before.
const CHAIN: &str = r#"
struct Q { n: u32, k: u32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<uniform> q: Q;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@compute @workgroup_size(64)
fn chain(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= q.n) { return; }
    dst[i] = src[i] * 3u + src[(i * 7u + 1u) % q.n] + q.k;
}
"#;

fn chain_cpu(v: &[u32], k: u32) -> Vec<u32> {
    let n = v.len();
    (0..n)
        .map(|i| {
            v[i].wrapping_mul(3)
                .wrapping_add(v[(i * 7 + 1) % n])
                .wrapping_add(k)
        })
        .collect()
}

#[test]
fn consecutive_dispatches_share_one_pass_and_stay_ordered() {
    let Some(gpu) = test_gpu() else { return };
    let _lock = device_lock();
    // SAFETY: `i < q.n` before any access, `(7 i + 1) mod n < n` (no overflow for this `n`), both
    // buffers hold `n` elements, and the kernel has no loop.
    let k = unsafe { gpu.kernel_trusted("chain", CHAIN, "chain") }.unwrap();
    assert_eq!(
        gpu.runtime_checks(),
        flythrough_gpu::checks_requested(std::env::var(flythrough_gpu::CHECKS_ENV).ok().as_deref())
    );
    let n = 100_003usize;
    let v0: Vec<u32> = (0..n as u32)
        .map(|i| i.wrapping_mul(2_654_435_761))
        .collect();
    let a = gpu.upload("chain a", &v0).unwrap();
    let b = gpu.upload("chain b", &vec![0u32; n]).unwrap();
    let q = gpu.uniform("chain q", &[n as u32, 17, 0, 0]).unwrap();
    let ab = gpu.bind(&k, &[(&q).into(), (&a).into(), (&b).into()]);
    let ba = gpu.bind(&k, &[(&q).into(), (&b).into(), (&a).into()]);
    let steps = 9;
    let mut want = v0.clone();
    for _ in 0..steps {
        want = chain_cpu(&want, 17);
    }
    // Unprofiled: `steps` dispatches ping-ponging between two buffers, one pass.
    let c0 = gpu.counters();
    let mut rec = gpu.recorder("chain");
    for s in 0..steps {
        rec.dispatch_threads(&k, if s % 2 == 0 { &ab } else { &ba }, n as u64);
    }
    let rb = rec.read_back(&b, 0, b.bytes());
    rec.submit();
    let d = gpu.counters().since(&c0);
    assert_eq!((d.dispatches, d.passes, d.submits), (steps, 1, 1), "{d:?}");
    let got: Vec<u32> = rb.wait_as(&gpu).unwrap();
    assert!(got == want, "chain of {steps} dispatches in one pass");

    // A copy between dispatches ends the pass: 2 + 2 dispatches, 2 passes; the copy sees the
    // first pass's result and the second pass sees the copy.
    let a = gpu.upload("chain a", &v0).unwrap();
    let b = gpu.upload("chain b", &vec![0u32; n]).unwrap();
    let ab = gpu.bind(&k, &[(&q).into(), (&a).into(), (&b).into()]);
    let ba = gpu.bind(&k, &[(&q).into(), (&b).into(), (&a).into()]);
    let c0 = gpu.counters();
    let mut rec = gpu.recorder("chain copy");
    rec.dispatch_threads(&k, &ab, n as u64);
    rec.dispatch_threads(&k, &ba, n as u64);
    rec.copy(&a, 0, &b, 0, a.bytes());
    rec.dispatch_threads(&k, &ba, n as u64);
    rec.dispatch_threads(&k, &ab, n as u64);
    let rb = rec.read_back(&b, 0, b.bytes());
    rec.submit();
    let d = gpu.counters().since(&c0);
    assert_eq!((d.dispatches, d.passes, d.submits), (4, 2, 1), "{d:?}");
    let mut want = v0.clone();
    for _ in 0..4 {
        want = chain_cpu(&want, 17);
    }
    let got: Vec<u32> = rb.wait_as(&gpu).unwrap();
    assert!(got == want, "chain across a copy");

    // Profiled: one pass per dispatch, each timed.
    if let Some(mut prof) = Profiler::new(&gpu, 16) {
        let c0 = gpu.counters();
        let mut rec = gpu.recorder("chain profiled");
        rec.profile(&mut prof);
        for s in 0..3 {
            rec.dispatch_threads(&k, if s % 2 == 0 { &ab } else { &ba }, n as u64);
        }
        rec.submit();
        let d = gpu.counters().since(&c0);
        assert_eq!((d.dispatches, d.passes), (3, 3), "{d:?}");
        prof.collect(&gpu);
        assert_eq!(prof.totals()[0].2, 3);
    }
}
