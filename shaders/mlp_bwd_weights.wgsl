// mlp_bwd_weights.wgsl: MLP parameter gradients as per-row-group partial sums (CPU twin:
// kernels/mlp.rs, dW_k += h_k^T dY_k, db_k += 1^T dY_k). Workgroup (x, y) owns parameters
// 4 x MLP_WG x .. (4 per invocation) and the rows of row-group y; partial[y * P + param] = its sum
// over those rows, in row order.
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

// Sum over the row-group of the gradient of parameter q (weight (i, j) or bias j of layer k).
fn one_param(q: u32, r_begin: u32, r_end: u32) -> f32 {
    var k = 0u;
    for (var kk = 1u; kk < p.layers; kk++) {
        if (q >= wo(kk)) { k = kk; }
    }
    let din = sz(k);
    let dout = sz(k + 1u);
    let w0 = wo(k);
    let dcol = dyo(k);
    var acc = 0.0;
    if (q >= w0 + din * dout) {
        let j = q - bo(k);
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
    return acc;
}

@compute @workgroup_size(MLP_WG)
fn mlp_bwd_weights(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Each invocation owns 4 consecutive parameters; when they are 4 weights of one row i of a
    // layer (the common case), each row's input x(r, i) is read once for all 4.
    let q0 = (wid.x * MLP_WG + lid) * 4u;
    let rg = wid.y;
    if (q0 >= p.nparams || rg >= p.groups) { return; }
    let r_begin = rg * p.rpg;
    let r_end = min(r_begin + p.rpg, p.n);
    var k = 0u;
    for (var kk = 1u; kk < p.layers; kk++) {
        if (q0 >= wo(kk)) { k = kk; }
    }
    let din = sz(k);
    let dout = sz(k + 1u);
    let w0 = wo(k);
    let in_weights = q0 + 3u < w0 + din * dout;
    let i = (q0 - w0) / dout;
    let j = (q0 - w0) % dout;
    if (in_weights && j + 3u < dout) {
        let dcol = dyo(k) + j;
        var acc = vec4<f32>(0.0);
        for (var r = r_begin; r < r_end; r++) {
            var xi = 0.0;
            if (k == 0u) { xi = x_in(r, i); } else { xi = cache[r * p.hw + ho(k - 1u) + i]; }
            let b = r * p.dyw + dcol;
            acc += xi * vec4<f32>(dy[b], dy[b + 1u], dy[b + 2u], dy[b + 3u]);
        }
        for (var e = 0u; e < 4u; e++) {
            partial[rg * p.nparams + q0 + e] = acc[e];
        }
        return;
    }
    for (var e = 0u; e < 4u; e++) {
        let q = q0 + e;
        if (q >= p.nparams) { break; }
        partial[rg * p.nparams + q] = one_param(q, r_begin, r_end);
    }
}
