// interlevel.wgsl: the proposal (interlevel) loss of one proposal level and its backward, per ray
// (CPU twins: stepfun.rs interlevel_loss, mip-NeRF 360 Eq. 13, by a merge walk; composite.rs
// weights_backward). The NeRF histogram (s, w) is held fixed. Writes d_raw (dL/dsigma * sigma of
// the proposal MLP's output) and the ray's loss.

@group(0) @binding(0) var<uniform> p: IlParams;
@group(0) @binding(1) var<storage, read> s_nerf: array<f32>;
@group(0) @binding(2) var<storage, read> w_nerf: array<f32>;
@group(0) @binding(3) var<storage, read> s_env: array<f32>;
@group(0) @binding(4) var<storage, read> w_env: array<f32>;
@group(0) @binding(5) var<storage, read> sigma: array<f32>;
@group(0) @binding(6) var<storage, read> t_env: array<f32>;
@group(0) @binding(7) var<storage, read_write> g_env: array<f32>;
@group(0) @binding(8) var<storage, read_write> d_raw: array<f32>;
@group(0) @binding(9) var<storage, read_write> ray_loss: array<f32>;

@compute @workgroup_size(64)
fn interlevel(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ray = flat_id(gid, nwg, 64u);
    if (ray >= p.n_rays) { return; }
    let n = p.n;
    let n1 = p.m;
    let tb = ray * (n + 1u);
    let eb = ray * (n1 + 1u);
    let q0 = ray * n1;
    for (var e = 0u; e < n1; e++) { g_env[q0 + e] = 0.0; }
    var c_lo = 0u;
    var c_hi = 0u;
    var cum_lo = 0.0;
    var cum_hi = 0.0;
    var lo_ptr = 0u;
    var hi_ptr = 0u;
    var loss = 0.0;
    for (var i = 0u; i < n; i++) {
        loop { if (!(c_lo <= n1 && s_env[eb + c_lo] <= s_nerf[tb + i])) { break; } c_lo++; }
        loop { if (!(c_hi <= n1 && s_env[eb + c_hi] <= s_nerf[tb + i + 1u])) { break; } c_hi++; }
        let lo = max(c_lo, 1u) - 1u;
        let hi = max(min(c_hi, n1), lo);
        loop { if (!(lo_ptr < lo)) { break; } cum_lo += w_env[q0 + lo_ptr]; lo_ptr++; }
        loop { if (!(hi_ptr < hi)) { break; } cum_hi += w_env[q0 + hi_ptr]; hi_ptr++; }
        let wi = w_nerf[ray * n + i];
        let r = max(wi - (cum_hi - cum_lo), 0.0);
        if (r > 0.0) {
            let den = wi + F32_EPS;
            loss += r * r / den;
            let g = -2.0 * r / den * p.scale;
            for (var e = lo; e < hi; e++) { g_env[q0 + e] += g; }
        }
    }
    // weights_backward on the proposal level.
    var acc = 0.0;
    for (var i = 0u; i + 1u < n1; i++) {
        acc += max(sigma[q0 + i], 0.0) * (t_env[eb + i + 1u] - t_env[eb + i]);
    }
    var suffix = 0.0;
    for (var kk = n1; kk > 0u; kk--) {
        let k = kk - 1u;
        let q = q0 + k;
        var gs = 0.0;
        if (k + 1u < n1) {
            let delta = t_env[eb + k + 1u] - t_env[eb + k];
            let t_next = exp(-acc);
            let gt = g_env[q] * t_next - suffix;
            if (sigma[q] > 0.0) { gs = gt * delta; }
            acc -= max(sigma[q], 0.0) * delta;
        }
        suffix += g_env[q] * w_env[q];
        d_raw[q] = gs * sigma[q];
    }
    ray_loss[p.loss_off + ray] = loss;
}
