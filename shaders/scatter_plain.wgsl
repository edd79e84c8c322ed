// scatter_plain.wgsl: the hash-grid gradient scatter on any adapter: one `grad_add` per lane and
// feature (composed after an atomic variant, in front of hash_bwd).

fn scatter_feats(base: u32, v: array<f32, 8>, nf: u32, coarse: bool, lane: u32) {
    for (var f = 0u; f < 8u; f++) {
        if (f >= nf) { break; }
        grad_add(base + f, v[f]);
    }
}
