// baked_march.wgsl: one ray of the baked model (CPU twin: crates/bake grid.rs Grid::march_visiting,
// then model.rs BakedModel::render_norm with nerf field.rs ColorHead::shade). Composed after
// common.wgsl (sincos_acc, color_act) by crates/bake/src/gpu.rs, which prepends the colour
// head's widths `const HEAD_W: u32` (hidden width) and `const HEAD_IN: u32` (input width).
//
// The march, in the model's (norm) frame from t = near: at x = o + t d, y = contract(x), stop where
// |y| >= r_end; Δt = step_c / |J(x) d|. Inside the unit ball the empty cube of blocks around an
// empty block (block distance k: 2k - 1 blocks a side) or an empty voxel (mask bit clear) is left
// exactly (box exit, or the ball's boundary if nearer, plus 1e-3 voxel); outside it a block at
// distance k >= 2 is skipped by k - 1.5 blocks of contracted length; an empty block beside stored ones by two steps; a
// sample below raw_empty by one step. Otherwise σ = exp(min(raw, 15)), α = 1 - exp(-σ Δt),
// w = T α, features and depth composited with w, T *= 1 - α, stop below t_min. Then the colour head
// on [features / opacity | dir enc | latent | exposure enc]: ReLU, ReLU, padded sigmoid, × opacity.

// A 8^3-voxel block stores 9^3 vertices of 16 bytes (density, 15 features): 4 u32 words each.
const BLOCK: u32 = 8u;
const VERTS: u32 = 9u;
const WORDS_PER_VERTEX: u32 = 4u;
const EMPTY_SLOT: u32 = 0xffffffffu;
// "No limit" for a box face the ray runs parallel to (the CPU's f32::INFINITY).
const NO_EXIT: f32 = 3.0e38;

struct BakedParams {
    n: u32,          // rays in this dispatch
    res: u32,        // voxels per side of [-2, 2]^3
    nb: u32,         // blocks per side
    max_steps: u32,  // 64 res
    near: f32,
    voxel: f32,      // 4 / res
    step_c: f32,     // STEP_VOXELS voxels
    block_c: f32,    // a block's contracted length
    r_end: f32,      // 2 - voxel / 2
    t_min: f32,      // grid.rs T_MIN
    raw_empty: f32,  // grid.rs RAW_EMPTY
    glo_dim: u32,
    exposure: u32,   // the head takes the exposure encoding
    w0: u32,         // colour head layer offsets (kernels/mlp.rs layer_offsets)
    b0: u32,
    w1: u32,
    b1: u32,
    w2: u32,
    b2: u32,
    _p0: u32,
    lo: array<vec4<f32>, 4>,     // dequantisation: value = lo + q scale, 16 channels
    scale: array<vec4<f32>, 4>,
    bg: vec4<f32>,               // background colour seen through the transmittance left
}

@group(0) @binding(0) var<uniform> p: BakedParams;
@group(0) @binding(1) var<storage, read> block_index: array<u32>;  // per block: slot or EMPTY_SLOT
@group(0) @binding(2) var<storage, read> block_dist: array<u32>;   // per block: 1 byte, empty_dist
@group(0) @binding(3) var<storage, read> voxel_mask: array<u32>;   // per slot: 16 words (512 bits)
@group(0) @binding(4) var<storage, read> blocks: array<u32>;       // per slot: 729 vertices x 4 words
@group(0) @binding(5) var<storage, read> head: array<f32>;         // colour head parameters
@group(0) @binding(6) var<storage, read> latent: array<f32>;       // one GLO latent
@group(0) @binding(7) var<storage, read> rays: array<f32>;         // [o.xyz, d.xyz, radius, ev]
@group(0) @binding(8) var<storage, read_write> out: array<f32>;    // [r, g, b, depth, opacity, lookups, 0, 0]

// grid.rs Grid::box_exit: distance along d (inv_d = 1 / d, 0 where |d| <= 1e-12: that axis has
// no exit) from y to the far face of the cube of side_vox voxels whose lowest corner is voxel lo_vox.
fn box_exit(y: vec3<f32>, inv_d: vec3<f32>, lo_vox: vec3<f32>, side_vox: f32) -> f32 {
    let side = side_vox * p.voxel;
    var t = NO_EXIT;
    for (var a = 0u; a < 3u; a++) {
        let lo = -2.0 + lo_vox[a] * p.voxel;
        var s = NO_EXIT;
        if (inv_d[a] > 0.0) {
            s = (lo + side - y[a]) * inv_d[a];
        } else if (inv_d[a] < 0.0) {
            s = (lo - y[a]) * inv_d[a];
        }
        t = min(t, s);
    }
    return max(t, 0.0);
}

// grid.rs Grid::empty_dist: byte block % 4 of word block / 4.
fn block_distance(block: u32) -> u32 {
    return (block_dist[block / 4u] >> (8u * (block % 4u))) & 255u;
}

