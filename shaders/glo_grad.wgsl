// glo_grad.wgsl: the GLO latents' gradient (CPU twin: model.rs backward's d_latent and train.rs's
// scatter into the latent table): the colour head's input gradient of the latent columns, summed
// over the ray's n samples, is added to row latent_idx[ray] of `grad`.
// One workgroup of 64 per ray (flat workgroup index on a 2-D grid): per four latent columns (a
// vec4), invocation l sums the contiguous chunk [l c, (l + 1) c) of the samples, c = ceil(n / 64),
// a fixed-order tree reduction in workgroup memory joins the chunks and invocation 0 scatters the
// sums (one grad_add per ray and column, as before). The per-ray sum is deterministic; the
// scatter's order across rays of one photo is not (atomics).

@group(0) @binding(0) var<uniform> p: GloParams;
@group(0) @binding(1) var<storage, read> latent_idx: array<u32>;
@group(0) @binding(2) var<storage, read> dxg: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<GradWord>;

const GG_WG: u32 = 64u;
var<workgroup> gg_red: array<vec4<f32>, 64>;

@compute @workgroup_size(64)
fn glo_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    // Tests fill workgroup memory with NaN first (POISON_WG): a read of a slot nothing wrote
    // shows in the outputs, as it would on a device whose workgroup memory holds garbage.
    if (POISON_WG) {
        for (var q = lid; q < 64u; q += 64u) {
            gg_red[q] = vec4<f32>(wg_nan());
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
    let c = (n + GG_WG - 1u) / GG_WG;
    let r0 = min(lid * c, n);
    let r1 = min(r0 + c, n);
    // Four latent columns at a time (one vec4 per invocation): a quarter of the barriers, each
    // column summed in the same order as alone.
    for (var j0 = 0u; j0 < p.gd; j0 += 4u) {
        var part = vec4<f32>(0.0);
        for (var r = r0; r < r1; r++) {
            let row = (ray * n + r) * p.gd;
            for (var k = 0u; k < 4u; k++) {
                if (j0 + k < p.gd) { part[k] += dxg[row + j0 + k]; }
            }
        }
        gg_red[lid] = part;
        workgroupBarrier();
        for (var off = GG_WG / 2u; off > 0u; off >>= 1u) {
            if (lid < off) { gg_red[lid] = gg_red[lid] + gg_red[lid + off]; }
            workgroupBarrier();
        }
        if (lid == 0u && valid) {
            let sum = gg_red[0];
            for (var k = 0u; k < 4u; k++) {
                if (j0 + k < p.gd) { grad_add(li * p.gd + j0 + k, sum[k]); }
            }
        }
        workgroupBarrier();
    }
}
