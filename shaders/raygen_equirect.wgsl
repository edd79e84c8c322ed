// raygen_equirect.wgsl: rays of a levelled equirectangular (360°) camera (CPU twin: render crate
// cameras.rs Equirect::ray and pixel_radius). Pixel (x, y) (centres at +0.5) of a W x H frame:
// longitude 2 pi (x / W - 1/2), latitude pi (1/2 - y / H), direction
// cos(lat) sin(lon) right + cos(lat) cos(lon) forward + sin(lat) up; cone radius
// (2 / sqrt 12) (pi / H) sqrt(max(cos lat, 1e-3)) per pixel row.

@group(0) @binding(0) var<uniform> p: EquiParams;
@group(0) @binding(1) var<storage, read_write> rays: array<f32>;

@compute @workgroup_size(64)
fn raygen_equirect(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 64u);
    if (i >= p.n) { return; }
    let pix = p.pix0 + i;
    let x = f32(pix % p.width) + 0.5;
    let y = f32(pix / p.width) + 0.5;
    let lon = 2.0 * PI * (x / f32(p.width) - 0.5);
    let lat = PI * (0.5 - y / f32(p.height));
    let sl = sincos_acc(lon);
    let sp = sincos_acc(lat);
    let d = normalize(p.right.xyz * (sp.y * sl.x) + p.forward.xyz * (sp.y * sl.y) + p.up.xyz * sp.x);
    let radius = 0.5773502691896258 * PI / f32(p.height) * sqrt(max(sp.y, 1e-3));
    let o = 8u * i;
    rays[o] = p.origin.x;
    rays[o + 1u] = p.origin.y;
    rays[o + 2u] = p.origin.z;
    rays[o + 3u] = d.x;
    rays[o + 4u] = d.y;
    rays[o + 5u] = d.z;
    rays[o + 6u] = radius;
    rays[o + 7u] = p.ev;
}
