// interlevel.wgsl: the proposal (interlevel) loss of one proposal level and its backward, per ray
// (CPU twins: stepfun.rs interlevel_loss, mip-NeRF 360 Eq. 13; composite.rs weights_backward). The
// NeRF histogram (s, w) is held fixed. Writes g_env (dL/dw_env), d_raw (dL/dsigma * sigma of the
// proposal MLP's output) and the ray's loss.
// One workgroup of 64 per ray (flat workgroup index on a 2-D grid). The CPU twin's merge walk is
// split by what it computes: NeRF bin i's outer measure is cum(hi_i) - cum(lo_i), its proposal bin
// range [lo_i, hi_i) given by count(v) = #{s_env <= v} (a binary search over the sorted fenceposts;
// the walk's running counters are exactly these counts) and cum(k) = sum of w_env[..k] (the chunk
// prefix from a workgroup scan plus the chunk's own samples, serially). Invocation l takes the
// contiguous chunk of ceil(n / 64) NeRF bins for the loss (a fixed-order tree reduction; invocation
// 0 writes it) and the chunk of ceil(m / 64) proposal bins [l c, (l + 1) c) for the gradient:
// since lo_i and hi_i are non-decreasing in i, the NeRF bins covering proposal bin e are one run
// [first i with hi_i > e, first i with lo_i > e), found by binary search, whose terms are added in
// ascending i as the twin adds them. weights_backward then runs as in nerf_loss.wgsl: a
// Hillis-Steele inclusive scan of the chunks' optical depth, a suffix scan of their sum g_env w_env,
// and each chunk walked backwards. Fixed order, no atomics: deterministic.

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

const IL_WG: u32 = 64u;
var<workgroup> il_scan: array<vec2<f32>, 64>; // w_env, tau (inclusive prefix scan)
var<workgroup> il_suf: array<f32, 64>;        // g_env * w_env (inclusive suffix scan)
var<workgroup> il_loss: array<f32, 64>;       // loss (tree reduction)

// #{j <= m: s_env[eb + j] <= v} (the fenceposts are sorted).
fn il_count(eb: u32, m: u32, v: f32) -> u32 {
    var lo = 0u;
    var hi = m + 1u;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        if (s_env[eb + mid] <= v) { lo = mid + 1u; } else { hi = mid; }
    }
    return lo;
}

// The proposal bin range [lo, hi) of NeRF bin i (stepfun.rs outer).
fn il_range(tb: u32, eb: u32, m: u32, i: u32) -> vec2<u32> {
    let lo = max(il_count(eb, m, s_nerf[tb + i]), 1u) - 1u;
    let hi = max(min(il_count(eb, m, s_nerf[tb + i + 1u]), m), lo);
    return vec2<u32>(lo, hi);
}

// cum(k) = sum of w_env[q0 ..][..k]: the scanned prefix of k's chunk, then the chunk's samples.
fn il_cum(q0: u32, ce: u32, k: u32) -> f32 {
    let j = min(k / ce, IL_WG - 1u);
    var c = 0.0;
    if (j > 0u) { c = il_scan[j - 1u].x; }
    for (var e = j * ce; e < k; e++) { c += w_env[q0 + e]; }
    return c;
}

// NeRF bin i's loss term and the gradient it adds to each proposal bin of its range.
fn il_term(ray: u32, tb: u32, eb: u32, q0: u32, ce: u32, i: u32) -> vec2<f32> {
    let r_ = il_range(tb, eb, p.m, i);
    let wi = w_nerf[ray * p.n + i];
    let r = max(wi - (il_cum(q0, ce, r_.y) - il_cum(q0, ce, r_.x)), 0.0);
    if (r > 0.0) {
        let den = wi + F32_EPS;
        return vec2<f32>(r * r / den, -2.0 * r / den * p.scale);
    }
    return vec2<f32>(0.0);
}

