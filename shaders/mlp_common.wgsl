// mlp_common.wgsl: the parameter block and input addressing of the fused MLP kernels (CPU twin:
// kernels/mlp.rs). Composed in front of mlp_fwd / mlp_bwd_data / mlp_bwd_weights after the
// constants TILE (rows per workgroup), MAXIN (widest input), MAXW (widest layer output) and
// MLP_WG (invocations per workgroup).
//
// Layout (kernels/mlp.rs): params = W_0 (d_0 x d_1, row-major, input i -> output j at
// W[i * d_1 + j]), b_0, W_1, b_1, ...; ReLU after every layer but the last.
// Input row r, feature i (a grouped input, kernels/mlp.rs MlpInput): i < d_local reads the per-row
// buffer `a[r * a_stride + a_off + i]`, i >= d_local the per-group buffer
// `g[(r / g_rows) * g_stride + i - d_local]` (the colour head's per-ray features).

struct MlpParams {
    n: u32,            // rows
    layers: u32,       // K
    a_stride: u32,
    a_off: u32,
    d_local: u32,
    g_stride: u32,
    g_rows: u32,
    out_stride: u32,   // forward output / backward d_out row length
    out_off: u32,      // column of the first output
    hw: u32,           // hidden cache row length (sum of hidden widths)
    train: u32,        // forward: write the hidden cache
    dyw: u32,          // row length of dy (d_1 + ... + d_K)
    dx_stride: u32,    // backward: d_x of the per-row inputs at dx[r * dx_stride + dx_off + i]
    dx_off: u32,
    dxg_c0: u32,       // backward: columns [c0, c1) of the group inputs' gradient, per row
    dxg_c1: u32,
    want_dx: u32,
    nparams: u32,      // P
    rpg: u32,          // rows per row-group of the weight-gradient partial sums
    groups: u32,       // row-groups G
    sizes: array<vec4<u32>, 3>,   // d_0 .. d_K
    woff: array<vec4<u32>, 3>,    // offset of W_k
    boff: array<vec4<u32>, 3>,    // offset of b_k, NONE without bias
    hoff: array<vec4<u32>, 3>,    // column of layer k's output in the cache row (k < K - 1)
    dyoff: array<vec4<u32>, 3>,   // column of dY_k in the dy row
}

fn sz(k: u32) -> u32 { return p.sizes[k / 4u][k % 4u]; }
fn wo(k: u32) -> u32 { return p.woff[k / 4u][k % 4u]; }
fn bo(k: u32) -> u32 { return p.boff[k / 4u][k % 4u]; }
fn ho(k: u32) -> u32 { return p.hoff[k / 4u][k % 4u]; }
fn dyo(k: u32) -> u32 { return p.dyoff[k / 4u][k % 4u]; }
