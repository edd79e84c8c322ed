// raygen_camera.wgsl: rays through pixel centres of a COLMAP camera (CPU twin: data.rs camera_ray
// with core camera.rs pixel_to_normalized: radial-tangential distortion undone by Newton's method).
// One invocation per pixel pix0 + i (row-major): origin and unit direction in the model's frame,
// cone radius from the angular spacing of the neighbouring pixels' rays, exposure -> rays[8 i ..].

@group(0) @binding(0) var<uniform> p: CamParams;
@group(0) @binding(1) var<storage, read_write> rays: array<f32>;

// core camera.rs distort: radial-tangential (OpenCV / COLMAP) distortion of normalised coordinates.
fn distort(x: vec2<f32>) -> vec2<f32> {
    let r2 = x.x * x.x + x.y * x.y;
    let radial = 1.0 + p.k1 * r2 + p.k2 * r2 * r2;
    return vec2<f32>(x.x * radial + 2.0 * p.p1 * x.x * x.y + p.p2 * (r2 + 2.0 * x.x * x.x),
                     x.y * radial + p.p1 * (r2 + 2.0 * x.y * x.y) + 2.0 * p.p2 * x.x * x.y);
}

// core camera.rs distort_jacobian, inverted (None -> zero matrix).
fn distort_jac_inv(x: vec2<f32>) -> mat2x2<f32> {
    let r2 = x.x * x.x + x.y * x.y;
    let radial = 1.0 + p.k1 * r2 + p.k2 * r2 * r2;
    let a = p.k1 + 2.0 * p.k2 * r2;
    let off = 2.0 * x.x * x.y * a + 2.0 * p.p1 * x.x + 2.0 * p.p2 * x.y;
    let j00 = radial + 2.0 * x.x * x.x * a + 2.0 * p.p1 * x.y + 6.0 * p.p2 * x.x;
    let j11 = radial + 2.0 * x.y * x.y * a + 6.0 * p.p1 * x.y + 2.0 * p.p2 * x.x;
    let det = j00 * j11 - off * off;
    if (det == 0.0) { return mat2x2<f32>(0.0, 0.0, 0.0, 0.0); }
    // Column-major: columns (j11, -off) and (-off, j00), divided by det.
    return mat2x2<f32>(j11 / det, -off / det, -off / det, j00 / det);
}

// core camera.rs undistort: Newton's method on distort(xn) = xd from xn = xd (at most 20 steps in
// f32, quadratic convergence), keeping the best iterate.
fn undistort(xd: vec2<f32>) -> vec2<f32> {
    var xn = xd;
    var best = xd;
    var best_e = 3.0e38;
    for (var it = 0u; it < 20u; it++) {
        let r = distort(xn) - xd;
        let e = dot(r, r);
        if (e < best_e) { best_e = e; best = xn; }
        let step = distort_jac_inv(xn) * r;
        if (dot(step, step) == 0.0 && e != 0.0) { break; }
        xn -= step;
        if (dot(step, step) < 1e-16) { return xn; }
    }
    return best;
}

// distort(x0 + d) - distort(x0) without cancellation (d is a one-pixel offset, x0 up to ~1).
fn distort_diff(x0: vec2<f32>, d: vec2<f32>) -> vec2<f32> {
    let x1 = x0 + d;
    let r0 = dot(x0, x0);
    let dr = 2.0 * dot(x0, d) + dot(d, d);
    let r1 = r0 + dr;
    let rad1 = 1.0 + p.k1 * r1 + p.k2 * r1 * r1;
    let drad = p.k1 * dr + p.k2 * dr * (r1 + r0);
    let dxy = d.x * x1.y + x0.x * d.y;   // x1 y1 - x0 y0
    let tx = 2.0 * p.p1 * dxy + p.p2 * (dr + 2.0 * d.x * (x1.x + x0.x));
    let ty = p.p1 * (dr + 2.0 * d.y * (x1.y + x0.y)) + 2.0 * p.p2 * dxy;
    return d * rad1 + x0 * drad + vec2<f32>(tx, ty);
}

// undistort(xd0 + e) - undistort(xd0) given xn0 = undistort(xd0): Newton on the offset.
fn undistort_offset(xn0: vec2<f32>, e: vec2<f32>) -> vec2<f32> {
    var d = distort_jac_inv(xn0) * e;
    for (var it = 0u; it < 8u; it++) {
        let step = distort_jac_inv(xn0 + d) * (distort_diff(xn0, d) - e);
        d -= step;
        if (dot(step, step) <= 1e-14 * dot(d, d)) { break; }
    }
    return d;
}

// |normalize(v0 + (dl, 0)) - normalize(v0)| without cancellation.
fn unit_diff(v0: vec3<f32>, dl: vec2<f32>) -> f32 {
    let delta = vec3<f32>(dl, 0.0);
    let n0 = length(v0);
    let n1 = length(v0 + delta);
    let dn = (2.0 * dot(v0, delta) + dot(delta, delta)) / (n0 + n1);
    return length(delta / n1 - v0 * (dn / (n0 * n1)));
}

@compute @workgroup_size(64)
fn raygen_camera(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 64u);
    if (i >= p.n) { return; }
    let pix = p.pix0 + i;
    let x = f32(pix % p.width) + 0.5;
    let y = f32(pix / p.width) + 0.5;
    let xd = vec2<f32>((x - p.cx) / p.fx, (y - p.cy) / p.fy);
    let ex = vec2<f32>(1.0 / p.fx, 0.0);
    let ey = vec2<f32>(0.0, 1.0 / p.fy);
    var xn = xd;
    var dx = ex;
    var dy = ey;
    if (p.distorted != 0u) {
        xn = undistort(xd);
        dx = undistort_offset(xn, ex);
        dy = undistort_offset(xn, ey);
    }
    // data.rs camera_ray: cone radius = 2/sqrt(12) x the mean angle to the next pixel right and down.
    let v0 = vec3<f32>(xn, 1.0);
    let spacing = 0.5 * (unit_diff(v0, dx) + unit_diff(v0, dy));
    let dc = normalize(v0);
    let d = vec3<f32>(dot(p.rt0.xyz, dc), dot(p.rt1.xyz, dc), dot(p.rt2.xyz, dc));
    let o = 8u * i;
    rays[o] = p.origin.x;
    rays[o + 1u] = p.origin.y;
    rays[o + 2u] = p.origin.z;
    rays[o + 3u] = d.x;
    rays[o + 4u] = d.y;
    rays[o + 5u] = d.z;
    rays[o + 6u] = spacing * 0.5773502691896258;
    rays[o + 7u] = p.ev;
}
