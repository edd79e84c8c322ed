// raygen_camera.wgsl: rays through pixel centres of a COLMAP camera (CPU twin: data.rs camera_ray
// with core camera.rs pixel_to_normalized: radial-tangential distortion undone by fixed-point
// iteration). One invocation per pixel pix0 + i (row-major): origin and unit direction in the
// model's frame, cone radius, exposure -> rays[8 i ..].

struct CamParams {
    fx: f32, fy: f32, cx: f32, cy: f32,
    k1: f32, k2: f32, p1: f32, p2: f32,
    width: u32, pix0: u32, n: u32, distorted: u32,
    radius: f32, ev: f32, _p0: f32, _p1: f32,
    origin: vec4<f32>,       // camera centre in the model frame
    rt0: vec4<f32>,          // rows of R^T (camera-to-world rotation)
    rt1: vec4<f32>,
    rt2: vec4<f32>,
}

@group(0) @binding(0) var<uniform> p: CamParams;
@group(0) @binding(1) var<storage, read_write> rays: array<f32>;

fn distort(x: vec2<f32>) -> vec2<f32> {
    let r2 = x.x * x.x + x.y * x.y;
    let radial = 1.0 + p.k1 * r2 + p.k2 * r2 * r2;
    return vec2<f32>(x.x * radial + 2.0 * p.p1 * x.x * x.y + p.p2 * (r2 + 2.0 * x.x * x.x),
                     x.y * radial + p.p1 * (r2 + 2.0 * x.y * x.y) + 2.0 * p.p2 * x.x * x.y);
}

@compute @workgroup_size(64)
fn raygen_camera(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 64u);
    if (i >= p.n) { return; }
    let pix = p.pix0 + i;
    let x = f32(pix % p.width) + 0.5;
    let y = f32(pix / p.width) + 0.5;
    let xd = vec2<f32>((x - p.cx) / p.fx, (y - p.cy) / p.fy);
    var xn = xd;
    if (p.distorted != 0u) {
        for (var it = 0u; it < 100u; it++) {
            let next = xd - (distort(xn) - xn);
            let dd = next - xn;
            xn = next;
            if (dot(dd, dd) < 1e-16) { break; }
        }
    }
    let dc = vec3<f32>(xn, 1.0);
    let d = normalize(vec3<f32>(dot(p.rt0.xyz, dc), dot(p.rt1.xyz, dc), dot(p.rt2.xyz, dc)));
    let o = 8u * i;
    rays[o] = p.origin.x;
    rays[o + 1u] = p.origin.y;
    rays[o + 2u] = p.origin.z;
    rays[o + 3u] = d.x;
    rays[o + 4u] = d.y;
    rays[o + 5u] = d.z;
    rays[o + 6u] = p.radius;
    rays[o + 7u] = p.ev;
}
