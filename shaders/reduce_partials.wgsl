// reduce_partials.wgsl: grad[q] += the sum of partial[g * P + q] over the G row groups, in a fixed
// order, so the MLP weight gradients are deterministic run to run. A workgroup of 256 owns 32
// consecutive parameters: lane (gl, ql) = (lid / 32, lid % 32) adds groups gl, gl + 8, gl + 16, ..
// in that order (coalesced: the 32 lanes of a group row read 32 consecutive partials), then lane
// (0, ql) adds the 8 lane sums in order 0..7.

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn reduce_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    // Tests fill workgroup memory with NaN first (POISON_WG): a read of a slot nothing wrote
    // shows in the outputs, as it would on a device whose workgroup memory holds garbage.
    if (POISON_WG) {
        for (var q = lid; q < 256u; q += 256u) {
            part[q] = wg_nan();
        }
        workgroupBarrier();
    }
    let ql = lid % 32u;
    let gl = lid / 32u;
    let q = flat_group(wid, nwg) * 32u + ql;
    var s = 0.0;
    if (q < p.nparams) {
        for (var gi = gl; gi < p.groups; gi += 8u) {
            s += partial[gi * p.nparams + q];
        }
    }
    part[lid] = s;
    workgroupBarrier();
    if (gl == 0u && q < p.nparams) {
        var t = 0.0;
        for (var l = 0u; l < 8u; l++) {
            t += part[l * 32u + ql];
        }
        grad[q] += t;
    }
}
