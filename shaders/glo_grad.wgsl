// glo_grad.wgsl: the GLO latents' gradient (CPU twin: model.rs backward's d_latent and train.rs's
// scatter into the latent table). One invocation per ray: the colour head's input gradient of the
// latent columns, summed over the ray's n samples, is added to row latent_idx[ray] of `grad`.

@group(0) @binding(0) var<uniform> p: GloParams;
@group(0) @binding(1) var<storage, read> latent_idx: array<u32>;
@group(0) @binding(2) var<storage, read> dxg: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<GradWord>;

@compute @workgroup_size(64)
fn glo_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ray = flat_id(gid, nwg, 64u);
    if (ray >= p.n_rays) { return; }
    let li = latent_idx[ray];
    // A latent row past the table (a caller bug) scatters nothing instead of into another buffer.
    if (p.gd > 0u && li >= arrayLength(&grad) / p.gd) { return; }
    for (var j = 0u; j < p.gd; j++) {
        var sum = 0.0;
        for (var r = 0u; r < p.n; r++) {
            sum += dxg[(ray * p.n + r) * p.gd + j];
        }
        grad_add(li * p.gd + j, sum);
    }
}
