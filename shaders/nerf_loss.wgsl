// nerf_loss.wgsl: data and distortion losses of the NeRF level and their backward, per ray (CPU
// twin: model.rs Model::backward, its per-ray closure: composite.rs composite, charbonnier,
// weights_backward; stepfun.rs distortion_loss). Writes the gradient of the colour logits
// (`g_logits`, [S * 3]), column 0 of the density MLP's output gradient (`d_raw`, dL/dsigma * sigma,
// the trunc_exp derivative) and the ray's [data, distortion, squared error] to `ray_loss`.

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> s: array<f32>;
@group(0) @binding(3) var<storage, read> t: array<f32>;
@group(0) @binding(4) var<storage, read> sigma: array<f32>;
@group(0) @binding(5) var<storage, read> logits: array<f32>;
@group(0) @binding(6) var<storage, read> tgt: array<f32>;
@group(0) @binding(7) var<storage, read_write> gw: array<f32>;
@group(0) @binding(8) var<storage, read_write> g_logits: array<f32>;
@group(0) @binding(9) var<storage, read_write> d_raw: array<f32>;
@group(0) @binding(10) var<storage, read_write> ray_loss: array<f32>;

@compute @workgroup_size(64)
fn nerf_loss(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ray = flat_id(gid, nwg, 64u);
    if (ray >= p.n_rays) { return; }
    let n = p.n;
    let q0 = ray * n;
    let tb = ray * (n + 1u);
    // Composite colour.
    var c = vec3<f32>(0.0);
    for (var i = 0u; i < n; i++) {
        let q = q0 + i;
        c += w[q] * vec3<f32>(color_act(logits[3u * q]).x, color_act(logits[3u * q + 1u]).x,
                              color_act(logits[3u * q + 2u]).x);
    }
    // Charbonnier data loss sqrt(r^2 + 1e-6) and its derivative, per channel.
    var data = 0.0;
    var se = 0.0;
    var gc = vec3<f32>(0.0);
    for (var k = 0u; k < 3u; k++) {
        let r = c[k] - tgt[3u * ray + k];
        let v = sqrt(r * r + 1e-6);
        data += v;
        se += r * r;
        gc[k] = (r / v) * p.inv_r / 3.0;
    }
    // Distortion loss on (s, w) (mip-NeRF 360 Eq. 15, O(n) form) and its gradient into gw.
    var total_w = 0.0;
    var total_wu = 0.0;
    for (var i = 0u; i < n; i++) {
        let u = 0.5 * (s[tb + i] + s[tb + i + 1u]);
        total_w += w[q0 + i];
        total_wu += w[q0 + i] * u;
    }
    var cw = 0.0;
    var cwu = 0.0;
    var inter = 0.0;
    var intra = 0.0;
    for (var i = 0u; i < n; i++) {
        let wi = w[q0 + i];
        let u = 0.5 * (s[tb + i] + s[tb + i + 1u]);
        let dt = s[tb + i + 1u] - s[tb + i];
        let w_gt = total_w - cw - wi;
        let wu_gt = total_wu - cwu - wi * u;
        let a = u * cw - cwu + wu_gt - u * w_gt;
        inter += wi * a;
        intra += wi * wi * dt;
        gw[q0 + i] = p.dist_scale * (2.0 * a + 2.0 / 3.0 * wi * dt);
        cw += wi;
        cwu += wi * u;
    }
    let dist = inter + intra / 3.0;
    // Colour path: dL/dw_i += gc . rgb_i; dL/dlogit = gc * w * rgb'.
    for (var i = 0u; i < n; i++) {
        let q = q0 + i;
        let a0 = color_act(logits[3u * q]);
        let a1 = color_act(logits[3u * q + 1u]);
        let a2 = color_act(logits[3u * q + 2u]);
        gw[q] += gc.x * a0.x + gc.y * a1.x + gc.z * a2.x;
        g_logits[3u * q] = gc.x * w[q] * a0.y;
        g_logits[3u * q + 1u] = gc.y * w[q] * a1.y;
        g_logits[3u * q + 2u] = gc.z * w[q] * a2.y;
    }
    // composite.rs weights_backward: dL/dsigma, times sigma for the trunc_exp logit.
    var acc = 0.0;
    for (var i = 0u; i + 1u < n; i++) {
        acc += max(sigma[q0 + i], 0.0) * (t[tb + i + 1u] - t[tb + i]);
    }
    var suffix = 0.0;
    for (var kk = n; kk > 0u; kk--) {
        let k = kk - 1u;
        let q = q0 + k;
        var gs = 0.0;
        if (k + 1u < n) {
            let delta = t[tb + k + 1u] - t[tb + k];
            let t_next = exp(-acc);
            let gt = gw[q] * t_next - suffix;
            if (sigma[q] > 0.0) { gs = gt * delta; }
            acc -= max(sigma[q], 0.0) * delta;
        }
        suffix += gw[q] * w[q];
        d_raw[q * p.raw_stride] = gs * sigma[q];
    }
    ray_loss[4u * ray] = data;
    ray_loss[4u * ray + 1u] = dist;
    ray_loss[4u * ray + 2u] = se;
    ray_loss[4u * ray + 3u] = 0.0;
}
