// mlp_fwd.wgsl: fused MLP forward (CPU twin: kernels/mlp.rs mlp_forward_grouped_into /
// _inference). One workgroup per tile of TILE rows: the input tile and the hidden activations stay
// in workgroup memory; invocation (row block, column block) computes a register tile of RB rows x 4
// outputs (each weight read once per RB rows, each activation once per 4 outputs; rows past the
// tile's end are computed from stale memory and not stored). Where the layer's weights are
// 16-byte aligned (weight offset and output width multiples of 4: every layer but a 1- or 3-wide
// head) the inputs go 4 at a time with 16-byte loads: 4 weight rows from `params4` (the same
// buffer as `params`) and one vec4 of activations per row from workgroup memory, 64 multiply-adds
// per 8 loads; the sums keep their input order. Training writes the post-ReLU hidden activations
// to `cache` (row r, columns hoff(k) ..), and the grid also writes every layer's transposed
// weights to `wt` (mlp_common.wgsl wto; an element per invocation) for the backward, whose warps
// then load 16 consecutive vec4 (two cache lines) instead of 16 rows of W (sixteen lines).
// A grouped input (the colour head: 15 per-sample features, 68 per ray) can skip its group part:
// with `p.pre` layer 0 sums only the per-row inputs, starting from `gpre`, the group part computed
// once per group by this kernel run as a one-layer MLP over the groups (MlpParams::group_pre).
// With STAGE > 0 (MlpShape::stage; FLYTHROUGH_GPU_MLP_WEIGHTS=workgroup) a 16-byte-aligned layer's
// weights are staged in workgroup memory STAGE input rows at a time (a cooperative copy between
// two barriers), and the register tiles read them from there: the same products in the same
// order, so the outputs equal the global-memory path's.

@group(0) @binding(0) var<uniform> p: MlpParams;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> cache: array<Act>;
@group(0) @binding(6) var<storage, read_write> wt: array<f32>;
@group(0) @binding(7) var<storage, read> gpre: array<f32>;
@group(0) @binding(8) var<storage, read> params4: array<vec4<f32>>;

// MAXIN and MAXW are multiples of 4 (MlpShape), so every row of the tile starts a vec4.
var<workgroup> sh: array<vec4<f32>, TILE * (MAXIN + 2u * MAXW) / 4u>;
// STAGE rows of a layer's weights (WSTAGE vec4s; 1 when weights are read from global memory).
var<workgroup> wsh: array<vec4<f32>, WSTAGE>;


fn x_in(r: u32, i: u32) -> f32 {
    if (i < p.d_local) { return a[r * p.a_stride + p.a_off + i]; }
    return g[(r / p.g_rows) * p.g_stride + (i - p.d_local)];
}

