// mlp_bwd_weights.wgsl: MLP parameter gradients as per-row-group partial sums (CPU twin:
// kernels/mlp.rs, dW_k += h_k^T dY_k, db_k += 1^T dY_k). Row groups are short (`rpg`, about 128
// rows: a batch of 64 k rows has 512 of them, see kernels.rs row_groups), so no invocation walks
// more than `rpg` rows.
// Workgroup (x, y) owns the parameter tiles x * MLP_WG .. (one per invocation) and the rows of
// row-group y. A layer's tiles are its weights in register tiles of 4 inputs x 4 outputs
// (row-major over the blocks; per row 4 activations and 4 dY values make 16 products), then its
// bias in blocks of 4 outputs (kernels.rs MlpParams::weight_tiles counts them); blocks at a
// layer's edge are partial. partial[y * P + param] = its sum over those rows, in row order.
// reduce_partials then adds the G partials in a fixed order, so the result is deterministic.
// Blocks of a grouped input's shared features (layer 0, inputs past d_local: the colour head's
// per-ray features) sum dY per group and take one product per group.
// A row's 4 activations and 4 dY values are one 16-byte load each (`a4`, `cache4`, `dy4v`: the same
// buffers as `a`, `cache`, `dy`) where the block is whole (the host pads `hoff`, `dyoff`, `hw` and
// `dyw` to multiples of 4; the per-row input must be aligned itself); else scalar loads.

@group(0) @binding(0) var<uniform> p: MlpParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> cache: array<Act>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;
@group(0) @binding(6) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> cache4: array<vec4<Act>>;
@group(0) @binding(8) var<storage, read> dy4v: array<vec4<f32>>;

fn x_in(r: u32, i: u32) -> f32 {
    if (i < p.d_local) { return a[r * p.a_stride + p.a_off + i]; }
    return g[(r / p.g_rows) * p.g_stride + (i - p.d_local)];
}

// Tiles of layer k: ceil(din / 4) x ceil(dout / 4) weight blocks, then ceil(dout / 4) bias blocks.
fn tiles_of(k: u32) -> u32 {
    let ncb = (sz(k + 1u) + 3u) / 4u;
    var t = ((sz(k) + 3u) / 4u) * ncb;
    if (bo(k) != NONE) { t += ncb; }
    return t;
}

// dY of row r, columns j0 .. j0 + nj of layer k (zero past nj).
fn dy4(r: u32, k: u32, j0: u32, nj: u32) -> vec4<f32> {
    let b = r * p.dyw + dyo(k) + j0;
    // A whole block starts at a multiple of 4 (dyw, dyoff padded; j0 = 4 x block).
    if (nj == 4u) { return dy4v[b >> 2u]; }
    var d = vec4<f32>(0.0);
    for (var c = 0u; c < nj; c++) { d[c] = dy[b + c]; }
    return d;
}

@compute @workgroup_size(MLP_WG)
fn mlp_bwd_weights(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var t = wid.x * MLP_WG + lid;
    let rg = wid.y;
    if (rg >= p.groups) { return; }
    // The layer of tile t, and t within it.
    var k = 0u;
    for (; k < p.layers; k++) {
        let tk = tiles_of(k);
        if (t < tk) { break; }
        t -= tk;
    }
    if (k >= p.layers) { return; }
    let r_begin = rg * p.rpg;
    let r_end = min(r_begin + p.rpg, p.n);
    let din = sz(k);
    let dout = sz(k + 1u);
    let ncb = (dout + 3u) / 4u;
    let nw = ((din + 3u) / 4u) * ncb;
    let o = rg * p.nparams;
    if (t >= nw) {
        // Bias block: 4 outputs' dY summed over the rows.
        let j0 = (t - nw) * 4u;
        let nj = min(4u, dout - j0);
        var acc = vec4<f32>(0.0);
        for (var r = r_begin; r < r_end; r++) {
            acc += dy4(r, k, j0, nj);
        }
        for (var c = 0u; c < nj; c++) { partial[o + bo(k) + j0 + c] = acc[c]; }
        return;
    }
    // Weight block: inputs i0 .. i0 + 4, outputs j0 .. j0 + 4.
    let i0 = (t / ncb) * 4u;
    let j0 = (t % ncb) * 4u;
    let ni = min(4u, din - i0);
    let nj = min(4u, dout - j0);
    var acc: array<vec4<f32>, 4>;
    for (var e = 0u; e < 4u; e++) { acc[e] = vec4<f32>(0.0); }
    // Whole blocks of activations as one 16-byte load: a hidden layer's cache always (hw and
    // hoff padded to multiples of 4), the input where all of the block is per-row and aligned.
    var x_vec = ni == 4u;
    if (k == 0u) {
        x_vec = x_vec && i0 + 4u <= p.d_local && ((p.a_stride | p.a_off) & 3u) == 0u;
    }
    if (k == 0u && i0 >= p.d_local && p.g_rows > 1u) {
        // A block of group inputs (the colour head's per-ray features): constant over a group's
        // rows, so dY is summed over the group's rows in this row group first, then one outer
        // product per group, x_g^T (sum dY): g_rows times fewer products, as the CPU twin.
        var r = r_begin;
        loop {
            if (r >= r_end) { break; }
            let grp = r / p.g_rows;
            let r_stop = min((grp + 1u) * p.g_rows, r_end);
            var ds = vec4<f32>(0.0);
            for (; r < r_stop; r++) { ds += dy4(r, k, j0, nj); }
            var x = vec4<f32>(0.0);
            for (var e = 0u; e < 4u; e++) {
                if (e >= ni) { break; }
                x[e] = g[grp * p.g_stride + i0 + e - p.d_local];
            }
            acc[0] += x.x * ds;
            acc[1] += x.y * ds;
            acc[2] += x.z * ds;
            acc[3] += x.w * ds;
        }
    } else {
        for (var r = r_begin; r < r_end; r++) {
            var x = vec4<f32>(0.0);
            if (x_vec) {
                if (k == 0u) {
                    x = a4[(r * p.a_stride + p.a_off + i0) >> 2u];
                } else {
                    x = vec4<f32>(cache4[(r * p.hw + ho(k - 1u) + i0) >> 2u]);
                }
            } else {
                for (var e = 0u; e < ni; e++) {
                    if (k == 0u) {
                        x[e] = x_in(r, i0 + e);
                    } else {
                        x[e] = f32(cache[r * p.hw + ho(k - 1u) + i0 + e]);
                    }
                }
            }
            let d = dy4(r, k, j0, nj);
            acc[0] += x.x * d;
            acc[1] += x.y * d;
            acc[2] += x.z * d;
            acc[3] += x.w * d;
        }
    }
    let w0 = wo(k);
    // Constant trip count, early exit: acc stays in registers (a run-time index would not).
    for (var e = 0u; e < 4u; e++) {
        if (e >= ni) { break; }
        for (var c = 0u; c < nj; c++) {
            partial[o + w0 + (i0 + e) * dout + j0 + c] = acc[e][c];
        }
    }
}
