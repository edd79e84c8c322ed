// The parameter block of every kernel, declared once (each kernel is composed after this file).
// Each struct has a `#[repr(C)]` mirror of the same name in crates/nerf/src/gpu/kernels.rs; a test
// there checks every mirror's size, field names and offsets against naga's layout of this file.
// Uniform layout: 16-byte aligned blocks; arrays of vec4 at a 16-byte stride.

// adam.wgsl
struct AdamLen { len: u32, _p0: u32, _p1: u32, _p2: u32 }

// adam.wgsl
struct AdamStep { b1: f32, b2: f32, eps: f32, step_size: f32, inv_sqrt_bc2: f32, _p0: f32, _p1: f32, _p2: f32 }

// composite.wgsl
struct CompParams { n_rays: u32, n: u32, pix0: u32, pack: u32, npix: u32, _p0: u32, _p1: u32, _p2: u32 }

// glo_grad.wgsl
struct GloParams {
    n_rays: u32,
    n: u32,
    gd: u32,           // latent columns (at most 256)
    dyw: u32,          // row length of the colour head's dy (its layer 0 at columns 0..d1)
    d1: u32,           // the colour head's first layer width
    w_lat: u32,        // offset of W_0's first latent row in the colour head's parameters
    _p0: u32,
    _p1: u32,
}

// hash_fwd.wgsl, hash_bwd.wgsl
struct HashParams {
    n: u32,            // samples
    levels: u32,       // levels in this dispatch
    level0: u32,       // first level (index into level_info and output column)
    feats: u32,        // F
    log2_t: u32,       // log2 of the entries per level
    out_stride: u32,   // L_total * F
    _p0: u32,
    _p1: u32,
}

// interlevel.wgsl
struct IlParams {
    n_rays: u32,
    n: u32,          // NeRF samples
    m: u32,          // this proposal level's samples
    loss_off: u32,   // the ray's loss goes to ray_loss[loss_off + ray]
    scale: f32,      // interlevel_weight / (rays * n)
    _p1: f32,
    _p2: f32,
    _p3: f32,
}

// loss_reduce.wgsl
struct RedParams { n_rays: u32, nprop: u32, _p0: u32, _p1: u32, inv_3r: f32, inv_r: f32, inv_rn: f32, _p2: f32 }

// mlp_common.wgsl
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
    pre: u32,          // forward: layer 0's group inputs arrive pre-multiplied, bias included, in gpre
    _q0: u32,
    _q1: u32,
    _q2: u32,
    sizes: array<vec4<u32>, 3>,   // d_0 .. d_K
    woff: array<vec4<u32>, 3>,    // offset of W_k
    boff: array<vec4<u32>, 3>,    // offset of b_k, NONE without bias
    hoff: array<vec4<u32>, 3>,    // column of layer k's output in the cache row (k < K - 1)
    dyoff: array<vec4<u32>, 3>,   // column of dY_k in the dy row
}

// nerf_loss.wgsl
struct LossParams {
    n_rays: u32,
    n: u32,
    raw_stride: u32,   // row length of d_raw (1 + geometry features)
    _p0: u32,
    inv_r: f32,        // 1 / rays
    dist_scale: f32,   // distortion_weight / rays
    _p1: f32,
    _p2: f32,
}

// ray_features.wgsl
struct FeatParams { n_rays: u32, width: u32, gd: u32, exposure: u32 }

// raygen_camera.wgsl
struct CamParams {
    fx: f32, fy: f32, cx: f32, cy: f32,
    k1: f32, k2: f32, p1: f32, p2: f32,
    width: u32, pix0: u32, n: u32, distorted: u32,
    _r: f32, ev: f32, _p0: f32, _p1: f32,
    origin: vec4<f32>,       // camera centre in the model frame
    rt0: vec4<f32>,          // rows of R^T (camera-to-world rotation)
    rt1: vec4<f32>,
    rt2: vec4<f32>,
}

// raygen_equirect.wgsl
struct EquiParams {
    width: u32, height: u32, pix0: u32, n: u32,
    ev: f32, _p0: f32, _p1: f32, _p2: f32,
    origin: vec4<f32>,
    right: vec4<f32>,
    forward: vec4<f32>,
    up: vec4<f32>,
}

// reduce_partials.wgsl
struct ReduceParams { nparams: u32, groups: u32, _p0: u32, _p1: u32 }

// sample_level.wgsl
struct SampleParams {
    n_rays: u32,
    n: u32,          // samples of this level
    pn: u32,         // samples of the previous level (0 for level 0)
    jitter: u32,     // 1: stratified with one jitter per ray (training), 0: deterministic centres
    near: f32,
    dil: f32,        // stepfun::dilation(prod of previous samples)
    anneal: f32,     // stepfun::anneal_power(train_frac, 10)
    level: u32,      // column of `jit`
    nlev: u32,       // row length of `jit`
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

// sq_norm.wgsl
struct SqParams { len: u32, part_off: u32, _p0: u32, _p1: u32 }

// sq_norm_final.wgsl
struct NormParams { n_parts: u32, clip: u32, _p0: u32, _p1: u32, max_norm: f32, _p2: f32, _p3: f32, _p4: f32 }

// weights.wgsl
struct WeightsParams { n_rays: u32, n: u32, raw_stride: u32, _p0: u32 }

// sample_batch.wgsl (seed_lo, seed_hi, step: the counter-based draws' key, crates/nerf/src/rng.rs)
struct SampleBatchParams { n_rays: u32, nlev: u32, n_photos: u32, total: u32, seed_lo: u32, seed_hi: u32, step: u32, _p0: u32 }