@compute @workgroup_size(MLP_WG)
fn mlp_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    // Tests fill workgroup memory with NaN first (POISON_WG): a read of a slot nothing wrote
    // shows in the outputs, as it would on a device whose workgroup memory holds garbage.
    if (POISON_WG) {
        for (var q = lid; q < TILE * (MAXIN + 2u * MAXW) / 4u; q += MLP_WG) {
            sh[q] = vec4<f32>(wg_nan());
        }
        for (var q = lid; q < WSTAGE; q += MLP_WG) {
            wsh[q] = vec4<f32>(wg_nan());
        }
        workgroupBarrier();
    }
    let grp = flat_group(wid, nwg);
    if (p.train != 0u) {
        // W^T of every layer, padding zero: element e of `wt` by invocation e of the grid (a
        // grid-stride loop where the grid is smaller), so no workgroup copies more than its share.
        let total = wto(p.layers);
        let stride = nwg.x * nwg.y * nwg.z * MLP_WG;
        for (var e = grp * MLP_WG + lid; e < total; e += stride) {
            var k = 0u;
            var t = e;
            loop {
                let n = sz(k + 1u) * din4(k);
                if (t < n || k + 1u >= p.layers) { break; }
                t -= n;
                k++;
            }
            let dp = din4(k);
            let j = t / dp;
            let i = t % dp;
            var v = 0.0;
            if (i < sz(k)) { v = params[wo(k) + i * sz(k + 1u) + j]; }
            wt[e] = v;
        }
    }
    let r0 = grp * TILE;
    if (r0 >= p.n) { return; }
    let rows = min(TILE, p.n - r0);
    // With `pre`, layer 0's group inputs were multiplied once per group (MlpParams::group_pre):
    // only the per-row inputs are loaded and summed here.
    let pre = p.pre != 0u;
    var d0 = sz(0u);
    if (pre) { d0 = p.d_local; }
    for (var idx = lid; idx < rows * d0; idx += MLP_WG) {
        let r = idx / d0;
        let i = idx % d0;
        sh_set(r * MAXIN + i, x_in(r0 + r, i));
    }
    workgroupBarrier();
    let nk = p.layers;
    for (var k = 0u; k < nk; k++) {
        var din = sz(k);
        if (k == 0u && pre) { din = p.d_local; }
        let dout = sz(k + 1u);
        var src = 0u;
        var sstride = MAXIN;
        if (k > 0u) {
            src = TILE * MAXIN + ((k - 1u) % 2u) * TILE * MAXW;
            sstride = MAXW;
        }
        let dst = TILE * MAXIN + (k % 2u) * TILE * MAXW;
        let w0 = wo(k);
        let b0 = bo(k);
        let last = k + 1u == nk;
        // 16-byte weight rows (uniform across the workgroup).
        let vec_ok = (w0 & 3u) == 0u && (dout & 3u) == 0u;
        // Invocation (row block, column block): a register tile of RB rows x 4 outputs. Per input
        // i it reads 4 weights and RB activations for 4 RB multiply-adds (each output's sum in
        // input order, as the twin's GEMM row).
        let nblk = (rows + RB - 1u) / RB;
        let ncb = (dout + 3u) / 4u;
        let lay = Layer(k, din, dout, src, sstride, dst, w0, b0, last, r0, rows);
        if (STAGE > 0u && vec_ok) {
            // Weights staged in workgroup memory, STAGE input rows at a time; every invocation
            // takes part in the copies and barriers (uniform loops), only those with a tile
            // compute. Layer rows i0 .. i0 + nc are contiguous: nc * dout floats from w0 + i0 dout.
            let nwork = nblk * ncb;
            let dq = dout >> 2u;
            for (var base = 0u; base < nwork; base += MLP_WG) {
                let idx = base + lid;
                let on = idx < nwork;
                let rb = (idx / ncb) * RB;
                let j0 = (idx % ncb) * 4u;
                var acc: array<vec4<f32>, RB>;
                if (on) { acc = tile_start(lay, pre, rb, j0); }
                for (var i0 = 0u; i0 < din; i0 += STAGE) {
                    let nc = min(STAGE, din - i0);
                    workgroupBarrier();
                    let wq0 = (w0 + i0 * dout) >> 2u;
                    for (var q = lid; q < nc * dq; q += MLP_WG) { wsh[q] = params4[wq0 + q]; }
                    workgroupBarrier();
                    if (on) {
                        let jq = j0 >> 2u;
                        var i = 0u;
                        for (; i + 4u <= nc; i += 4u) {
                            let wa = wsh[i * dq + jq];
                            let wb = wsh[(i + 1u) * dq + jq];
                            let wc = wsh[(i + 2u) * dq + jq];
                            let wd = wsh[(i + 3u) * dq + jq];
                            fma4(&acc, src + rb * sstride + i0 + i, sstride, wa, wb, wc, wd);
                        }
                        for (; i < nc; i++) {
                            let w = wsh[i * dq + jq];
                            fma1(&acc, src + rb * sstride + i0 + i, sstride, w);
                        }
                    }
                }
                if (on) { tile_store(lay, acc, rb, j0); }
            }
            workgroupBarrier();
            continue;
        }
        for (var idx = lid; idx < nblk * ncb; idx += MLP_WG) {
            let rb = (idx / ncb) * RB;
            let j0 = (idx % ncb) * 4u;
            let nj = min(4u, dout - j0);
            var acc = tile_start(lay, pre, rb, j0);
            var i = 0u;
            if (vec_ok) {
                let dq = dout >> 2u;
                for (; i + 4u <= din; i += 4u) {
                    let wq = (w0 + i * dout + j0) >> 2u;
                    let wa = params4[wq];
                    let wb = params4[wq + dq];
                    let wc = params4[wq + 2u * dq];
                    let wd = params4[wq + 3u * dq];
                    fma4(&acc, src + rb * sstride + i, sstride, wa, wb, wc, wd);
                }
            }
            for (; i < din; i++) {
                let wi = w0 + i * dout + j0;
                var w = vec4<f32>(0.0);
                if (nj == 4u) {
                    w = vec4<f32>(params[wi], params[wi + 1u], params[wi + 2u], params[wi + 3u]);
                } else {
                    for (var c = 0u; c < nj; c++) { w[c] = params[wi + c]; }
                }
                fma1(&acc, src + rb * sstride + i, sstride, w);
            }
            tile_store(lay, acc, rb, j0);
        }
        workgroupBarrier();
    }
}

