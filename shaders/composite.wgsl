// composite.wgsl: colour, expected depth and opacity of each ray (CPU twins: model.rs color_act,
// composite.rs composite). One workgroup of 64 per ray (flat workgroup index on a 2-D grid):
// invocation l sums the contiguous chunk [l c, (l + 1) c) of the ray's n samples, c = ceil(n / 64),
// then a fixed-order tree reduction in workgroup memory adds the 64 partial (rgb, depth, opacity)
// (deterministic, no atomics). Invocation 0 writes floats [rgb, depth, opacity] to `out` and, when
// `pack` is set, the 8-bit RGBA pixel pix0 + ray (< npix) of `px` (round to nearest, NaN -> 0, as
// the render stage's to_u8).

@group(0) @binding(0) var<uniform> p: CompParams;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> px: array<u32>;

const CP_WG: u32 = 64u;
var<workgroup> cp_cd: array<vec4<f32>, 64>; // rgb, depth
var<workgroup> cp_acc: array<f32, 64>;

fn to_u8(v: f32) -> u32 {
    if (v != v) { return 0u; }
    return u32(clamp(v, 0.0, 1.0) * 255.0 + 0.5);
}

@compute @workgroup_size(64)
fn composite(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    // Tests fill workgroup memory with NaN first (POISON_WG): a read of a slot nothing wrote
    // shows in the outputs, as it would on a device whose workgroup memory holds garbage.
    if (POISON_WG) {
        for (var q = lid; q < 64u; q += 64u) {
            cp_cd[q] = vec4<f32>(wg_nan());
            cp_acc[q] = wg_nan();
        }
        workgroupBarrier();
    }
    let ray = flat_group(wid, nwg);
    // Uniform across the workgroup: the barriers below stay in uniform control flow.
    if (ray >= p.n_rays) { return; }
    let n = p.n;
    let tb = ray * (n + 1u);
    let ch = (n + CP_WG - 1u) / CP_WG;
    let i0 = min(lid * ch, n);
    let i1 = min(i0 + ch, n);
    var c = vec3<f32>(0.0);
    var depth = 0.0;
    var acc = 0.0;
    for (var i = i0; i < i1; i++) {
        let q = ray * n + i;
        let rgb = vec3<f32>(color_act(logits[3u * q]).x, color_act(logits[3u * q + 1u]).x,
                            color_act(logits[3u * q + 2u]).x);
        c += w[q] * rgb;
        var mid = t[tb + i];
        if (i + 1u < n) { mid = 0.5 * (t[tb + i] + t[tb + i + 1u]); }
        depth += w[q] * mid;
        acc += w[q];
    }
    cp_cd[lid] = vec4<f32>(c, depth);
    cp_acc[lid] = acc;
    workgroupBarrier();
    for (var s = CP_WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            cp_cd[lid] = cp_cd[lid] + cp_cd[lid + s];
            cp_acc[lid] = cp_acc[lid] + cp_acc[lid + s];
        }
        workgroupBarrier();
    }
    if (lid != 0u) { return; }
    let r = cp_cd[0];
    out[5u * ray] = r.x;
    out[5u * ray + 1u] = r.y;
    out[5u * ray + 2u] = r.z;
    out[5u * ray + 3u] = r.w;
    out[5u * ray + 4u] = cp_acc[0];
    if (p.pack != 0u && p.pix0 + ray < p.npix) {
        px[p.pix0 + ray] = to_u8(r.x) | (to_u8(r.y) << 8u) | (to_u8(r.z) << 16u) | (255u << 24u);
    }
}
