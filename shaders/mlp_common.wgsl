// mlp_common.wgsl: the parameter block and input addressing of the fused MLP kernels (CPU twin:
// kernels/mlp.rs). Composed in front of mlp_fwd / mlp_bwd_data / mlp_bwd_weights after the
// constants TILE (rows per workgroup), MAXIN (widest input), MAXW (widest layer output) and
// MLP_WG (invocations per workgroup), and the type `Act` the hidden activations are stored in for
// the backward (`cache`: f32, or f16 on adapters with shader f16, written clamped to ACT_MAX, its
// largest finite value; the arithmetic is f32 either way).
//
// Layout (kernels/mlp.rs): params = W_0 (d_0 x d_1, row-major, input i -> output j at
// W[i * d_1 + j]), b_0, W_1, b_1, ...; ReLU after every layer but the last.
// Input row r, feature i (a grouped input, kernels/mlp.rs MlpInput): i < d_local reads the per-row
// buffer `a[r * a_stride + a_off + i]`, i >= d_local the per-group buffer
// `g[(r / g_rows) * g_stride + i - d_local]` (the colour head's per-ray features).

fn sz(k: u32) -> u32 { return p.sizes[k / 4u][k % 4u]; }
fn wo(k: u32) -> u32 { return p.woff[k / 4u][k % 4u]; }
fn bo(k: u32) -> u32 { return p.boff[k / 4u][k % 4u]; }
fn ho(k: u32) -> u32 { return p.hoff[k / 4u][k % 4u]; }
fn dyo(k: u32) -> u32 { return p.dyoff[k / 4u][k % 4u]; }

// The transposed weights `wt` (written by mlp_fwd when training, read by mlp_bwd_data): layer k's
// W^T, dout rows of din rounded up to a multiple of 4 (zero-padded), from wto(k); every row starts
// a vec4 (kernels.rs transposed_weights_len).
fn din4(k: u32) -> u32 { return (sz(k) + 3u) & ~3u; }
fn wto(k: u32) -> u32 {
    var o = 0u;
    for (var l = 0u; l < k; l++) { o += sz(l + 1u) * din4(l); }
    return o;
}
