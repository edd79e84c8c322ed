// mlp_bwd_data.wgsl: fused MLP backward through the activations (CPU twin: kernels/mlp.rs
// mlp_backward_grouped, the dY / d_x part). Per tile of TILE rows, from d_out down to the input:
// dY_{K-1} = d_out, dY_{k-1} = (dY_k W_k^T) * [h_{k-1} > 0]; every dY_k is also written to `dy`
// (row r, columns dyoff(k) ..) for the weight-gradient kernel, and d_x = dY_0 W_0^T to `dx`
// (per-row inputs) and `dxg` (columns [dxg_c0, dxg_c1) of the group inputs, per row).

@group(0) @binding(0) var<uniform> p: MlpParams;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read> cache: array<f32>;
@group(0) @binding(3) var<storage, read> d_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dxg: array<f32>;

var<workgroup> sh: array<f32, 2u * TILE * MAXW>;

@compute @workgroup_size(MLP_WG)
fn mlp_bwd_data(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let r0 = flat_group(wid, nwg) * TILE;
    if (r0 >= p.n) { return; }
    let rows = min(TILE, p.n - r0);
    let nk = p.layers;
    let dk = sz(nk);
    for (var idx = lid; idx < rows * dk; idx += MLP_WG) {
        let r = idx / dk;
        let j = idx % dk;
        let v = d_out[(r0 + r) * p.out_stride + p.out_off + j];
        sh[r * MAXW + j] = v;
        dy[(r0 + r) * p.dyw + dyo(nk - 1u) + j] = v;
    }
    workgroupBarrier();
    for (var k = nk - 1u; k >= 1u; k--) {
        let din = sz(k);
        let dout = sz(k + 1u);
        let src = ((nk - 1u - k) % 2u) * TILE * MAXW;
        let dst = ((nk - k) % 2u) * TILE * MAXW;
        let w0 = wo(k);
        let nblk = (rows + RB - 1u) / RB;
        for (var idx = lid; idx < nblk * din; idx += MLP_WG) {
            let rb = (idx / din) * RB;
            let i = idx % din;
            var acc: array<f32, RB>;
            for (var k2 = 0u; k2 < RB; k2++) { acc[k2] = 0.0; }
            for (var j = 0u; j < dout; j++) {
                let w = params[w0 + i * dout + j];
                for (var k2 = 0u; k2 < RB; k2++) {
                    acc[k2] += sh[src + (rb + k2) * MAXW + j] * w;
                }
            }
            for (var k2 = 0u; k2 < RB; k2++) {
                let r = rb + k2;
                if (r >= rows) { break; }
                let h = cache[(r0 + r) * p.hw + ho(k - 1u) + i];
                let v = select(0.0, acc[k2], h > 0.0);
                sh[dst + r * MAXW + i] = v;
                dy[(r0 + r) * p.dyw + dyo(k - 1u) + i] = v;
            }
        }
        workgroupBarrier();
    }
    if (p.want_dx == 0u) { return; }
    let src = ((nk - 1u) % 2u) * TILE * MAXW;
    let d0 = sz(0u);
    let d1 = sz(1u);
    let w0 = wo(0u);
    let gw = p.dxg_c1 - p.dxg_c0;
    for (var idx = lid; idx < rows * d0; idx += MLP_WG) {
        let r = idx / d0;
        let i = idx % d0;
        if (i >= p.d_local && (i - p.d_local < p.dxg_c0 || i - p.d_local >= p.dxg_c1)) { continue; }
        var acc = 0.0;
        for (var j = 0u; j < d1; j++) {
            acc += sh[src + r * MAXW + j] * params[w0 + i * d1 + j];
        }
        if (i < p.d_local) {
            dx[(r0 + r) * p.dx_stride + p.dx_off + i] = acc;
        } else {
            dxg[(r0 + r) * gw + (i - p.d_local - p.dxg_c0)] = acc;
        }
    }
}
