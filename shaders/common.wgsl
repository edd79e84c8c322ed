// common.wgsl: constants and scalar math shared by every NeRF kernel. Each function names its CPU
// twin in crates/nerf (the kernels are checked against those twins on fresh random inputs).
// Composed at build time in front of each kernel file (crates/nerf/src/gpu/shaders.rs).

const PRIME_Y: u32 = 2654435761u;   // kernels/hashgrid.rs PRIME_Y (Instant-NGP)
const PRIME_Z: u32 = 805459861u;    // kernels/hashgrid.rs PRIME_Z
const F32_EPS: f32 = 1.1920929e-7;  // stepfun::EPS
const FAR: f32 = 1e6;               // coord::FAR
const RGB_PADDING: f32 = 0.001;     // model::RGB_PADDING
const PI: f32 = 3.14159265358979;
const NONE: u32 = 0xffffffffu;      // "absent" offset in parameter tables

// Flat invocation index of a 1-D launch spread over a 2-D grid (flythrough_gpu::Gpu::grid).
fn flat_id(gid: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
    return gid.x + gid.y * nwg.x * wg;
}

// Flat workgroup index of a 2-D grid of workgroups.
fn flat_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// sin and cos with Cody-Waite reduction by pi/2 (three-part constant) and Cephes' minimax
// polynomials on [-pi/4, pi/4]: about 1e-7 absolute for |x| < 1e4, independent of the driver's
// built-ins (Vulkan only promises 2^-11 absolute on [-pi, pi]).
fn sincos_acc(x: f32) -> vec2<f32> {
    let k = round(x * 0.636619772367581);
    let r = ((x - k * 1.5703125) - k * 4.837512969970703125e-4) - k * 7.54978995489188216e-8;
    let z = r * r;
    let s = r + r * z * ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1);
    let c = 1.0 - 0.5 * z + z * z * ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2);
    let q = u32(i32(k) & 3);
    if (q == 0u) { return vec2<f32>(s, c); }
    if (q == 1u) { return vec2<f32>(c, -s); }
    if (q == 2u) { return vec2<f32>(-s, -c); }
    return vec2<f32>(-c, s);
}

// kernels/hashgrid.rs erf: Abramowitz & Stegun 7.1.26.
fn erf_as(x0: f32) -> f32 {
    let s = sign(x0);
    let x = abs(x0);
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let poly = t * (0.2548296 + t * (-0.28449674 + t * (1.4214137 + t * (-1.453152 + t * 1.0614054))));
    return s * (1.0 - poly * exp(-x * x));
}

// kernels/hashgrid.rs level_weight: Zip-NeRF down-weighting erf(1 / sqrt(8 sigma^2 N^2)).
fn level_weight(sigma: f32, res: f32) -> f32 {
    if (sigma > 0.0) {
        let x = 1.0 / (1.4142135 * 2.0 * sigma * res);
        if (x >= 4.0) { return 1.0; }
        return erf_as(x);
    }
    return 1.0;
}

// coord::contract (mip-NeRF 360 Eq. 10).
fn contract(x: vec3<f32>) -> vec3<f32> {
    let m2 = dot(x, x);
    if (m2 <= 1.0) { return x; }
    let m = sqrt(m2);
    return x * ((2.0 - 1.0 / m) / m);
}

// coord::contract_scale: det(J)^(1/3) of the contraction.
fn contract_scale(x: vec3<f32>) -> f32 {
    let m2 = dot(x, x);
    if (m2 <= 1.0) { return 1.0; }
    let m = sqrt(m2);
    let det = (2.0 * m - 1.0) * (2.0 * m - 1.0) / (m2 * m2 * m2);
    return exp2(log2(det) / 3.0);
}

// coord::s_to_t (mip-NeRF 360 Eq. 11).
fn s_to_t(s: f32, near: f32) -> f32 {
    return 1.0 / (s * (1.0 / FAR) + (1.0 - s) / near);
}

// model::trunc_exp.
fn trunc_exp(x: f32) -> f32 {
    return exp(min(x, 15.0));
}

// model::color_act: padded sigmoid and its derivative.
fn color_act(x: f32) -> vec2<f32> {
    let s = 1.0 / (1.0 + exp(-x));
    return vec2<f32>(s * (1.0 + 2.0 * RGB_PADDING) - RGB_PADDING, (1.0 + 2.0 * RGB_PADDING) * s * (1.0 - s));
}

// kernels/hashgrid.rs level_infos(): resolution in the low 31 bits, dense flag in the top bit.
fn level_res(info: u32) -> u32 { return info & 0x7fffffffu; }
fn level_dense(info: u32) -> bool { return (info >> 31u) != 0u; }

// kernels/hashgrid.rs corners(): table entry of corner c of the cell holding p, and the cell's
// local coordinates t (weights prod(d ? t : 1 - t)).
struct Cell { i: vec3<u32>, t: vec3<f32> }

fn grid_cell(p: vec3<f32>, res: u32) -> Cell {
    let s = f32(res);
    let x = clamp(p, vec3<f32>(0.0), vec3<f32>(1.0)) * s;
    let c = min(vec3<u32>(x), vec3<u32>(res - 1u));
    return Cell(c, x - vec3<f32>(c));
}

fn corner_entry(cell: Cell, c: u32, res: u32, dense: bool, mask: u32) -> u32 {
    let d = vec3<u32>(c & 1u, (c >> 1u) & 1u, (c >> 2u) & 1u);
    let v = cell.i + d;
    if (dense) {
        let stride = res + 1u;
        return v.x + v.y * stride + v.z * stride * stride;
    }
    return (v.x ^ (v.y * PRIME_Y) ^ (v.z * PRIME_Z)) & mask;
}

fn corner_weight(cell: Cell, c: u32) -> f32 {
    let wx = select(1.0 - cell.t.x, cell.t.x, (c & 1u) != 0u);
    let wy = select(1.0 - cell.t.y, cell.t.y, ((c >> 1u) & 1u) != 0u);
    let wz = select(1.0 - cell.t.z, cell.t.z, ((c >> 2u) & 1u) != 0u);
    return wx * wy * wz;
}
