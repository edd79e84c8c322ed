// hash_bwd.wgsl: hash-grid encoding, backward (CPU twin: kernels/hashgrid.rs hash_encode_backward).
// One invocation per (level, sample): grad[entry * F + f] += w_corner * level_weight * d_out,
// scattered by scatter_feats (scatter_plain or, with subgroups, scatter_subgroup's pre-reduction
// at the dense levels) through grad_add (native f32 atomics or the CAS loop; both chosen at
// composition). `grad` is bound to the levels level0 .. level0 + levels only. No gradient for
// positions or sigma.

@group(0) @binding(0) var<uniform> p: HashParams;
@group(0) @binding(1) var<storage, read> level_info: array<u32>;
@group(0) @binding(2) var<storage, read> pos: array<f32>;
@group(0) @binding(3) var<storage, read> fsig: array<f32>;
@group(0) @binding(4) var<storage, read> d_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<GradWord>;

@compute @workgroup_size(128)
fn hash_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_id(gid, nwg, 128u);
    if (idx >= p.n * p.levels) { return; }
    let l = idx / p.n;
    // At most 8 features per level (the local arrays; the host never asks for more). The feature
    // loops run to the constant 8 with an early exit, so a compiler can unroll them and keep the
    // arrays in registers (indexed at run time they would live in local memory).
    let nf = min(p.feats, 8u);
    let s = idx % p.n;
    let info = level_info[p.level0 + l];
    let res = level_res(info);
    let lw = level_weight(fsig[s], f32(res));
    let o = s * p.out_stride + (p.level0 + l) * p.feats;
    var g: array<f32, 8>;
    var any = false;
    for (var f = 0u; f < 8u; f++) {
        if (f >= nf) { break; }
        g[f] = d_out[o + f] * lw;
        any = any || (g[f] != 0.0);
    }
    if (!any) { return; }
    let dense = level_dense(info);
    let t_size = 1u << p.log2_t;
    let mask = t_size - 1u;
    let cell = grid_cell(vec3<f32>(pos[3u * s], pos[3u * s + 1u], pos[3u * s + 2u]), res);
    for (var c = 0u; c < 8u; c++) {
        let e = corner_entry(cell, c, res, dense, mask);
        let w = corner_weight(cell, c);
        let base = (l * t_size + e) * p.feats;
        var v: array<f32, 8>;
        for (var f = 0u; f < 8u; f++) {
            if (f >= nf) { break; }
            v[f] = w * g[f];
        }
        scatter_feats(base, v, nf, dense, idx);
    }
}
