// scatter_subgroup.wgsl: the hash-grid gradient scatter with a subgroup pre-reduction (adapters
// with subgroups; composed after an atomic variant, in front of hash_bwd).
//
// At the coarse (dense) levels neighbouring samples of a ray share a cell, so many lanes of a
// subgroup add to the same table entry, and atomics on one address serialise. There, the lanes
// peel off by entry: in each of up to PEEL_ROUNDS rounds, the remaining lanes whose entry equals
// the first remaining lane's sum their values with subgroupAdd and the first of them (the lane
// whose unique index `lane` equals its subgroupBroadcastFirst; naga has no subgroupElect) adds
// the sum; lanes left after the rounds add alone. Every lane's value is added exactly once
// whichever lanes a driver runs together, so the result is the plain scatter's up to the order
// of the f32 additions (which atomics never fixed). The fine, hashed levels spread over the
// table and scatter plainly.

const PEEL_ROUNDS: u32 = 4u;

fn scatter_feats(base: u32, v: array<f32, 8>, nf: u32, coarse: bool, lane: u32) {
    var todo = coarse;
    for (var round = 0u; round < PEEL_ROUNDS; round++) {
        if (todo) {
            let lead = subgroupBroadcastFirst(base);
            if (base == lead) {
                let first = subgroupBroadcastFirst(lane) == lane;
                for (var f = 0u; f < 8u; f++) {
                    if (f >= nf) { break; }
                    let s = subgroupAdd(v[f]);
                    if (first) {
                        grad_add(base + f, s);
                    }
                }
                todo = false;
            }
        }
    }
    if (todo || !coarse) {
        for (var f = 0u; f < 8u; f++) {
            if (f >= nf) { break; }
            grad_add(base + f, v[f]);
        }
    }
}
