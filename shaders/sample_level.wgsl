// sample_level.wgsl: one level's samples along each ray (CPU twins: model.rs resample and
// sample_points, stepfun.rs max_dilate_weights_into, anneal, sample_intervals). One invocation
// per ray. Level 0 samples [0, 1] uniformly; a later level max-dilates the previous level's
// histogram (s, w) by `dil`, raises the weights to the annealing power and samples its inverse CDF.
// Then: distances t = s_to_t(s), bin-midpoint positions contracted into grid units [0,1]^3 and
// their footprints (coord::grid_sigma).

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

const BIG: f32 = 1e30;

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

// stepfun::sample_intervals on the step function (sc[tb ..= tb + nb], sc[wb .. wb + nb]),
// writing m + 1 fenceposts to s_out[ob ..].
fn sample_intervals(tb: u32, wb: u32, nb: u32, m: u32, use_jitter: bool, j: f32, ob: u32) {
    var total = 0.0;
    for (var i = 0u; i < nb; i++) {
        if (sc[tb + i + 1u] > sc[tb + i]) { total += max(sc[wb + i], 0.0); }
    }
    var c_first = 0.0;
    var c_prev = 0.0;
    if (!(total > 0.0)) {
        let a = sc[tb];
        let b = sc[tb + nb];
        for (var k = 0u; k < m; k++) {
            let c = a + (b - a) * u_at(k, m, use_jitter, j);
            if (k == 0u) { c_first = c; } else { s_out[ob + k] = 0.5 * (c_prev + c); }
            c_prev = c;
        }
    } else {
        var i = 0u;
        var cw0 = 0.0;
        for (var k = 0u; k < m; k++) {
            let uk = u_at(k, m, use_jitter, j);
            loop {
                var wi = 0.0;
                if (sc[tb + i + 1u] > sc[tb + i]) { wi = max(sc[wb + i], 0.0) / total; }
                let cw1 = min(cw0 + wi, 1.0);
                if (uk < cw1 || i + 1u == nb) {
                    var f = 0.0;
                    if (wi > 0.0) { f = clamp((uk - cw0) / wi, 0.0, 1.0); }
                    let c = sc[tb + i] + f * (sc[tb + i + 1u] - sc[tb + i]);
                    if (k == 0u) { c_first = c; } else { s_out[ob + k] = 0.5 * (c_prev + c); }
                    c_prev = c;
                    break;
                }
                cw0 = cw1;
                i++;
            }
        }
    }
    s_out[ob] = max(2.0 * c_first - s_out[ob + 1u], 0.0);
    s_out[ob + m] = min(2.0 * c_prev - s_out[ob + m - 1u], 1.0);
    for (var k = 1u; k <= m; k++) {
        if (s_out[ob + k] < s_out[ob + k - 1u]) { s_out[ob + k] = s_out[ob + k - 1u]; }
    }
}

// Density of bin i of the previous level (w / dt).
fn prev_density(sb: u32, wb: u32, i: u32) -> f32 {
    let dt = prev_s[sb + i + 1u] - prev_s[sb + i];
    if (dt > 0.0) { return prev_w[wb + i] / dt; }
    return 0.0;
}

// stepfun::max_dilate_weights_into into sc[tb ..= tb + 3n], sc[wb .. wb + 3n], then annealed.
fn dilate(sb: u32, pwb: u32, n: u32, dil: f32, tb: u32, wb: u32) {
    var ia = 0u;
    var ib = 0u;
    var ic = 0u;
    var k = 0u;
    loop {
        if (!(ia <= n || ib < n || ic < n)) { break; }
        var va = BIG;
        var vb = BIG;
        var vc = BIG;
        if (ia <= n) { va = prev_s[sb + ia]; }
        if (ib < n) { vb = prev_s[sb + ib] - dil; }
        if (ic < n) { vc = prev_s[sb + ic + 1u] + dil; }
        var v = 0.0;
        if (va <= vb && va <= vc) { v = va; ia++; } else if (vb <= vc) { v = vb; ib++; } else { v = vc; ic++; }
        sc[tb + k] = clamp(v, 0.0, 1.0);
        k++;
    }
    let len = k;
    var lo = 0u;
    var hi = 0u;
    var sum = 0.0;
    for (var q = 0u; q + 1u < len; q++) {
        let x = sc[tb + q];
        loop { if (!(lo < n && prev_s[sb + lo + 1u] + dil <= x)) { break; } lo++; }
        loop { if (!(hi < n && prev_s[sb + hi] - dil <= x)) { break; } hi++; }
        var m = 0.0;
        for (var j = min(lo, hi); j < hi; j++) { m = max(m, prev_density(sb, pwb, j)); }
        let wk = m * (sc[tb + q + 1u] - sc[tb + q]);
        sum += wk;
        sc[wb + q] = wk;
    }
    let s = max(sum, F32_EPS);
    for (var q = 0u; q + 1u < len; q++) {
        let w = max(sc[wb + q] / s, 1e-12);
        if (p.anneal != 1.0) {
            sc[wb + q] = pow(w, p.anneal);
        } else {
            sc[wb + q] = w;
        }
    }
}

@compute @workgroup_size(64)
fn sample_level(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ray = flat_id(gid, nwg, 64u);
    if (ray >= p.n_rays) { return; }
    let n = p.n;
    let ob = ray * (n + 1u);
    let use_jitter = p.jitter != 0u;
    var j = 0.0;
    if (use_jitter) { j = jit[ray * p.nlev + p.level]; }
    let pn = p.pn;
    let base = ray * (6u * pn + 3u);
    if (pn == 0u) {
        sc[base] = 0.0;
        sc[base + 1u] = 1.0;
        sc[base + 2u] = 1.0;
        sample_intervals(base, base + 2u, 1u, n, use_jitter, j, ob);
    } else {
        let tb = base;
        let wb = base + 3u * pn + 1u;
        dilate(ray * (pn + 1u), ray * pn, pn, p.dil, tb, wb);
        sample_intervals(tb, wb, 3u * pn, n, use_jitter, j, ob);
    }
    let o = vec3<f32>(rays[8u * ray], rays[8u * ray + 1u], rays[8u * ray + 2u]);
    let d = vec3<f32>(rays[8u * ray + 3u], rays[8u * ray + 4u], rays[8u * ray + 5u]);
    let radius = rays[8u * ray + 6u];
    for (var k = 0u; k <= n; k++) {
        t_out[ob + k] = s_to_t(s_out[ob + k], p.near);
    }
    for (var k = 0u; k < n; k++) {
        let tm = 0.5 * (t_out[ob + k] + t_out[ob + k + 1u]);
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
