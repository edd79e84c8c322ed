// atomic_cas.wgsl: gradient scatter on any WebGPU adapter: the f32 lives as its bits in an
// atomic<u32>, added by a compare-and-swap loop. A kernel that includes this declares
// `var<storage, read_write> grad: array<GradWord>;`.
alias GradWord = atomic<u32>;

fn grad_add(i: u32, v: f32) {
    var old = atomicLoad(&grad[i]);
    loop {
        let r = atomicCompareExchangeWeak(&grad[i], old, bitcast<u32>(bitcast<f32>(old) + v));
        if (r.exchanged) { break; }
        old = r.old_value;
    }
}
