// nerf_loss.wgsl: data and distortion losses of the NeRF level and their backward, per ray (CPU
// twin: model.rs Model::backward, its per-ray closure: composite.rs composite, charbonnier,
// weights_backward; stepfun.rs distortion_loss). Writes the gradient of the colour logits
// (`g_logits`, [S * 3]), column 0 of the density MLP's output gradient (`d_raw`, dL/dsigma * sigma,
// the trunc_exp derivative) and the ray's [data, distortion, squared error] to `ray_loss`.
// One workgroup of 64 per ray (flat workgroup index on a 2-D grid): invocation l owns the
// contiguous chunk [l c, (l + 1) c) of the ray's n samples, c = ceil(n / 64), and the serial walks
// of the CPU twin become chunk walks joined in workgroup memory, in a fixed order (deterministic, no
// atomics): 1. chunk sums of the colour (tree reduction -> the Charbonnier gradient, read by every
// invocation) and of w, w u and the optical depth tau (Hillis-Steele inclusive scan -> each chunk's
// prefix and the ray's totals); 2. the chunk's distortion terms and dL/dw (`gw`, colour path added),
// g_logits, and the chunk sum of gw * w; 3. a Hillis-Steele suffix scan of those sums (the
// weights_backward suffix after each chunk) and a tree reduction of the distortion terms; 4. the
// chunk walked backwards from its suffix and its optical depth: d_raw. Invocation 0 writes the
// ray's losses. The sums differ from the CPU twin's serial order only by the chunk split.

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

const NL_WG: u32 = 64u;
var<workgroup> nl_c: array<vec4<f32>, 64>;   // colour (tree reduction)
var<workgroup> nl_scan: array<vec4<f32>, 64>; // w, w u, tau (inclusive prefix scan)
var<workgroup> nl_suf: array<f32, 64>;        // gw * w (inclusive suffix scan)
var<workgroup> nl_dist: array<vec2<f32>, 64>; // inter, intra (tree reduction)