@compute @workgroup_size(64)
fn interlevel(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    // Tests fill workgroup memory with NaN first (POISON_WG): a read of a slot nothing wrote
    // shows in the outputs, as it would on a device whose workgroup memory holds garbage.
    if (POISON_WG) {
        for (var q = lid; q < 64u; q += 64u) {
            il_scan[q] = vec2<f32>(wg_nan());
            il_suf[q] = wg_nan();
            il_loss[q] = wg_nan();
        }
        workgroupBarrier();
    }
    let ray = flat_group(wid, nwg);
    // Uniform across the workgroup (workgroup id and uniform count): the barriers below stay in
    // uniform control flow.
    if (ray >= p.n_rays) { return; }
    let n = p.n;
    let n1 = p.m;
    let tb = ray * (n + 1u);
    let eb = ray * (n1 + 1u);
    let q0 = ray * n1;
    // Proposal bins of this invocation.
    let ce = (n1 + IL_WG - 1u) / IL_WG;
    let e0 = min(lid * ce, n1);
    let e1 = min(e0 + ce, n1);
    // 1. Chunk sums of w_env and of the optical depth; inclusive scan.
    var sw = 0.0;
    var stau = 0.0;
    for (var e = e0; e < e1; e++) {
        sw += w_env[q0 + e];
        if (e + 1u < n1) { stau += max(sigma[q0 + e], 0.0) * (t_env[eb + e + 1u] - t_env[eb + e]); }
    }
    il_scan[lid] = vec2<f32>(sw, stau);
    workgroupBarrier();
    for (var off = 1u; off < IL_WG; off <<= 1u) {
        var v = il_scan[lid];
        if (lid >= off) { v = il_scan[lid - off] + v; }
        workgroupBarrier();
        il_scan[lid] = v;
        workgroupBarrier();
    }
    // 2. The loss over this invocation's NeRF bins.
    let cn = (n + IL_WG - 1u) / IL_WG;
    let b0 = min(lid * cn, n);
    let b1 = min(b0 + cn, n);
    var loss = 0.0;
    for (var i = b0; i < b1; i++) { loss += il_term(ray, tb, eb, q0, ce, i).x; }
    il_loss[lid] = loss;
    // 3. g_env of this invocation's proposal bins: the run of NeRF bins covering each, in order.
    var sgw = 0.0;
    for (var e = e0; e < e1; e++) {
        var lo = 0u;
        var hi = n;
        while (lo < hi) {
            let mid = (lo + hi) / 2u;
            if (il_range(tb, eb, n1, mid).y > e) { hi = mid; } else { lo = mid + 1u; }
        }
        let ia = lo;
        hi = n;
        while (lo < hi) {
            let mid = (lo + hi) / 2u;
            if (il_range(tb, eb, n1, mid).x > e) { hi = mid; } else { lo = mid + 1u; }
        }
        var g = 0.0;
        for (var i = ia; i < lo; i++) { g += il_term(ray, tb, eb, q0, ce, i).y; }
        g_env[q0 + e] = g;
        sgw += g * w_env[q0 + e];
    }
    // 4. Inclusive suffix scan of the chunks' sum g_env w_env; tree reduction of the loss.
    il_suf[lid] = sgw;
    workgroupBarrier();
    for (var off = 1u; off < IL_WG; off <<= 1u) {
        var v = il_suf[lid];
        if (lid + off < IL_WG) { v = v + il_suf[lid + off]; }
        workgroupBarrier();
        il_suf[lid] = v;
        workgroupBarrier();
    }
    for (var h = IL_WG / 2u; h > 0u; h >>= 1u) {
        if (lid < h) { il_loss[lid] = il_loss[lid] + il_loss[lid + h]; }
        workgroupBarrier();
    }
    // 5. weights_backward on the proposal level over the chunk, backwards; `acc` is the optical
    //    depth up to and including bin k.
    var suffix = 0.0;
    if (lid + 1u < IL_WG) { suffix = il_suf[lid + 1u]; }
    var acc = stau;
    if (lid > 0u) { acc += il_scan[lid - 1u].y; }
    for (var kk = e1; kk > e0; kk--) {
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
    if (lid == 0u) { ray_loss[p.loss_off + ray] = il_loss[0]; }
}
