// mlp_tile.wgsl: the register-tile arithmetic shared by mlp_fwd and mlp_bwd_data (composed after
// mlp_common.wgsl, before the kernel). Each kernel declares its tile of rows in workgroup memory as
// `sh: array<vec4<f32>, ..>` (every row starts a vec4: MAXIN and MAXW are multiples of 4); `acc`
// holds an invocation's register tile, RB rows x 4 columns.

fn sh_get(q: u32) -> f32 { return sh[q >> 2u][q & 3u]; }
fn sh_set(q: u32, v: f32) { sh[q >> 2u][q & 3u] = v; }

// The register tile's sums over 4 of its inner index (the forward's inputs, the backward's
// outputs): row k2 reads the vec4 of its 4 values at q + k2 * stride (q a multiple of 4) in
// workgroup memory and adds x.x w0 + x.y w1 + x.z w2 + x.w w3, in that order (w0 .. w3: the 4
// weight rows for the tile's 4 columns).
fn fma4(acc: ptr<function, array<vec4<f32>, RB>>, q: u32, stride: u32, w0: vec4<f32>,
        w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) {
    for (var k2 = 0u; k2 < RB; k2++) {
        let x = sh[(q + k2 * stride) >> 2u];
        var s = (*acc)[k2];
        s += x.x * w0;
        s += x.y * w1;
        s += x.z * w2;
        s += x.w * w3;
        (*acc)[k2] = s;
    }
}

// One step of the inner index: row k2 adds its value at q + k2 * stride times the weight row w.
fn fma1(acc: ptr<function, array<vec4<f32>, RB>>, q: u32, stride: u32, w: vec4<f32>) {
    for (var k2 = 0u; k2 < RB; k2++) {
        (*acc)[k2] += sh_get(q + k2 * stride) * w;
    }
}
