// weights.wgsl: densities and compositing weights of one level (CPU twins: model.rs trunc_exp,
// render.rs weights). One invocation per ray: sigma = trunc_exp(raw column 0),
// w_i = T_i (1 - exp(-sigma_i delta_i)), the last bin opaque (w = T).

@group(0) @binding(0) var<uniform> p: WeightsParams;
@group(0) @binding(1) var<storage, read> raw: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> sigma: array<f32>;
@group(0) @binding(4) var<storage, read_write> w: array<f32>;

@compute @workgroup_size(64)
fn weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ray = flat_id(gid, nwg, 64u);
    if (ray >= p.n_rays) { return; }
    let n = p.n;
    let tb = ray * (n + 1u);
    var acc = 0.0;
    for (var i = 0u; i < n; i++) {
        let q = ray * n + i;
        let sg = trunc_exp(raw[q * p.raw_stride]);
        sigma[q] = sg;
        let trans = exp(-acc);
        if (i + 1u == n) {
            w[q] = trans;
        } else {
            let tau = max(sg, 0.0) * (t[tb + i + 1u] - t[tb + i]);
            w[q] = trans * (1.0 - exp(-tau));
            acc += tau;
        }
    }
}
