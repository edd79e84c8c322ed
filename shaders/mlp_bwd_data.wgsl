// mlp_bwd_data.wgsl: fused MLP backward through the activations (CPU twin: kernels/mlp.rs
// mlp_backward_grouped, the dY / d_x part). Per tile of TILE rows, from d_out down to the input:
// dY_{K-1} = d_out, dY_{k-1} = (dY_k W_k^T) * [h_{k-1} > 0]; every dY_k is also written to `dy`
// (row r, columns dyoff(k) ..) for the weight-gradient kernel, and d_x = dY_0 W_0^T to `dx`
// (per-row inputs) and `dxg` (columns [dxg_c0, dxg_c1) of the group inputs, per row). Each
// invocation computes register tiles of RB rows x 4 inputs (each weight read once per RB rows, each
// dY once per 4 inputs); every sum runs over the outputs in order, as the twin's. The weights come
// transposed (`wt`, written by the forward, mlp_common.wgsl wto): per output j one 16-byte load
// holds the 4 inputs' weights, and a warp's lanes (consecutive input blocks) read consecutive
// vec4s; the outputs go 4 at a time with one vec4 of dY per row from workgroup memory: 64
// multiply-adds per 8 loads. With STAGE > 0 (MlpShape::stage; FLYTHROUGH_GPU_MLP_WEIGHTS=workgroup)
// the rows of W^T are staged in workgroup memory STAGE outputs at a time (a cooperative copy
// between two barriers) and the register tiles read them from there: the same products in the
// same order, so the results equal the global-memory path's.

@group(0) @binding(0) var<uniform> p: MlpParams;
@group(0) @binding(1) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cache: array<Act>;
@group(0) @binding(3) var<storage, read> d_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dxg: array<f32>;

// MAXW is a multiple of 4 (MlpShape), so every row of the tile starts a vec4.
var<workgroup> sh: array<vec4<f32>, 2u * TILE * MAXW / 4u>;
// STAGE rows of a layer's W^T (WSTAGE vec4s; 1 when weights are read from global memory).
var<workgroup> wsh: array<vec4<f32>, WSTAGE>;


// acc[k2] (4 inputs i0 .. i0 + 3 of row rb + k2) += sum over outputs j of dY[row, j] W_k[i, j], in
// output order; dY rows at `src` (stride MAXW) in workgroup memory, W_k^T rows from `wt` (inputs
// past the layer's width read the zero padding; their sums are never stored).
fn tile_dot(acc: ptr<function, array<vec4<f32>, RB>>, src: u32, rb: u32, k: u32, i0: u32) {
    let dout = sz(k + 1u);
    let rq = din4(k) >> 2u;
    let base = (wto(k) + i0) >> 2u;
    var j = 0u;
    for (; j + 4u <= dout; j += 4u) {
        let t0 = wt[base + j * rq];
        let t1 = wt[base + (j + 1u) * rq];
        let t2 = wt[base + (j + 2u) * rq];
        let t3 = wt[base + (j + 3u) * rq];
        fma4(acc, src + rb * MAXW + j, MAXW, t0, t1, t2, t3);
    }
    for (; j < dout; j++) {
        fma1(acc, src + rb * MAXW + j, MAXW, wt[base + j * rq]);
    }
}

// tile_dot with W^T staged in workgroup memory: for each chunk of STAGE outputs every invocation
// copies its share of the chunk's rows (nc rows of din4(k) floats, contiguous in `wt`) and waits;
// those with a tile (`on`) then sum over the chunk's outputs in order. Called from uniform control
// flow by every invocation of the workgroup.
fn tile_dot_staged(acc: ptr<function, array<vec4<f32>, RB>>, lid: u32, on: bool, src: u32,
                   rb: u32, k: u32, i0: u32) {
    let dout = sz(k + 1u);
    let rq = din4(k) >> 2u;
    for (var j0 = 0u; j0 < dout; j0 += STAGE) {
        let nc = min(STAGE, dout - j0);
        workgroupBarrier();
        let q0 = (wto(k) >> 2u) + j0 * rq;
        for (var q = lid; q < nc * rq; q += MLP_WG) { wsh[q] = wt[q0 + q]; }
        workgroupBarrier();
        if (on) { staged_chunk(acc, src, rb, j0, nc, rq, i0 >> 2u); }
    }
}

