// sample_level.wgsl: one level's samples along each ray (CPU twins: model.rs resample and
// sample_points, stepfun.rs max_dilate_weights_into, anneal, sample_intervals). Level 0 samples
// [0, 1] uniformly (one bin of weight 1); a later level max-dilates the previous level's histogram
// (s, w) by `dil`, raises the weights to the annealing power and samples its inverse CDF. Then:
// distances t = s_to_t(s), bin-midpoint positions contracted into grid units [0,1]^3 and their
// footprints (coord::grid_sigma).
// One workgroup of 64 per ray (flat workgroup index on a 2-D grid); invocation l takes contiguous
// chunks of ceil(len / 64) elements of each stage, the stages joined by barriers:
// 1. dilation: the twin's three-way merge of s, s - dil, s + dil becomes a rank per element
//    (its index plus binary-searched counts in the two other lists, ties ordered s, s - dil,
//    s + dil as in the merge), scattered into the scratch; each dilated bin's window of previous
//    bins [lo, hi) by two binary searches (the twin's sliding pointers), its max density over the
//    window as in the twin; the normalising sum by chunk sums and a fixed-order tree reduction;
// 2. inverse CDF: the total weight tree-reduced, the chunks' CDF (sums of w / total) scanned
//    (Hillis-Steele, fixed order); each output centre finds its chunk by a binary search over the
//    chunks' end values, then walks that chunk as the twin walks the CDF (min(cw + w, 1));
//    fenceposts are midpoints of neighbouring centres, the ends reflected, and the twin's
//    monotonicity guard is a max-scan;
// 3. t, positions and footprints per fencepost / sample.
// Deterministic (no atomics); the sums differ from the twin's serial ones only by the chunk split.

@group(0) @binding(0) var<uniform> p: SampleParams;
@group(0) @binding(1) var<storage, read> rays: array<f32>;       // [R * 8] o, d, radius, ev
@group(0) @binding(2) var<storage, read> jit: array<f32>;        // [R * nlev]
@group(0) @binding(3) var<storage, read> prev_s: array<f32>;     // [R * (pn + 1)]
@group(0) @binding(4) var<storage, read> prev_w: array<f32>;     // [R * pn]
@group(0) @binding(5) var<storage, read_write> sc: array<f32>;   // [R * (6 pn + 3)] scratch
@group(0) @binding(6) var<storage, read_write> s_out: array<f32>;  // [R * (n + 1)]
@group(0) @binding(7) var<storage, read_write> t_out: array<f32>;  // [R * (n + 1)]
@group(0) @binding(8) var<storage, read_write> pos: array<f32>;    // [R * n * 3]
@group(0) @binding(9) var<storage, read_write> fsig: array<f32>;   // [R * n]

const SL_WG: u32 = 64u;
var<workgroup> sl_red: array<f32, 64>;   // reductions and scans
var<workgroup> sl_end: array<f32, 64>;   // each chunk's CDF at its last bin (walked as the twin)

// stepfun::sample_intervals' u_k.
fn u_at(i: u32, m: u32, use_jitter: bool, j: f32) -> f32 {
    if (!use_jitter) {
        let pad = 1.0 / f32(2u * m);
        return pad + (1.0 - 2.0 * pad - F32_EPS) * f32(i) / f32(m - 1u);
    }
    let u_max = F32_EPS + (1.0 - F32_EPS) / f32(m);
    let max_jitter = (1.0 - u_max) / f32(m - 1u) - F32_EPS;
    return (1.0 - u_max) * f32(i) / f32(m - 1u) + j * max_jitter;
}

// Fixed-order tree reduction (sum) of the 64 values in sl_red; every invocation gets the total.
fn sl_reduce(lid: u32, v: f32) -> f32 {
    workgroupBarrier();
    sl_red[lid] = v;
    workgroupBarrier();
    for (var off = SL_WG / 2u; off > 0u; off >>= 1u) {
        if (lid < off) { sl_red[lid] = sl_red[lid] + sl_red[lid + off]; }
        workgroupBarrier();
    }
    let r = sl_red[0];
    workgroupBarrier();
    return r;
}

