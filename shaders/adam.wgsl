// adam.wgsl: fused Adam update and gradient zeroing (CPU twin: kernels/adam.rs
// Adam::update_and_zero; Kingma & Ba 2015 Algorithm 1, bias corrections from the host in f64):
// g' = g * clip, m = b1 m + (1 - b1) g', v = b2 v + (1 - b2) g'^2,
// p -= step_size m / (sqrt(v) inv_sqrt_bc2 + eps), g = 0.

@group(0) @binding(0) var<uniform> pl: AdamLen;
@group(0) @binding(1) var<uniform> ps: AdamStep;
@group(0) @binding(2) var<storage, read> norm: array<f32>;
@group(0) @binding(3) var<storage, read_write> param: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> m1: array<f32>;
@group(0) @binding(6) var<storage, read_write> m2: array<f32>;

@compute @workgroup_size(256)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 256u);
    if (i >= pl.len) { return; }
    let gi = grad[i] * norm[1];
    let mi = ps.b1 * m1[i] + (1.0 - ps.b1) * gi;
    let vi = ps.b2 * m2[i] + (1.0 - ps.b2) * gi * gi;
    m1[i] = mi;
    m2[i] = vi;
    param[i] -= ps.step_size * mi / (sqrt(vi) * ps.inv_sqrt_bc2 + ps.eps);
    grad[i] = 0.0;
}
