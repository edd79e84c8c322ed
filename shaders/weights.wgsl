// weights.wgsl: densities and compositing weights of one level (CPU twins: model.rs trunc_exp,
// composite.rs weights): sigma = trunc_exp(raw column 0), w_i = T_i (1 - exp(-sigma_i delta_i)),
// T_i = exp(-sum_{j<i} tau_j), tau_j = max(sigma_j, 0) delta_j, the last bin opaque (w = T).
// One workgroup of 64 per ray (flat workgroup index on a 2-D grid): invocation l takes the
// contiguous chunk [l c, (l + 1) c) of the ray's n samples, c = ceil(n / 64), and sums its chunk's
// tau serially; a Hillis-Steele scan of the 64 chunk sums in workgroup memory gives each chunk the
// optical depth before it, from which the invocation walks its chunk again writing sigma and w.
// Fixed summation order, no atomics: deterministic (the order differs from the CPU twin's serial
// sum only by the chunk split).

@group(0) @binding(0) var<uniform> p: WeightsParams;
@group(0) @binding(1) var<storage, read> raw: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> sigma: array<f32>;
@group(0) @binding(4) var<storage, read_write> w: array<f32>;

const WT_WG: u32 = 64u;
var<workgroup> wt_scan: array<f32, 64>;

// Optical depth tau of sample i of the ray (0 for the opaque last bin) given its density.
fn wt_tau(sg: f32, tb: u32, i: u32, n: u32) -> f32 {
    if (i + 1u == n) { return 0.0; }
    return max(sg, 0.0) * (t[tb + i + 1u] - t[tb + i]);
}

@compute @workgroup_size(64)
fn weights(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    // Tests fill workgroup memory with NaN first (POISON_WG): a read of a slot nothing wrote
    // shows in the outputs, as it would on a device whose workgroup memory holds garbage.
    if (POISON_WG) {
        for (var q = lid; q < 64u; q += 64u) {
            wt_scan[q] = wg_nan();
        }
        workgroupBarrier();
    }
    let ray = flat_group(wid, nwg);
    // Uniform across the workgroup (workgroup id and uniform count): the barriers below stay in
    // uniform control flow.
    if (ray >= p.n_rays) { return; }
    let n = p.n;
    let tb = ray * (n + 1u);
    let c = (n + WT_WG - 1u) / WT_WG;
    let i0 = min(lid * c, n);
    let i1 = min(i0 + c, n);
    // 1. The chunk's optical depth.
    var part = 0.0;
    for (var i = i0; i < i1; i++) {
        part += wt_tau(trunc_exp(raw[(ray * n + i) * p.raw_stride]), tb, i, n);
    }
    // 2. Inclusive scan of the chunk sums (Hillis-Steele, fixed order).
    wt_scan[lid] = part;
    workgroupBarrier();
    for (var off = 1u; off < WT_WG; off <<= 1u) {
        var v = wt_scan[lid];
        if (lid >= off) { v = wt_scan[lid - off] + v; }
        workgroupBarrier();
        wt_scan[lid] = v;
        workgroupBarrier();
    }
    // 3. The chunk again from the optical depth before it.
    var acc = 0.0;
    if (lid > 0u) { acc = wt_scan[lid - 1u]; }
    for (var i = i0; i < i1; i++) {
        let q = ray * n + i;
        let sg = trunc_exp(raw[q * p.raw_stride]);
        sigma[q] = sg;
        let trans = exp(-acc);
        if (i + 1u == n) {
            w[q] = trans;
        } else {
            let tau = wt_tau(sg, tb, i, n);
            w[q] = trans * (1.0 - exp(-tau));
            acc += tau;
        }
    }
}