// Inclusive Hillis-Steele scan (sum or max) of the 64 values; returns this invocation's entry
// and leaves the scan in sl_red.
fn sl_scan(lid: u32, v: f32, is_max: bool) -> f32 {
    workgroupBarrier();
    sl_red[lid] = v;
    workgroupBarrier();
    for (var off = 1u; off < SL_WG; off <<= 1u) {
        var x = sl_red[lid];
        if (lid >= off) {
            if (is_max) { x = max(sl_red[lid - off], x); } else { x = sl_red[lid - off] + x; }
        }
        workgroupBarrier();
        sl_red[lid] = x;
        workgroupBarrier();
    }
    return sl_red[lid];
}

// Element i of merge list `lst` of the previous level's fenceposts (stepfun's a = s, b = s[..n] -
// dil, c = s[1..] + dil).
fn ml(sb: u32, lst: u32, i: u32, dil: f32) -> f32 {
    if (lst == 0u) { return prev_s[sb + i]; }
    if (lst == 1u) { return prev_s[sb + i] - dil; }
    return prev_s[sb + i + 1u] + dil;
}

// Number of elements of sorted list `lst` (length len) below x (`le`: at most x).
fn ml_count(sb: u32, lst: u32, len: u32, x: f32, le: bool, dil: f32) -> u32 {
    var lo = 0u;
    var hi = len;
    loop {
        if (lo >= hi) { break; }
        let mid = (lo + hi) / 2u;
        let v = ml(sb, lst, mid, dil);
        var below = v < x;
        if (le) { below = v <= x; }
        if (below) { lo = mid + 1u; } else { hi = mid; }
    }
    return lo;
}

// Density of bin i of the previous level (w / dt).
fn prev_density(sb: u32, wb: u32, i: u32) -> f32 {
    let dt = prev_s[sb + i + 1u] - prev_s[sb + i];
    if (dt > 0.0) { return prev_w[wb + i] / dt; }
    return 0.0;
}

// Weight of bin i of the step function (sc[tb ..= tb + nb], sc[wb .. wb + nb]) before
// normalising (0 on an empty bin).
fn bin_w(tb: u32, wb: u32, i: u32) -> f32 {
    if (sc[tb + i + 1u] > sc[tb + i]) { return max(sc[wb + i], 0.0); }
    return 0.0;
}

// stepfun::sample_intervals' centre k: the inverse CDF at u_k (found chunk by chunk, then walked
// within its chunk as the twin walks the CDF).
fn centre(k: u32, m: u32, use_jitter: bool, j: f32, tb: u32, wb: u32, nb: u32, total: f32,
          cb: u32) -> f32 {
    let uk = u_at(k, m, use_jitter, j);
    if (!(total > 0.0)) {
        let a = sc[tb];
        let b = sc[tb + nb];
        return a + (b - a) * uk;
    }
    // The first non-empty chunk whose end exceeds uk, else the last non-empty chunk.
    let nch = (nb + cb - 1u) / cb;
    var lo = 0u;
    var hi = nch - 1u;
    loop {
        if (lo >= hi) { break; }
        let mid = (lo + hi) / 2u;
        if (uk < sl_end[mid]) { hi = mid; } else { lo = mid + 1u; }
    }
    let ch = min(lo, SL_WG - 1u);
    var cw0 = 0.0;
    if (ch > 0u) { cw0 = min(sl_red[ch - 1u], 1.0); }
    var i = ch * cb;
    let i1 = min(i + cb, nb);
    loop {
        let wi = bin_w(tb, wb, i) / total;
        let cw1 = min(cw0 + wi, 1.0);
        if (uk < cw1 || i + 1u >= i1) {
            var f = 0.0;
            if (wi > 0.0) { f = clamp((uk - cw0) / wi, 0.0, 1.0); }
            return sc[tb + i] + f * (sc[tb + i + 1u] - sc[tb + i]);
        }
        cw0 = cw1;
        i++;
    }
    return 0.0;
}

