// atomic_native.wgsl: gradient scatter with native f32 atomics (wgpu Features::SHADER_FLOAT32_ATOMIC,
// Vulkan VK_EXT_shader_atomic_float, Metal 3). A kernel that includes this declares
// `var<storage, read_write> grad: array<GradWord>;`.
alias GradWord = atomic<f32>;

fn grad_add(i: u32, v: f32) {
    atomicAdd(&grad[i], v);
}
