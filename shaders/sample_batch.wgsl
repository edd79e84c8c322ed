// sample_batch.wgsl: a training step's batch drawn on the device (CPU twin: train.rs step_batch ->
// step_picks + data.rs Dataset::pixels_batch + camera_ray; the draws of crates/nerf/src/rng.rs,
// repeated here line for line, so both back ends pick the same pixels and jitter bit for bit).
// One invocation per ray i: the global training pixel below(draw(key, i, 0), total), its photo k
// by binary search in the cumulative pixel counts, the pixel's camera-frame unit direction and cone
// radius from its camera's table (precomputed on the host with camera_ray's math: lens distortion
// included), rotated by the photo's camera-to-world rotation; origin and EV offset of the photo;
// the 8-bit colour / 255; latent index k; one jitter per level. Writes rays[8 i ..] = [o, d, r, ev],
// latent_idx[i], jitter[i * nlev + l], target[3 i ..].

@group(0) @binding(0) var<uniform> p: SampleBatchParams;
// [n_photos + 1]: training photo k holds the global pixels cum[k] .. cum[k + 1].
@group(0) @binding(1) var<storage, read> cum: array<u32>;
// 5 rows per training photo: camera-to-world rotation rows r0, r1, r2 (xyz), origin (xyz) with the
// EV offset in w, then bitcast u32s (width, table offset in pixels, 0, 0).
@group(0) @binding(2) var<storage, read> photos: array<vec4<f32>>;
// Per pixel of each distinct camera: camera-frame unit direction (xyz) and cone radius (w).
@group(0) @binding(3) var<storage, read> table: array<vec4<f32>>;
// The training photos' 8-bit RGB bytes, back to back in training order, 4 to a word (little end first).
@group(0) @binding(4) var<storage, read> pixels: array<u32>;
@group(0) @binding(5) var<storage, read_write> rays: array<f32>;
@group(0) @binding(6) var<storage, read_write> latent_idx: array<u32>;
@group(0) @binding(7) var<storage, read_write> jitter: array<f32>;
@group(0) @binding(8) var<storage, read_write> target_rgb: array<f32>;

// rng.rs pcg: the PCG hash (Jarzynski and Olano 2020).
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// rng.rs step_key / draw.
fn step_key(seed_lo: u32, seed_hi: u32, step: u32) -> u32 {
    return pcg(pcg(pcg(seed_hi) ^ seed_lo) ^ step);
}

fn draw(key: u32, ray: u32, stream: u32) -> u32 {
    return pcg(key ^ pcg(ray ^ pcg(stream)));
}

// rng.rs mul_hi: the high word of a * b from 16-bit halves (no 64-bit integers in WGSL).
fn mul_hi(a: u32, b: u32) -> u32 {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    return p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
}

// rng.rs unit: [0, 1) from the top 24 bits.
fn unit(h: u32) -> f32 {
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

// The byte at index b of the packed RGB bytes.
fn pixel_byte(b: u32) -> f32 {
    return f32((pixels[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu);
}

@compute @workgroup_size(64)
fn sample_batch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 64u);
    if (i >= p.n_rays) { return; }
    let key = step_key(p.seed_lo, p.seed_hi, p.step);
    let g = mul_hi(draw(key, i, 0u), p.total);
    // The photo k with cum[k] <= g < cum[k + 1] (data.rs partition_point); at most 32 halvings.
    var lo = 0u;
    var hi = p.n_photos;
    for (var it = 0u; it < 32u && hi - lo > 1u; it++) {
        let mid = (lo + hi) >> 1u;
        if (cum[mid] <= g) { lo = mid; } else { hi = mid; }
    }
    let k = lo;
    let in_photo = g - cum[k];
    let r0 = photos[5u * k];
    let r1 = photos[5u * k + 1u];
    let r2 = photos[5u * k + 2u];
    let o = photos[5u * k + 3u];
    let info = bitcast<vec4<u32>>(photos[5u * k + 4u]);
    let dr = table[info.y + in_photo];
    let dc = dr.xyz;
    let w = 8u * i;
    rays[w] = o.x;
    rays[w + 1u] = o.y;
    rays[w + 2u] = o.z;
    rays[w + 3u] = dot(r0.xyz, dc);
    rays[w + 4u] = dot(r1.xyz, dc);
    rays[w + 5u] = dot(r2.xyz, dc);
    rays[w + 6u] = dr.w;
    rays[w + 7u] = o.w;
    latent_idx[i] = k;
    for (var l = 0u; l < p.nlev; l++) {
        jitter[i * p.nlev + l] = unit(draw(key, i, 1u + l));
    }
    let b = 3u * g;
    target_rgb[3u * i] = pixel_byte(b) / 255.0;
    target_rgb[3u * i + 1u] = pixel_byte(b + 1u) / 255.0;
    target_rgb[3u * i + 2u] = pixel_byte(b + 2u) / 255.0;
}
