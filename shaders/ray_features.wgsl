// ray_features.wgsl: the colour head's per-ray inputs [direction encoding (27) | GLO latent (gd) |
// exposure encoding (9)] (CPU twins: encoding.rs dir_encoding, exposure_encoding; model.rs
// ray_features). One invocation per ray; the latent is row latent_idx[ray] of the table `glo`.

@group(0) @binding(0) var<uniform> p: FeatParams;
@group(0) @binding(1) var<storage, read> rays: array<f32>;
@group(0) @binding(2) var<storage, read> latent_idx: array<u32>;
@group(0) @binding(3) var<storage, read> glo: array<f32>;
@group(0) @binding(4) var<storage, read_write> feat: array<f32>;

@compute @workgroup_size(64)
fn ray_features(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ray = flat_id(gid, nwg, 64u);
    if (ray >= p.n_rays) { return; }
    let o = ray * p.width;
    let d = vec3<f32>(rays[8u * ray + 3u], rays[8u * ray + 4u], rays[8u * ray + 5u]);
    feat[o] = d.x;
    feat[o + 1u] = d.y;
    feat[o + 2u] = d.z;
    var k = 3u;
    for (var l = 0u; l < 4u; l++) {
        let f = f32(1u << l);
        for (var ax = 0u; ax < 3u; ax++) {
            let sc = sincos_acc(f * d[ax]);
            feat[o + k] = sc.x;
            feat[o + k + 12u] = sc.y;
            k++;
        }
    }
    // A latent row past the table (a caller bug) reads zeros instead of another buffer.
    let li = latent_idx[ray];
    let ok = li < arrayLength(&glo) / max(p.gd, 1u);
    for (var j = 0u; j < p.gd; j++) {
        var v = 0.0;
        if (ok) { v = glo[li * p.gd + j]; }
        feat[o + 27u + j] = v;
    }
    if (p.exposure != 0u) {
        let ev = rays[8u * ray + 7u];
        let e = o + 27u + p.gd;
        feat[e] = ev * 0.25;
        for (var l = 0u; l < 4u; l++) {
            let sc = sincos_acc(f32(1u << l) * PI * ev / 8.0);
            feat[e + 1u + l] = sc.x;
            feat[e + 5u + l] = sc.y;
        }
    }
}
