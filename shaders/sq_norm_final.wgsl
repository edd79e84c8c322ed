// sq_norm_final.wgsl: the global gradient norm from sq_norm's partials (fixed order) and the clip
// factor (CPU twin: kernels/adam.rs clip_scale): norm_out = [norm, scale]; the norm is also kept
// in metrics[5] (last step's gradient norm).

@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> norm_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> metrics: array<f32>;

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn sq_norm_final(@builtin(local_invocation_index) lid: u32) {
    // Tests fill workgroup memory with NaN first (POISON_WG): a read of a slot nothing wrote
    // shows in the outputs, as it would on a device whose workgroup memory holds garbage.
    if (POISON_WG) {
        for (var q = lid; q < 256u; q += 256u) {
            part[q] = wg_nan();
        }
        workgroupBarrier();
    }
    var acc = 0.0;
    for (var i = lid; i < p.n_parts; i += 256u) { acc += partial[i]; }
    part[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { part[lid] += part[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let norm = sqrt(part[0]);
        var scale = 1.0;
        if (p.clip != 0u && norm > p.max_norm && norm > 0.0) { scale = p.max_norm / norm; }
        norm_out[0] = norm;
        norm_out[1] = scale;
        metrics[5] = norm;
    }
}
