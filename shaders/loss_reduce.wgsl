// loss_reduce.wgsl: the step's mean losses (CPU twin: model.rs Losses, means as multinerf) added
// to the running metrics [data, distortion, interlevel, mse, steps, ...]. One workgroup, a fixed
// summation order (deterministic); read back asynchronously every metrics_every steps.

@group(0) @binding(0) var<uniform> p: RedParams;
@group(0) @binding(1) var<storage, read> ray_loss: array<f32>;   // [R * 4]
@group(0) @binding(2) var<storage, read> il_loss: array<f32>;    // [nprop * R]
@group(0) @binding(3) var<storage, read_write> metrics: array<f32>;

var<workgroup> part: array<vec4<f32>, 256>;

@compute @workgroup_size(256)
fn loss_reduce(@builtin(local_invocation_index) lid: u32) {
    // Tests fill workgroup memory with NaN first (POISON_WG): a read of a slot nothing wrote
    // shows in the outputs, as it would on a device whose workgroup memory holds garbage.
    if (POISON_WG) {
        for (var q = lid; q < 256u; q += 256u) {
            part[q] = vec4<f32>(wg_nan());
        }
        workgroupBarrier();
    }
    var acc = vec4<f32>(0.0);
    for (var r = lid; r < p.n_rays; r += 256u) {
        acc.x += ray_loss[4u * r];
        acc.y += ray_loss[4u * r + 1u];
        acc.w += ray_loss[4u * r + 2u];
        for (var k = 0u; k < p.nprop; k++) {
            acc.z += il_loss[k * p.n_rays + r];
        }
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { part[lid] += part[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let t = part[0];
        metrics[0] += t.x * p.inv_3r;
        metrics[1] += t.y * p.inv_r;
        metrics[2] += t.z * p.inv_rn;
        metrics[3] += t.w * p.inv_3r;
        metrics[4] += 1.0;
    }
}