@compute @workgroup_size(64)
fn sample_level(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    // Tests fill workgroup memory with NaN first (POISON_WG): a read of a slot nothing wrote
    // shows in the outputs, as it would on a device whose workgroup memory holds garbage.
    if (POISON_WG) {
        for (var q = lid; q < 64u; q += 64u) {
            sl_red[q] = wg_nan();
            sl_end[q] = wg_nan();
        }
        workgroupBarrier();
    }
    let ray = flat_group(wid, nwg);
    // Uniform across the workgroup (workgroup id and uniform counts): the barriers below stay in
    // uniform control flow.
    if (ray >= p.n_rays) { return; }
    let n = p.n;
    let ob = ray * (n + 1u);
    let use_jitter = p.jitter != 0u;
    var j = 0.0;
    if (use_jitter) { j = jit[ray * p.nlev + p.level]; }
    let pn = p.pn;
    let base = ray * (6u * pn + 3u);
    var tb = base;
    var wb = base + 2u;
    var nb = 1u;
    if (pn == 0u) {
        if (lid == 0u) {
            sc[base] = 0.0;
            sc[base + 1u] = 1.0;
            sc[base + 2u] = 1.0;
        }
    } else {
        // 1. stepfun::max_dilate_weights_into into sc[tb ..= tb + 3 pn], sc[wb .. wb + 3 pn].
        wb = base + 3u * pn + 1u;
        nb = 3u * pn;
        let sb = ray * (pn + 1u);
        let dil = p.dil;
        let ne = 3u * pn + 1u;
        let ce = (ne + SL_WG - 1u) / SL_WG;
        let e0 = min(lid * ce, ne);
        let e1 = min(e0 + ce, ne);
        for (var e = e0; e < e1; e++) {
            var lst = 0u;
            var i = e;
            if (e >= 2u * pn + 1u) { lst = 2u; i = e - 2u * pn - 1u; } else if (e >= pn + 1u) { lst = 1u; i = e - pn - 1u; }
            let v = ml(sb, lst, i, dil);
            var r = i;
            if (lst == 0u) {
                r += ml_count(sb, 1u, pn, v, false, dil) + ml_count(sb, 2u, pn, v, false, dil);
            } else if (lst == 1u) {
                r += ml_count(sb, 0u, pn + 1u, v, true, dil) + ml_count(sb, 2u, pn, v, false, dil);
            } else {
                r += ml_count(sb, 0u, pn + 1u, v, true, dil) + ml_count(sb, 1u, pn, v, true, dil);
            }
            sc[tb + min(r, ne - 1u)] = clamp(v, 0.0, 1.0);
        }
        storageBarrier();
        let cq = (nb + SL_WG - 1u) / SL_WG;
        let q0 = min(lid * cq, nb);
        let q1 = min(q0 + cq, nb);
        var part = 0.0;
        for (var q = q0; q < q1; q++) {
            let x = sc[tb + q];
            let lo = ml_count(sb, 2u, pn, x, true, dil);
            let hi = ml_count(sb, 1u, pn, x, true, dil);
            var m = 0.0;
            for (var jj = min(lo, hi); jj < hi; jj++) { m = max(m, prev_density(sb, ray * pn, jj)); }
            let wk = m * (sc[tb + q + 1u] - sc[tb + q]);
            part += wk;
            sc[wb + q] = wk;
        }
        let s = max(sl_reduce(lid, part), F32_EPS);
        for (var q = q0; q < q1; q++) {
            let w = max(sc[wb + q] / s, 1e-12);
            if (p.anneal != 1.0) {
                sc[wb + q] = pow(w, p.anneal);
            } else {
                sc[wb + q] = w;
            }
        }
    }
    storageBarrier();
    // 2. stepfun::sample_intervals: the total, then the chunks' CDF.
    let cb = (nb + SL_WG - 1u) / SL_WG;
    let b0 = min(lid * cb, nb);
    let b1 = min(b0 + cb, nb);
    var part = 0.0;
    for (var i = b0; i < b1; i++) { part += bin_w(tb, wb, i); }
    let total = sl_reduce(lid, part);
    var cpart = 0.0;
    if (total > 0.0) {
        for (var i = b0; i < b1; i++) { cpart += bin_w(tb, wb, i) / total; }
    }
    let incl = sl_scan(lid, cpart, false);
    // This chunk's CDF at its last bin, walked as the twin walks it (from the scanned start).
    var cw = 0.0;
    if (lid > 0u) { cw = min(sl_red[lid - 1u], 1.0); }
    if (total > 0.0) {
        for (var i = b0; i < b1; i++) { cw = min(cw + bin_w(tb, wb, i) / total, 1.0); }
    }
    sl_end[lid] = cw;
    workgroupBarrier();
    // Centres k - 1 and k give fencepost k (1 <= k < m).
    let m = n;
    let ck = (m + SL_WG - 1u) / SL_WG;
    let k0 = min(lid * ck, m);
    let k1 = min(k0 + ck, m);
    var c_prev = 0.0;
    if (k0 > 0u && k0 < k1) { c_prev = centre(k0 - 1u, m, use_jitter, j, tb, wb, nb, total, cb); }
    var c_first = 0.0;
    for (var k = k0; k < k1; k++) {
        let c = centre(k, m, use_jitter, j, tb, wb, nb, total, cb);
        if (k == 0u) { c_first = c; } else { s_out[ob + k] = 0.5 * (c_prev + c); }
        c_prev = c;
    }
    storageBarrier();
    if (lid == 0u && k0 < k1) { s_out[ob] = max(2.0 * c_first - s_out[ob + 1u], 0.0); }
    if (k1 == m && k0 < k1) { s_out[ob + m] = min(2.0 * c_prev - s_out[ob + m - 1u], 1.0); }
    storageBarrier();
    // The twin's monotonicity guard (s[k] = max(s[k], s[k - 1]) in order) as a max-scan.
    let cf = (m + 1u + SL_WG - 1u) / SL_WG;
    let f0 = min(lid * cf, m + 1u);
    let f1 = min(f0 + cf, m + 1u);
    var cmax = -BIG;
    for (var k = f0; k < f1; k++) { cmax = max(cmax, s_out[ob + k]); }
    _ = sl_scan(lid, cmax, true);
    var run = -BIG;
    if (lid > 0u) { run = sl_red[lid - 1u]; }
    for (var k = f0; k < f1; k++) {
        let v = s_out[ob + k];
        if (v < run) { s_out[ob + k] = run; } else { run = v; }
    }
    storageBarrier();
    // 3. Distances, positions and footprints.
    let o = vec3<f32>(rays[8u * ray], rays[8u * ray + 1u], rays[8u * ray + 2u]);
    let d = vec3<f32>(rays[8u * ray + 3u], rays[8u * ray + 4u], rays[8u * ray + 5u]);
    let radius = rays[8u * ray + 6u];
    for (var k = f0; k < f1; k++) {
        t_out[ob + k] = s_to_t(s_out[ob + k], p.near);
    }
    for (var k = k0; k < k1; k++) {
        let tm = 0.5 * (s_to_t(s_out[ob + k], p.near) + s_to_t(s_out[ob + k + 1u], p.near));
        let x = o + d * tm;
        let y = contract(x);
        let q = ray * n + k;
        let g = (y + vec3<f32>(2.0)) * 0.25;
        pos[3u * q] = g.x;
        pos[3u * q + 1u] = g.y;
        pos[3u * q + 2u] = g.z;
        fsig[q] = radius * tm * contract_scale(x) * 0.25;
    }
}

const BIG: f32 = 1e30;