// grid.rs voxel_mask: bit (z 8 + y) 8 + x of the slot's 512.
fn voxel_empty(slot: u32, i0: vec3<u32>) -> bool {
    let bit = (i0.z * BLOCK + i0.y) * BLOCK + i0.x;
    return ((voxel_mask[slot * 16u + bit / 32u] >> (bit % 32u)) & 1u) == 0u;
}

// The 4 bytes of a word as floats.
fn bytes4(w: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(255u));
}

// Word k of vertex (x, y, z) of slot `slot`.
fn vertex_word(slot: u32, v: vec3<u32>, k: u32) -> u32 {
    let vi = (v.z * VERTS + v.y) * VERTS + v.x;
    return blocks[(slot * VERTS * VERTS * VERTS + vi) * WORDS_PER_VERTEX + k];
}

// grid.rs corner weight (1 - f or f per axis, in the CPU's product order).
fn corner_w(f: vec3<f32>, c: u32) -> f32 {
    let wx = select(1.0 - f.x, f.x, (c & 1u) != 0u);
    let wy = select(1.0 - f.y, f.y, ((c >> 1u) & 1u) != 0u);
    let wz = select(1.0 - f.z, f.z, ((c >> 2u) & 1u) != 0u);
    return wx * wy * wz;
}

fn corner_v(i0: vec3<u32>, c: u32) -> vec3<u32> {
    return i0 + vec3<u32>(c & 1u, (c >> 1u) & 1u, (c >> 2u) & 1u);
}

// grid.rs Grid::interpolate, word k (channels 4k..4k+3) only: Σ w q over the 8 corners (x fastest),
// not yet dequantised.
fn interp_word(slot: u32, i0: vec3<u32>, f: vec3<f32>, k: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    for (var c = 0u; c < 8u; c++) {
        let w = corner_w(f, c);
        if (w == 0.0) { continue; }
        acc += w * bytes4(vertex_word(slot, corner_v(i0, c), k));
    }
    return acc;
}

struct Marched {
    feats: array<vec4<f32>, 4>,  // Σ w v per channel (channel 0 unused)
    opacity: f32,
    depth: f32,
    lookups: u32,
}

// grid.rs Grid::march_visiting.
fn march(o: vec3<f32>, d: vec3<f32>) -> Marched {
    var m: Marched;
    m.feats = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var t = p.near;
    var trans = 1.0;
    var depth = 0.0;
    var lookups = 0u;
    let r = f32(p.res);
    // grid.rs Grid::ray_constants: 1 / d per axis and where the line leaves the unit ball.
    let inv_d = select(vec3<f32>(0.0), vec3<f32>(1.0) / d, abs(d) > vec3<f32>(1e-12));
    let od = dot(o, d);
    let t_ball = -od + sqrt(max(od * od - (dot(o, o) - 1.0), 0.0));
    for (var it = 0u; it < p.max_steps; it++) {
        let x = vec3<f32>(o.x + d.x * t, o.y + d.y * t, o.z + d.z * t);
        // The contraction and its speed along d from one norm (contract, contracted_speed):
        // the identity inside the unit ball; outside, with m = |x|, y = (2 - 1/m) x/m, |y| = 2 - 1/m.
        let m2 = x.x * x.x + x.y * x.y + x.z * x.z;
        var y = x;
        var speed = 1.0;
        if (m2 > 1.0) {
            let m = sqrt(m2);
            let rc = 2.0 - 1.0 / m;
            if (rc >= p.r_end) { break; }
            let a = rc / m;
            let c = (x.x * d.x + x.y * d.y + x.z * d.z) / m;
            speed = max(sqrt(a * a * max(1.0 - c * c, 0.0) + c * c / (m2 * m2)), 1e-12);
            y = x * a;
        }
        // locate: continuous grid coordinates and block; cell: voxel and fractions.
        let g = clamp((y + 2.0) * 0.25 * r, vec3<f32>(0.0), vec3<f32>(r));
        let b = min(vec3<u32>(g) / BLOCK, vec3<u32>(p.nb - 1u));
        let block = (b.z * p.nb + b.y) * p.nb + b.x;
        let slot = block_index[block];
        let dist = block_distance(block);
        let local = g - vec3<f32>(b * BLOCK);
        let i0 = min(vec3<u32>(max(local, vec3<f32>(0.0))), vec3<u32>(BLOCK - 1u));
        let f = local - vec3<f32>(i0);
        if (m2 < 1.0) {
            var exit = -1.0;
            if (slot == EMPTY_SLOT) {
                let k = f32(dist - 1u);
                let lo = (vec3<f32>(b) - k) * f32(BLOCK);
                exit = box_exit(y, inv_d, lo, (2.0 * k + 1.0) * f32(BLOCK));
            } else if (voxel_empty(slot, i0)) {
                exit = box_exit(y, inv_d, vec3<f32>(b * BLOCK + i0), 1.0);
            }
            if (exit >= 0.0) {
                t += min(exit, t_ball - t) + 1e-3 * p.voxel;
                continue;
            }
        }
        if (dist >= 2u) {
            // Outside the ball: k - 1.5 blocks of contracted length.
            let skip = min(f32(dist) - 1.5, f32(p.nb)) * p.block_c;
            t += skip / speed;
            continue;
        }
        let dt = p.step_c / speed;
        if (slot == EMPTY_SLOT) {
            t += 2.0 * dt;
            continue;
        }
        let q0 = interp_word(slot, i0, f, 0u);
        lookups += 1u;
        let raw = p.lo[0].x + q0.x * p.scale[0].x;
        if (raw < p.raw_empty) {
            t += dt;
            continue;
        }
        let sigma = exp(min(raw, 15.0));
        let alpha = 1.0 - exp(-sigma * dt);
        if (alpha > 0.0) {
            let w = trans * alpha;
            m.feats[0] += w * (p.lo[0] + q0 * p.scale[0]);
            for (var k = 1u; k < 4u; k++) {
                m.feats[k] += w * (p.lo[k] + interp_word(slot, i0, f, k) * p.scale[k]);
            }
            depth += w * t;
            trans *= 1.0 - alpha;
            if (trans < p.t_min) { break; }
        }
        t += dt;
    }
    m.opacity = 1.0 - trans;
    m.depth = depth;
    m.lookups = lookups;
    return m;
}

