// reduce_partials.wgsl: grad[q] += sum over g = 0 .. G-1 (in this order) of partial[g * P + q].
// The fixed order makes the MLP weight gradients deterministic run to run.

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(128)
fn reduce_partials(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_id(gid, nwg, 128u);
    if (q >= p.nparams) { return; }
    var s = 0.0;
    for (var gi = 0u; gi < p.groups; gi++) {
        s += partial[gi * p.nparams + q];
    }
    grad[q] += s;
}
