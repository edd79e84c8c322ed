// glo_grad.wgsl: the GLO latents' gradient (CPU twin: kernels/mlp.rs mlp_backward_grouped's group
// input gradient and train.rs's scatter into the latent table): the colour head's first-layer dY
// summed over the ray's n samples, times the latent rows of W_0 (the latent is a per-ray input:
// d latent = (sum_s dY_0[s]) W_0[latent rows]^T, once per ray instead of per sample), added to row
// latent_idx[ray] of `grad`.
// One workgroup of 64 per ray (flat workgroup index on a 2-D grid): per chunk of 64 first-layer
// outputs, invocation l sums output column l over the samples in sample order into workgroup
// memory; then invocation l accumulates latent columns l, l + 64, ... (at most 256) from the chunk
// and W_0 in output order, and scatters them (one grad_add per ray and column). The per-ray sums
// are deterministic; the scatter's order across rays of one photo is not (atomics).

@group(0) @binding(0) var<uniform> p: GloParams;
@group(0) @binding(1) var<storage, read> latent_idx: array<u32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> params: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<GradWord>;

const GG_WG: u32 = 64u;
var<workgroup> gg_dy: array<f32, 64>;

@compute @workgroup_size(64)
fn glo_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    // Tests fill workgroup memory with NaN first (POISON_WG): a read of a slot nothing wrote
    // shows in the outputs, as it would on a device whose workgroup memory holds garbage.
    if (POISON_WG) {
        for (var q = lid; q < 64u; q += 64u) {
            gg_dy[q] = wg_nan();
        }
        workgroupBarrier();
    }
    let ray = flat_group(wid, nwg);
    // Uniform across the workgroup (workgroup id and uniform count): the barriers below stay in
    // uniform control flow.
    if (ray >= p.n_rays) { return; }
    let li = latent_idx[ray];
    // A latent row past the table (a caller bug) scatters nothing instead of into another buffer
    // (no early return: it is not uniform, the barriers must stay so).
    let valid = p.gd == 0u || li < arrayLength(&grad) / p.gd;
    let n = p.n;
    let d1 = p.d1;
    // Latent columns lid + 64 q, q < 4 (constant trip, early exit: registers).
    var acc = vec4<f32>(0.0);
    for (var jc = 0u; jc < d1; jc += GG_WG) {
        let j = jc + lid;
        var s = 0.0;
        if (j < d1) {
            for (var q = 0u; q < n; q++) { s += dy[(ray * n + q) * p.dyw + j]; }
        }
        gg_dy[lid] = s;
        workgroupBarrier();
        let nj = min(GG_WG, d1 - jc);
        for (var q = 0u; q < 4u; q++) {
            let c = lid + q * GG_WG;
            if (c >= p.gd) { break; }
            let w = p.w_lat + c * d1 + jc;
            var a = acc[q];
            for (var jj = 0u; jj < nj; jj++) { a += gg_dy[jj] * params[w + jj]; }
            acc[q] = a;
        }
        workgroupBarrier();
    }
    if (valid) {
        for (var q = 0u; q < 4u; q++) {
            let c = lid + q * GG_WG;
            if (c >= p.gd) { break; }
            grad_add(li * p.gd + c, acc[q]);
        }
    }
}
