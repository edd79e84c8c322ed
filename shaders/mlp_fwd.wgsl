// mlp_fwd.wgsl: fused MLP forward (CPU twin: kernels/mlp.rs mlp_forward_grouped_into /
// _inference). One workgroup per tile of TILE rows: the input tile and the hidden activations stay
// in workgroup memory; invocation (row block, column block) computes a register tile of RB rows x 4
// outputs (each weight read once per RB rows, each activation once per 4 outputs; rows past the
// tile's end are computed from stale memory and not stored). Training writes the post-ReLU
// hidden activations to `cache` (row r, columns hoff(k) ..).

@group(0) @binding(0) var<uniform> p: MlpParams;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> cache: array<Act>;

var<workgroup> sh: array<f32, TILE * (MAXIN + 2u * MAXW)>;

fn x_in(r: u32, i: u32) -> f32 {
    if (i < p.d_local) { return a[r * p.a_stride + p.a_off + i]; }
    return g[(r / p.g_rows) * p.g_stride + (i - p.d_local)];
}

@compute @workgroup_size(MLP_WG)
fn mlp_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let r0 = flat_group(wid, nwg) * TILE;
    if (r0 >= p.n) { return; }
    let rows = min(TILE, p.n - r0);
    let d0 = sz(0u);
    for (var idx = lid; idx < rows * d0; idx += MLP_WG) {
        let r = idx / d0;
        let i = idx % d0;
        sh[r * MAXIN + i] = x_in(r0 + r, i);
    }
    workgroupBarrier();
    let nk = p.layers;
    for (var k = 0u; k < nk; k++) {
        let din = sz(k);
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
        // Invocation (row block, column block): a register tile of RB rows x 4 outputs. Per input
        // i it reads 4 weights and RB activations for 4 RB multiply-adds (each output's sum in
        // input order, as the twin's GEMM row).
        let nblk = (rows + RB - 1u) / RB;
        let ncb = (dout + 3u) / 4u;
        for (var idx = lid; idx < nblk * ncb; idx += MLP_WG) {
            let rb = (idx / ncb) * RB;
            let j0 = (idx % ncb) * 4u;
            let nj = min(4u, dout - j0);
            var b = vec4<f32>(0.0);
            if (b0 != NONE) {
                for (var c = 0u; c < nj; c++) { b[c] = params[b0 + j0 + c]; }
            }
            var acc: array<vec4<f32>, RB>;
            for (var k2 = 0u; k2 < RB; k2++) { acc[k2] = b; }
            for (var i = 0u; i < din; i++) {
                let wi = w0 + i * dout + j0;
                var w = vec4<f32>(0.0);
                if (nj == 4u) {
                    w = vec4<f32>(params[wi], params[wi + 1u], params[wi + 2u], params[wi + 3u]);
                } else {
                    for (var c = 0u; c < nj; c++) { w[c] = params[wi + c]; }
                }
                for (var k2 = 0u; k2 < RB; k2++) {
                    acc[k2] += sh[src + (rb + k2) * sstride + i] * w;
                }
            }
            for (var k2 = 0u; k2 < RB; k2++) {
                let r = rb + k2;
                if (r >= rows) { break; }
                for (var c = 0u; c < nj; c++) {
                    let j = j0 + c;
                    if (last) {
                        out[(r0 + r) * p.out_stride + p.out_off + j] = acc[k2][c];
                    } else {
                        let v = max(acc[k2][c], 0.0);
                        sh[dst + r * MAXW + j] = v;
                        if (p.train != 0u) {
                            cache[(r0 + r) * p.hw + ho(k) + j] = Act(min(v, ACT_MAX));
                        }
                    }
                }
            }
        }
        workgroupBarrier();
    }
}