// One layer of a tile: index k, input and output widths, the source rows in workgroup memory
// (offset, stride), the destination rows, weight and bias offsets, whether it is the last layer,
// and the tile's first row and row count.
struct Layer {
    k: u32, din: u32, dout: u32, src: u32, sstride: u32, dst: u32, w0: u32, b0: u32, last: bool,
    r0: u32, rows: u32,
}

// The sums' starting values of the register tile (rows rb .., outputs j0 ..): the bias, or with
// `pre` on layer 0 each row's group row of gpre (bias included; rows past the end start from zero
// and are not stored).
fn tile_start(l: Layer, pre: bool, rb: u32, j0: u32) -> array<vec4<f32>, RB> {
    let nj = min(4u, l.dout - j0);
    var acc: array<vec4<f32>, RB>;
    if (l.k == 0u && pre) {
        for (var k2 = 0u; k2 < RB; k2++) {
            var v = vec4<f32>(0.0);
            let r = l.r0 + rb + k2;
            if (r < p.n) {
                let q = (r / p.g_rows) * l.dout + j0;
                for (var c = 0u; c < 4u; c++) {
                    if (c >= nj) { break; }
                    v[c] = gpre[q + c];
                }
            }
            acc[k2] = v;
        }
    } else {
        var b = vec4<f32>(0.0);
        if (l.b0 != NONE) {
            for (var c = 0u; c < nj; c++) { b[c] = params[l.b0 + j0 + c]; }
        }
        for (var k2 = 0u; k2 < RB; k2++) { acc[k2] = b; }
    }
    return acc;
}

// The register tile's results: the last layer's to `out`, a hidden layer's after ReLU to the next
// layer's rows in workgroup memory and, when training, to `cache`.
fn tile_store(l: Layer, acc: array<vec4<f32>, RB>, rb: u32, j0: u32) {
    let nj = min(4u, l.dout - j0);
    for (var k2 = 0u; k2 < RB; k2++) {
        let r = rb + k2;
        if (r >= l.rows) { break; }
        for (var c = 0u; c < nj; c++) {
            let j = j0 + c;
            if (l.last) {
                out[(l.r0 + r) * p.out_stride + p.out_off + j] = acc[k2][c];
            } else {
                let v = max(acc[k2][c], 0.0);
                sh_set(l.dst + r * MAXW + j, v);
                if (p.train != 0u) {
                    cache[(l.r0 + r) * p.hw + ho(l.k) + j] = Act(min(v, ACT_MAX));
                }
            }
        }
    }
}