@compute @workgroup_size(64)
fn nerf_loss(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    // Tests fill workgroup memory with NaN first (POISON_WG): a read of a slot nothing wrote
    // shows in the outputs, as it would on a device whose workgroup memory holds garbage.
    if (POISON_WG) {
        for (var q = lid; q < 64u; q += 64u) {
            nl_c[q] = vec4<f32>(wg_nan());
            nl_scan[q] = vec4<f32>(wg_nan());
            nl_suf[q] = wg_nan();
            nl_dist[q] = vec2<f32>(wg_nan());
        }
        workgroupBarrier();
    }
    let ray = flat_group(wid, nwg);
    // Uniform across the workgroup (workgroup id and uniform count): the barriers below stay in
    // uniform control flow.
    if (ray >= p.n_rays) { return; }
    let n = p.n;
    let q0 = ray * n;
    let tb = ray * (n + 1u);
    let ch = (n + NL_WG - 1u) / NL_WG;
    let i0 = min(lid * ch, n);
    let i1 = min(i0 + ch, n);
    // 1. Chunk sums: colour, w, w u, tau (0 for the opaque last bin).
    var c = vec3<f32>(0.0);
    var sw = 0.0;
    var swu = 0.0;
    var stau = 0.0;
    for (var i = i0; i < i1; i++) {
        let q = q0 + i;
        c += w[q] * vec3<f32>(color_act(logits[3u * q]).x, color_act(logits[3u * q + 1u]).x,
                              color_act(logits[3u * q + 2u]).x);
        let u = 0.5 * (s[tb + i] + s[tb + i + 1u]);
        sw += w[q];
        swu += w[q] * u;
        if (i + 1u < n) { stau += max(sigma[q], 0.0) * (t[tb + i + 1u] - t[tb + i]); }
    }
    nl_c[lid] = vec4<f32>(c, 0.0);
    nl_scan[lid] = vec4<f32>(sw, swu, stau, 0.0);
    workgroupBarrier();
    for (var h = NL_WG / 2u; h > 0u; h >>= 1u) {
        if (lid < h) { nl_c[lid] = nl_c[lid] + nl_c[lid + h]; }
        workgroupBarrier();
    }
    for (var off = 1u; off < NL_WG; off <<= 1u) {
        var v = nl_scan[lid];
        if (lid >= off) { v = nl_scan[lid - off] + v; }
        workgroupBarrier();
        nl_scan[lid] = v;
        workgroupBarrier();
    }
    let col = nl_c[0].xyz;
    let tot = nl_scan[NL_WG - 1u];
    var before = vec4<f32>(0.0);
    if (lid > 0u) { before = nl_scan[lid - 1u]; }
    // Charbonnier data loss sqrt(r^2 + 1e-6) and its derivative, per channel.
    var data = 0.0;
    var se = 0.0;
    var gc = vec3<f32>(0.0);
    for (var k = 0u; k < 3u; k++) {
        let r = col[k] - tgt[3u * ray + k];
        let v = sqrt(r * r + 1e-6);
        data += v;
        se += r * r;
        gc[k] = (r / v) * p.inv_r / 3.0;
    }
    // 2. Distortion loss on (s, w) (mip-NeRF 360 Eq. 15, O(n) form) and its gradient into gw, plus
    //    the colour path: dL/dw_i += gc . rgb_i; dL/dlogit = gc * w * rgb'.
    let total_w = tot.x;
    let total_wu = tot.y;
    var cw = before.x;
    var cwu = before.y;
    var inter = 0.0;
    var intra = 0.0;
    var sgw = 0.0;
    for (var i = i0; i < i1; i++) {
        let q = q0 + i;
        let wi = w[q];
        let u = 0.5 * (s[tb + i] + s[tb + i + 1u]);
        let dt = s[tb + i + 1u] - s[tb + i];
        let w_gt = total_w - cw - wi;
        let wu_gt = total_wu - cwu - wi * u;
        let a = u * cw - cwu + wu_gt - u * w_gt;
        inter += wi * a;
        intra += wi * wi * dt;
        let a0 = color_act(logits[3u * q]);
        let a1 = color_act(logits[3u * q + 1u]);
        let a2 = color_act(logits[3u * q + 2u]);
        let g = p.dist_scale * (2.0 * a + 2.0 / 3.0 * wi * dt)
            + (gc.x * a0.x + gc.y * a1.x + gc.z * a2.x);
        gw[q] = g;
        g_logits[3u * q] = gc.x * wi * a0.y;
        g_logits[3u * q + 1u] = gc.y * wi * a1.y;
        g_logits[3u * q + 2u] = gc.z * wi * a2.y;
        sgw += g * wi;
        cw += wi;
        cwu += wi * u;
    }
    // 3. Inclusive suffix scan of the chunks' sum gw * w; tree reduction of the distortion terms.
    nl_suf[lid] = sgw;
    nl_dist[lid] = vec2<f32>(inter, intra);
    workgroupBarrier();
    for (var off = 1u; off < NL_WG; off <<= 1u) {
        var v = nl_suf[lid];
        if (lid + off < NL_WG) { v = v + nl_suf[lid + off]; }
        workgroupBarrier();
        nl_suf[lid] = v;
        workgroupBarrier();
    }
    for (var h = NL_WG / 2u; h > 0u; h >>= 1u) {
        if (lid < h) { nl_dist[lid] = nl_dist[lid] + nl_dist[lid + h]; }
        workgroupBarrier();
    }
    // 4. composite.rs weights_backward over the chunk, backwards: dL/dsigma, times sigma for the
    //    trunc_exp logit. `acc` is the optical depth up to and including sample k.
    var suffix = 0.0;
    if (lid + 1u < NL_WG) { suffix = nl_suf[lid + 1u]; }
    var acc = before.z + stau;
    for (var kk = i1; kk > i0; kk--) {
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
    if (lid != 0u) { return; }
    let d = nl_dist[0];
    ray_loss[4u * ray] = data;
    ray_loss[4u * ray + 1u] = d.x + d.y / 3.0;
    ray_loss[4u * ray + 2u] = se;
    ray_loss[4u * ray + 3u] = 0.0;
}