// The sums of tile_dot_staged over the nc outputs j0 .. of the chunk in `wsh`.
fn staged_chunk(acc: ptr<function, array<vec4<f32>, RB>>, src: u32, rb: u32, j0: u32, nc: u32,
                rq: u32, iq: u32) {
    var j = 0u;
    for (; j + 4u <= nc; j += 4u) {
        let t0 = wsh[j * rq + iq];
        let t1 = wsh[(j + 1u) * rq + iq];
        let t2 = wsh[(j + 2u) * rq + iq];
        let t3 = wsh[(j + 3u) * rq + iq];
        fma4(acc, src + rb * MAXW + j0 + j, MAXW, t0, t1, t2, t3);
    }
    for (; j < nc; j++) {
        fma1(acc, src + rb * MAXW + j0 + j, MAXW, wsh[j * rq + iq]);
    }
}

@compute @workgroup_size(MLP_WG)
fn mlp_bwd_data(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    // Tests fill workgroup memory with NaN first (POISON_WG): a read of a slot nothing wrote
    // shows in the outputs, as it would on a device whose workgroup memory holds garbage.
    if (POISON_WG) {
        for (var q = lid; q < 2u * TILE * MAXW / 4u; q += MLP_WG) {
            sh[q] = vec4<f32>(wg_nan());
        }
        for (var q = lid; q < WSTAGE; q += MLP_WG) {
            wsh[q] = vec4<f32>(wg_nan());
        }
        workgroupBarrier();
    }
    let r0 = flat_group(wid, nwg) * TILE;
    if (r0 >= p.n) { return; }
    let rows = min(TILE, p.n - r0);
    let nk = p.layers;
    let dk = sz(nk);
    for (var idx = lid; idx < rows * dk; idx += MLP_WG) {
        let r = idx / dk;
        let j = idx % dk;
        let v = d_out[(r0 + r) * p.out_stride + p.out_off + j];
        sh_set(r * MAXW + j, v);
        dy[(r0 + r) * p.dyw + dyo(nk - 1u) + j] = v;
    }
    workgroupBarrier();
    for (var k = nk - 1u; k >= 1u; k--) {
        let din = sz(k);
        let dout = sz(k + 1u);
        let src = ((nk - 1u - k) % 2u) * TILE * MAXW;
        let dst = ((nk - k) % 2u) * TILE * MAXW;
        // Invocation (row block, input block): a register tile of RB rows x 4 inputs; per output
        // j it reads 4 weights and RB dY values for 4 RB multiply-adds (sums in output order).
        let nblk = (rows + RB - 1u) / RB;
        let nib = (din + 3u) / 4u;
        let nwork = nblk * nib;
        if (STAGE > 0u) {
            // Rounds of MLP_WG tiles in which every invocation takes part in the copies.
            for (var base = 0u; base < nwork; base += MLP_WG) {
                let idx = base + lid;
                let on = idx < nwork;
                let rb = (idx / nib) * RB;
                let i0 = (idx % nib) * 4u;
                var acc = array<vec4<f32>, RB>();
                tile_dot_staged(&acc, lid, on, src, rb, k, i0);
                if (on) { hidden_store(acc, k, rb, i0, dst, r0, rows); }
            }
        } else {
            for (var idx = lid; idx < nwork; idx += MLP_WG) {
                let rb = (idx / nib) * RB;
                let i0 = (idx % nib) * 4u;
                var acc = array<vec4<f32>, RB>();
                tile_dot(&acc, src, rb, k, i0);
                hidden_store(acc, k, rb, i0, dst, r0, rows);
            }
        }
        workgroupBarrier();
    }
    if (p.want_dx == 0u) { return; }
    let src = ((nk - 1u) % 2u) * TILE * MAXW;
    let d0 = sz(0u);
    // Invocation (row block, input block): RB rows x 4 inputs of d_x, as above; blocks with no
    // wanted column (group inputs outside [dxg_c0, dxg_c1)) are skipped.
    let nblk = (rows + RB - 1u) / RB;
    let nib = (d0 + 3u) / 4u;
    let nwork = nblk * nib;
    if (STAGE > 0u) {
        for (var base = 0u; base < nwork; base += MLP_WG) {
            let idx = base + lid;
            let rb = (idx / nib) * RB;
            let i0 = (idx % nib) * 4u;
            var want = 0u;
            if (idx < nwork) { want = dx_want(i0, min(4u, d0 - i0)); }
            var acc = array<vec4<f32>, RB>();
            tile_dot_staged(&acc, lid, want != 0u, src, rb, 0u, i0);
            if (want != 0u) { dx_store(acc, rb, i0, want, r0, rows); }
        }
    } else {
        for (var idx = lid; idx < nwork; idx += MLP_WG) {
            let rb = (idx / nib) * RB;
            let i0 = (idx % nib) * 4u;
            let want = dx_want(i0, min(4u, d0 - i0));
            if (want == 0u) { continue; }
            var acc = array<vec4<f32>, RB>();
            tile_dot(&acc, src, rb, 0u, i0);
            dx_store(acc, rb, i0, want, r0, rows);
        }
    }
}

