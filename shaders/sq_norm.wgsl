// sq_norm.wgsl: partial sums of squares of a gradient buffer (CPU twin: kernels/adam.rs
// grad_sq_norm), 2048 elements per workgroup, written to partial[part_off + workgroup]; summed in a
// fixed order by sq_norm_final.

@group(0) @binding(0) var<uniform> p: SqParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn sq_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    // Tests fill workgroup memory with NaN first (POISON_WG): a read of a slot nothing wrote
    // shows in the outputs, as it would on a device whose workgroup memory holds garbage.
    if (POISON_WG) {
        for (var q = lid; q < 256u; q += 256u) {
            part[q] = wg_nan();
        }
        workgroupBarrier();
    }
    let g = flat_group(wid, nwg);
    let base = g * 2048u;
    var acc = 0.0;
    for (var e = 0u; e < 8u; e++) {
        let i = base + e * 256u + lid;
        if (i < p.len) { acc += x[i] * x[i]; }
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { part[lid] += part[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u && base < p.len) { partial[p.part_off + g] = part[0]; }
}
