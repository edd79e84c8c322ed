// composite.wgsl: colour, expected depth and opacity of each ray (CPU twins: model.rs color_act,
// render.rs composite). One invocation per ray. Writes floats [rgb, depth, opacity] to `out`
// and, when `pack` is set, the 8-bit RGBA pixel pix0 + ray (< npix) of `px` (round to nearest, NaN -> 0,
// as the render stage's to_u8).

@group(0) @binding(0) var<uniform> p: CompParams;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> px: array<u32>;

fn to_u8(v: f32) -> u32 {
    if (v != v) { return 0u; }
    return u32(clamp(v, 0.0, 1.0) * 255.0 + 0.5);
}

@compute @workgroup_size(64)
fn composite(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ray = flat_id(gid, nwg, 64u);
    if (ray >= p.n_rays) { return; }
    let n = p.n;
    let tb = ray * (n + 1u);
    var c = vec3<f32>(0.0);
    var depth = 0.0;
    var acc = 0.0;
    for (var i = 0u; i < n; i++) {
        let q = ray * n + i;
        let rgb = vec3<f32>(color_act(logits[3u * q]).x, color_act(logits[3u * q + 1u]).x,
                            color_act(logits[3u * q + 2u]).x);
        c += w[q] * rgb;
        var mid = t[tb + i];
        if (i + 1u < n) { mid = 0.5 * (t[tb + i] + t[tb + i + 1u]); }
        depth += w[q] * mid;
        acc += w[q];
    }
    out[5u * ray] = c.x;
    out[5u * ray + 1u] = c.y;
    out[5u * ray + 2u] = c.z;
    out[5u * ray + 3u] = depth;
    out[5u * ray + 4u] = acc;
    if (p.pack != 0u && p.pix0 + ray < p.npix) {
        px[p.pix0 + ray] = to_u8(c.x) | (to_u8(c.y) << 8u) | (to_u8(c.z) << 16u) | (255u << 24u);
    }
}
