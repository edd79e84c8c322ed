// mlp_bwd_weights.wgsl: MLP parameter gradients as per-row-group partial sums (CPU twin:
// kernels/mlp.rs, dW_k += h_k^T dY_k, db_k += 1^T dY_k). Workgroup (x, y) owns parameters
// x * MLP_WG .. and the rows of row-group y; partial[y * P + param] = its sum over those rows.
// reduce_partials then adds the G partials in a fixed order, so the result is deterministic.

@group(0) @binding(0) var<uniform> p: MlpParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> cache: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;

fn x_in(r: u32, i: u32) -> f32 {
    if (i < p.d_local) { return a[r * p.a_stride + p.a_off + i]; }
    return g[(r / p.g_rows) * p.g_stride + (i - p.d_local)];
}

@compute @workgroup_size(MLP_WG)
fn mlp_bwd_weights(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let q = wid.x * MLP_WG + lid;
    let rg = wid.y;
    if (q >= p.nparams || rg >= p.groups) { return; }
    // Which layer, and weight (i, j) or bias j.
    var k = 0u;
    for (var kk = 1u; kk < p.layers; kk++) {
        if (q >= wo(kk)) { k = kk; }
    }
    let din = sz(k);
    let dout = sz(k + 1u);
    let w0 = wo(k);
    let b0 = bo(k);
    let r_begin = rg * p.rpg;
    let r_end = min(r_begin + p.rpg, p.n);
    let dcol = dyo(k);
    var acc = 0.0;
    if (q >= w0 + din * dout) {
        let j = q - b0;
        for (var r = r_begin; r < r_end; r++) {
            acc += dy[r * p.dyw + dcol + j];
        }
    } else {
        let i = (q - w0) / dout;
        let j = (q - w0) % dout;
        if (k == 0u) {
            for (var r = r_begin; r < r_end; r++) {
                acc += x_in(r, i) * dy[r * p.dyw + dcol + j];
            }
        } else {
            let hcol = ho(k - 1u) + i;
            for (var r = r_begin; r < r_end; r++) {
                acc += cache[r * p.hw + hcol] * dy[r * p.dyw + dcol + j];
            }
        }
    }
    partial[rg * p.nparams + q] = acc;
}
