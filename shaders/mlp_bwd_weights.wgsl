// mlp_bwd_weights.wgsl: MLP parameter gradients as per-row-group partial sums (CPU twin:
// kernels/mlp.rs, dW_k += h_k^T dY_k, db_k += 1^T dY_k). Row groups are short (`rpg`, about 128
// rows: a batch of 64 k rows has 512 of them, see kernels.rs row_groups), so the work is spread
// over (parameters / 4) x groups invocations and no invocation walks more than `rpg` rows.
// Workgroup (x, y) owns parameters 4 x MLP_WG x .. (4 per invocation) and the rows of row-group y;
// partial[y * P + param] = its sum over those rows, in row order.
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

// The layer of parameter q.
fn layer_of(q: u32) -> u32 {
    var k = 0u;
    for (var kk = 1u; kk < p.layers; kk++) {
        if (q >= wo(kk)) { k = kk; }
    }
    return k;
}

// What lane kinds read per row: nothing, 1 (a bias), the input x(r, col), the cache column col.
const NONE_LANE: u32 = 0u;
const BIAS: u32 = 1u;
const INPUT: u32 = 2u;
const HIDDEN: u32 = 3u;

@compute @workgroup_size(MLP_WG)
fn mlp_bwd_weights(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let q0 = (wid.x * MLP_WG + lid) * 4u;
    let rg = wid.y;
    if (q0 >= p.nparams || rg >= p.groups) { return; }
    let r_begin = rg * p.rpg;
    let r_end = min(r_begin + p.rpg, p.n);
    let k = layer_of(q0);
    let din = sz(k);
    let dout = sz(k + 1u);
    let w0 = wo(k);
    let i = (q0 - w0) / dout;
    let j = (q0 - w0) % dout;
    // Common case: 4 weights of one input row i of a layer: x(r, i) is read once for all 4.
    if (q0 + 3u < w0 + din * dout && j + 3u < dout) {
        let dcol = dyo(k) + j;
        var acc = vec4<f32>(0.0);
        for (var r = r_begin; r < r_end; r++) {
            var xi = 0.0;
            if (k == 0u) { xi = x_in(r, i); } else { xi = cache[r * p.hw + ho(k - 1u) + i]; }
            let b = r * p.dyw + dcol;
            acc += xi * vec4<f32>(dy[b], dy[b + 1u], dy[b + 2u], dy[b + 3u]);
        }
        let o = rg * p.nparams + q0;
        partial[o] = acc.x;
        partial[o + 1u] = acc.y;
        partial[o + 2u] = acc.z;
        partial[o + 3u] = acc.w;
        return;
    }
    // Biases, layers narrower than 4 outputs, and 4 parameters straddling a row or a layer: each
    // of the 4 lanes has its own input column and dY column, resolved once; one walk over the
    // rows accumulates all four (a vec4 multiply-add per row).
    var kind = vec4<u32>(NONE_LANE);
    var xcol = vec4<u32>(0u);
    var dcol = vec4<u32>(0u);
    for (var e = 0u; e < 4u; e++) {
        let q = q0 + e;
        if (q >= p.nparams) { break; }
        let ke = layer_of(q);
        let de = sz(ke + 1u);
        let we = wo(ke);
        if (q >= we + sz(ke) * de) {
            kind[e] = BIAS;
            dcol[e] = dyo(ke) + (q - bo(ke));
        } else {
            let ie = (q - we) / de;
            dcol[e] = dyo(ke) + (q - we) % de;
            if (ke == 0u) {
                kind[e] = INPUT;
                xcol[e] = ie;
            } else {
                kind[e] = HIDDEN;
                xcol[e] = ho(ke - 1u) + ie;
            }
        }
    }
    var acc = vec4<f32>(0.0);
    for (var r = r_begin; r < r_end; r++) {
        var xv = vec4<f32>(0.0);
        var dv = vec4<f32>(0.0);
        for (var e = 0u; e < 4u; e++) {
            let ke = kind[e];
            if (ke == NONE_LANE) { continue; }
            if (ke == BIAS) {
                xv[e] = 1.0;
            } else if (ke == INPUT) {
                xv[e] = x_in(r, xcol[e]);
            } else {
                xv[e] = cache[r * p.hw + xcol[e]];
            }
            dv[e] = dy[r * p.dyw + dcol[e]];
        }
        acc += xv * dv;
    }
    for (var e = 0u; e < 4u; e++) {
        if (kind[e] != NONE_LANE) { partial[rg * p.nparams + q0 + e] = acc[e]; }
    }
}