// Channel c (1..15) of the composited features.
fn feat(m: Marched, c: u32) -> f32 {
    return m.feats[c / 4u][c % 4u];
}

// field.rs ColorHead::shade of one pixel: input [geo (15) | dir enc (27) | latent | exposure enc (9)]
// (encoding.rs dir_encoding, exposure_encoding), two ReLU layers, 3 logits.
fn shade(m: Marched, d: vec3<f32>, ev: f32) -> vec3<f32> {
    var inp: array<f32, HEAD_IN>;
    for (var c = 0u; c < 15u; c++) {
        inp[c] = select(0.0, feat(m, c + 1u) / m.opacity, m.opacity > 1e-6);
    }
    inp[15] = d.x;
    inp[16] = d.y;
    inp[17] = d.z;
    for (var l = 0u; l < 4u; l++) {
        let fl = f32(1u << l);
        for (var a = 0u; a < 3u; a++) {
            let sc = sincos_acc(fl * d[a]);
            inp[18u + 3u * l + a] = sc.x;
            inp[30u + 3u * l + a] = sc.y;
        }
    }
    for (var k = 0u; k < p.glo_dim; k++) {
        inp[42u + k] = latent[k];
    }
    if (p.exposure != 0u) {
        let e = 42u + p.glo_dim;
        inp[e] = ev * 0.25;
        for (var l = 0u; l < 4u; l++) {
            let sc = sincos_acc(f32(1u << l) * PI * ev / 8.0);
            inp[e + 1u + l] = sc.x;
            inp[e + 5u + l] = sc.y;
        }
    }
    // Layer 0 (row-major fan_in x fan_out weights), ReLU.
    var h: array<f32, HEAD_W>;
    for (var j = 0u; j < HEAD_W; j++) {
        var s = head[p.b0 + j];
        for (var i = 0u; i < HEAD_IN; i++) {
            s += inp[i] * head[p.w0 + i * HEAD_W + j];
        }
        h[j] = max(s, 0.0);
    }
    // Layer 1, ReLU, each unit straight into the output layer.
    var logit = vec3<f32>(head[p.b2], head[p.b2 + 1u], head[p.b2 + 2u]);
    for (var j = 0u; j < HEAD_W; j++) {
        var s = head[p.b1 + j];
        for (var i = 0u; i < HEAD_W; i++) {
            s += h[i] * head[p.w1 + i * HEAD_W + j];
        }
        let a = max(s, 0.0);
        let o = p.w2 + 3u * j;
        logit += a * vec3<f32>(head[o], head[o + 1u], head[o + 2u]);
    }
    return vec3<f32>(color_act(logit.x).x, color_act(logit.y).x, color_act(logit.z).x);
}

@compute @workgroup_size(64)
fn baked_march(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 64u);
    if (i >= p.n) { return; }
    let r = 8u * i;
    let o = vec3<f32>(rays[r], rays[r + 1u], rays[r + 2u]);
    let d = vec3<f32>(rays[r + 3u], rays[r + 4u], rays[r + 5u]);
    let ev = rays[r + 7u];
    let m = march(o, d);
    let c = shade(m, d, ev) * m.opacity + (1.0 - m.opacity) * p.bg.xyz;
    out[r] = c.x;
    out[r + 1u] = c.y;
    out[r + 2u] = c.z;
    out[r + 3u] = select(0.0, m.depth / m.opacity, m.opacity > 1e-6);
    out[r + 4u] = m.opacity;
    out[r + 5u] = f32(m.lookups);
    out[r + 6u] = 0.0;
    out[r + 7u] = 0.0;
}