// A hidden layer's register tile (rows rb .., inputs i0 .. of layer k): dY_{k-1} = the sums times
// [h_{k-1} > 0], to the next layer's rows in workgroup memory and to `dy`.
fn hidden_store(acc: array<vec4<f32>, RB>, k: u32, rb: u32, i0: u32, dst: u32, r0: u32,
                rows: u32) {
    let ni = min(4u, sz(k) - i0);
    for (var k2 = 0u; k2 < RB; k2++) {
        let r = rb + k2;
        if (r >= rows) { break; }
        for (var c = 0u; c < ni; c++) {
            let i = i0 + c;
            let h = f32(cache[(r0 + r) * p.hw + ho(k - 1u) + i]);
            let v = select(0.0, acc[k2][c], h > 0.0);
            sh_set(dst + r * MAXW + i, v);
            dy[(r0 + r) * p.dyw + dyo(k - 1u) + i] = v;
        }
    }
}

// Which of the ni inputs i0 .. of d_x are wanted (bit c for input i0 + c): every per-row input,
// and the group inputs in [dxg_c0, dxg_c1).
fn dx_want(i0: u32, ni: u32) -> u32 {
    var want = 0u;
    for (var c = 0u; c < ni; c++) {
        let i = i0 + c;
        if (i < p.d_local || (i - p.d_local >= p.dxg_c0 && i - p.d_local < p.dxg_c1)) {
            want |= 1u << c;
        }
    }
    return want;
}

// A register tile of d_x (rows rb .., inputs i0 ..): the wanted per-row inputs to `dx`, the
// wanted group inputs to `dxg`.
fn dx_store(acc: array<vec4<f32>, RB>, rb: u32, i0: u32, want: u32, r0: u32, rows: u32) {
    let gw = p.dxg_c1 - p.dxg_c0;
    for (var k2 = 0u; k2 < RB; k2++) {
        let r = rb + k2;
        if (r >= rows) { break; }
        for (var c = 0u; c < 4u; c++) {
            if ((want & (1u << c)) == 0u) { continue; }
            let i = i0 + c;
            if (i < p.d_local) {
                dx[(r0 + r) * p.dx_stride + p.dx_off + i] = acc[k2][c];
            } else {
                dxg[(r0 + r) * gw + (i - p.d_local - p.dxg_c0)] = acc[k2][c];
            }
        }
    }
}
