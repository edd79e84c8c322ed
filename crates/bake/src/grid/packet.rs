//! The packet march: eight rays stepped together in the lanes of AVX2 vectors (the ray packets of
//! Wald et al. 2001, "Interactive Rendering with Coherent Ray Tracing", applied to the grid march),
//! two such groups interleaved step by step (16 rays a packet).
//!
//! One iteration does all eight rays' position, contraction and speed (Barron et al. 2022, Eq. 10),
//! block and voxel, and the exit of an empty cube of blocks or an empty voxel, branch-free with
//! masks; the three kinds of skip are blended lane by lane, and only the lanes that look a sample
//! up leave the vectors (their 16-channel trilinear lookup and compositing, one lane at a time).
//! Every lane does the operations of [`Grid::march_step`] in the same order, without FMA: the
//! same bits as marching each ray alone (tested). The portable build and CPUs without AVX2 march
//! the rays interleaved instead ([`Grid::march_many`]), with the same results.

use super::MarchConstants;
#[cfg(target_arch = "x86_64")]
use super::expf::exp8;
use super::{BLOCK, CHANNELS, EMPTY, GEO_DIM, Grid, MarchState, RAW_EMPTY, RaySample, T_MIN};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m256, __m256i, _mm256_set1_epi32, _mm256_set1_ps};

/// Rays per lane group (the lanes of an AVX2 vector of `f32`): the rays that step in lockstep.
pub const LANES: usize = 8;
/// Lane groups marched interleaved, step by step: their iterations' dependency chains (the next
/// `t` waits on the lookups of this one) overlap in the CPU's pipeline.
const GROUPS: usize = 2;
/// Rays per packet.
pub const PACKET: usize = LANES * GROUPS;

impl Grid {
    /// March [`PACKET`] rays of the model's frame (unit directions) from `near`: exactly what
    /// [`Grid::march`] gives for each (the renderer calls it for neighbouring pixels).
    pub fn march_packet(
        &self,
        rays: [([f32; 3], [f32; 3]); PACKET],
        near: f32,
    ) -> [RaySample; PACKET] {
        #[cfg(target_arch = "x86_64")]
        if super::has_avx2_fma() {
            // SAFETY: the CPU has the features the function is compiled for (checked above).
            return unsafe { self.march_packet_avx2(rays, near) };
        }
        self.march_many(rays, near)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn march_packet_avx2(
        &self,
        rays: [([f32; 3], [f32; 3]); PACKET],
        near: f32,
    ) -> [RaySample; PACKET] {
        let c = self.march_constants();
        let k = Splats::new(self, &c);
        let mut groups: [Lanes; GROUPS] =
            std::array::from_fn(|g| Lanes::new(&rays[g * LANES..(g + 1) * LANES], near));
        loop {
            let mut any = false;
            for p in groups.iter_mut() {
                // SAFETY: this function runs with AVX2 and FMA (as `lanes_step` needs).
                any |= unsafe { self.lanes_step(&c, &k, p) };
            }
            if !any {
                break;
            }
        }
        std::array::from_fn(|i| {
            let p = &groups[i / LANES];
            let k = i % LANES;
            RaySample {
                features: p.feats[k],
                opacity: 1.0 - p.trans[k],
                depth: p.depth[k],
                lookups: p.lookups[k],
                steps: p.steps[k],
            }
        })
    }

    /// One iteration of the march of the lanes of `p`; `false` once none of them is marching.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn lanes_step(&self, c: &MarchConstants, k: &Splats, p: &mut Lanes) -> bool {
        use std::arch::x86_64::*;
        const N: usize = LANES;
        let Splats {
            zero,
            one,
            two,
            r,
            voxel,
            block_f,
            nb_i,
            nb_max,
            last_voxel,
            r_end,
            eps,
            step_c,
            nb_f,
            block_c,
        } = *k;
        let splat = |v: f32| _mm256_set1_ps(v);
        // Lanes out of iterations stop (as `march_step` does before counting one more).
        for (k, s) in p.steps.iter_mut().enumerate() {
            if *s >= c.max_steps {
                p.alive &= !(1 << k);
            }
            *s += (p.alive >> k) & 1;
        }
        if p.alive == 0 {
            return false;
        }
        // SAFETY (every load and store below): the arrays are 8 lanes of 4 bytes.
        let tv = unsafe { _mm256_loadu_ps(p.t.as_ptr()) };
        // The position and its contraction; the speed `‖J(x) d‖` (see `contracted_speed`).
        let x = [0, 1, 2].map(|a| _mm256_add_ps(p.o[a], _mm256_mul_ps(p.d[a], tv)));
        let mm = _mm256_add_ps(
            _mm256_add_ps(_mm256_mul_ps(x[0], x[0]), _mm256_mul_ps(x[1], x[1])),
            _mm256_mul_ps(x[2], x[2]),
        );
        let inside = _mm256_cmp_ps::<_CMP_LE_OQ>(mm, one);
        // Where every marching lane is inside the unit ball (most iterations indoors) the
        // contraction is the identity and the speed 1: the square roots and divisions of the
        // far field (the longest latency of an iteration) are left out.
        let all_inside = (_mm256_movemask_ps(inside) as u32 | !p.alive) & 0xFF == 0xFF;
        let (speed, y) = if all_inside {
            (one, x)
        } else {
            let m = _mm256_sqrt_ps(mm);
            let rc = _mm256_sub_ps(two, _mm256_div_ps(one, m));
            let a = _mm256_div_ps(rc, m);
            let xd = _mm256_add_ps(
                _mm256_add_ps(_mm256_mul_ps(x[0], p.d[0]), _mm256_mul_ps(x[1], p.d[1])),
                _mm256_mul_ps(x[2], p.d[2]),
            );
            let cs = _mm256_div_ps(xd, m);
            let cs2 = _mm256_mul_ps(cs, cs);
            let sp = _mm256_sqrt_ps(_mm256_add_ps(
                _mm256_mul_ps(
                    _mm256_mul_ps(a, a),
                    _mm256_max_ps(_mm256_sub_ps(one, cs2), zero),
                ),
                _mm256_div_ps(cs2, _mm256_mul_ps(mm, mm)),
            ));
            let far = _mm256_andnot_ps(inside, _mm256_cmp_ps::<_CMP_GE_OQ>(rc, r_end));
            p.alive &= !(_mm256_movemask_ps(far) as u32);
            let speed = _mm256_blendv_ps(_mm256_max_ps(sp, splat(1e-12)), one, inside);
            (
                speed,
                x.map(|xa| _mm256_blendv_ps(_mm256_mul_ps(xa, a), xa, inside)),
            )
        };
        // The block (clamped inside the grid), the voxel in it and the fractions.
        let mut b = [_mm256_setzero_si256(); 3];
        let mut i0 = [_mm256_setzero_si256(); 3];
        let mut f = [zero; 3];
        for ax in 0..3 {
            let g = _mm256_min_ps(
                _mm256_max_ps(
                    _mm256_mul_ps(_mm256_mul_ps(_mm256_add_ps(y[ax], two), splat(0.25)), r),
                    zero,
                ),
                r,
            );
            b[ax] = _mm256_min_epi32(_mm256_srli_epi32::<3>(_mm256_cvttps_epi32(g)), nb_max);
            let local = _mm256_sub_ps(g, _mm256_cvtepi32_ps(_mm256_slli_epi32::<3>(b[ax])));
            i0[ax] = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_max_ps(local, zero)), last_voxel);
            f[ax] = _mm256_sub_ps(local, _mm256_cvtepi32_ps(i0[ax]));
        }
        let block = _mm256_add_epi32(
            _mm256_mullo_epi32(_mm256_add_epi32(_mm256_mullo_epi32(b[2], nb_i), b[1]), nb_i),
            b[0],
        );
        let mut block_a = [0i32; N];
        let mut i0_a = [[0i32; N]; 3];
        let mut f_a = [[0f32; N]; 3];
        unsafe {
            _mm256_storeu_si256(block_a.as_mut_ptr() as *mut __m256i, block);
            for ax in 0..3 {
                _mm256_storeu_si256(i0_a[ax].as_mut_ptr() as *mut __m256i, i0[ax]);
                _mm256_storeu_ps(f_a[ax].as_mut_ptr(), f[ax]);
            }
        }
        // Per lane: the slot, the block distance, and whether the voxel is empty.
        let mut slot = [EMPTY; N];
        let mut dist_f = [0f32; N];
        let mut stored = [0i32; N];
        let mut empty_voxel = [0i32; N];
        for k in 0..N {
            let blk = block_a[k] as usize;
            slot[k] = self.index[blk];
            dist_f[k] = self.empty_dist[blk] as f32;
            if slot[k] != EMPTY {
                stored[k] = -1;
                let bit = ((i0_a[2][k] as usize * BLOCK + i0_a[1][k] as usize) * BLOCK)
                    + i0_a[0][k] as usize;
                let word = self.voxel_mask[slot[k] as usize * 8 + bit / 64];
                empty_voxel[k] = -(((word >> (bit % 64)) & 1 == 0) as i32);
            }
        }
        let (stored_v, empty_voxel_v, dist_v) = unsafe {
            (
                _mm256_castsi256_ps(_mm256_loadu_si256(stored.as_ptr() as *const __m256i)),
                _mm256_castsi256_ps(_mm256_loadu_si256(empty_voxel.as_ptr() as *const __m256i)),
                _mm256_loadu_ps(dist_f.as_ptr()),
            )
        };
        let empty_v = _mm256_xor_ps(stored_v, _mm256_castsi256_ps(_mm256_set1_epi32(-1)));
        // Inside the ball: the exit of the empty cube of blocks around an empty block, or of
        // an empty voxel of a stored block (`box_exit`).
        let kk = _mm256_sub_ps(dist_v, one);
        let side_vox = _mm256_blendv_ps(
            _mm256_mul_ps(_mm256_add_ps(_mm256_mul_ps(two, kk), one), block_f),
            one,
            stored_v,
        );
        let side = _mm256_mul_ps(side_vox, voxel);
        let mut e = splat(f32::INFINITY);
        for ax in 0..3 {
            let lo_vox = _mm256_blendv_ps(
                _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(b[ax]), kk), block_f),
                _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_slli_epi32::<3>(b[ax]), i0[ax])),
                stored_v,
            );
            let lo = _mm256_add_ps(splat(-2.0), _mm256_mul_ps(lo_vox, voxel));
            let face = _mm256_blendv_ps(
                lo,
                _mm256_add_ps(lo, side),
                _mm256_cmp_ps::<_CMP_GT_OQ>(p.inv_d[ax], zero),
            );
            let s = _mm256_mul_ps(_mm256_sub_ps(face, y[ax]), p.inv_d[ax]);
            // NaN (0 · ∞ on a face the ray runs along) never wins: `min` returns `e` then.
            e = _mm256_min_ps(s, e);
        }
        let exit = _mm256_max_ps(e, zero);
        let t_exit = _mm256_add_ps(
            tv,
            _mm256_add_ps(_mm256_min_ps(exit, _mm256_sub_ps(p.t_ball, tv)), eps),
        );
        let exits = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_LT_OQ>(mm, one),
            _mm256_or_ps(empty_v, empty_voxel_v),
        );
        // Outside: `k - 1.5` blocks of contracted length where the block distance is k >= 2;
        // beside stored blocks, two voxels at a time over empty ones.
        let skip = _mm256_mul_ps(
            _mm256_min_ps(_mm256_sub_ps(dist_v, splat(1.5)), nb_f),
            block_c,
        );
        // (`x / 1` is `x`: the divisions are left out where every lane is inside.)
        let t_skip = _mm256_add_ps(
            tv,
            if all_inside {
                skip
            } else {
                _mm256_div_ps(skip, speed)
            },
        );
        let skips = _mm256_cmp_ps::<_CMP_GE_OQ>(dist_v, two);
        let dtv = if all_inside {
            step_c
        } else {
            _mm256_div_ps(step_c, speed)
        };
        let t_blank = _mm256_add_ps(tv, _mm256_mul_ps(two, dtv));
        let t_new = _mm256_blendv_ps(
            _mm256_blendv_ps(_mm256_blendv_ps(tv, t_blank, empty_v), t_skip, skips),
            t_exit,
            exits,
        );
        let moved = _mm256_or_ps(_mm256_or_ps(exits, skips), empty_v);
        let moved_bits = _mm256_movemask_ps(moved) as u32;
        // Only lanes still marching take their new `t`.
        let mut t_next = [0f32; N];
        unsafe {
            _mm256_storeu_ps(t_next.as_mut_ptr(), t_new);
        }
        let update = p.alive & moved_bits;
        for (k, (t, next)) in p.t.iter_mut().zip(t_next).enumerate() {
            if update >> k & 1 == 1 {
                *t = next;
            }
        }
        // The lanes that look a sample up: their lookups one at a time, their densities and
        // alphas at once, their compositing one at a time.
        let look = p.alive & !moved_bits;
        if look == 0 {
            return true;
        }
        let mut vals = [[0f32; CHANNELS]; N];
        let mut raw = [RAW_EMPTY - 1.0; N];
        let mut bits = look;
        while bits != 0 {
            let k = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let i0k = [0, 1, 2].map(|ax| i0_a[ax][k] as usize);
            let fk = [0, 1, 2].map(|ax| f_a[ax][k]);
            vals[k] = self.interpolate(slot[k], i0k, fk);
            raw[k] = vals[k][0];
            p.lookups[k] += 1;
        }
        let mut alpha = [0f32; N];
        let mut dt = [0f32; N];
        unsafe {
            _mm256_storeu_ps(dt.as_mut_ptr(), dtv);
            let sg = exp8(_mm256_min_ps(_mm256_loadu_ps(raw.as_ptr()), splat(15.0)));
            let neg = _mm256_xor_ps(sg, splat(-0.0));
            let al = _mm256_sub_ps(one, exp8(_mm256_mul_ps(neg, dtv)));
            _mm256_storeu_ps(alpha.as_mut_ptr(), al);
        }
        let mut bits = look;
        while bits != 0 {
            let k = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let (v, alpha) = (&vals[k], alpha[k]);
            if v[0] >= RAW_EMPTY && alpha > 0.0 {
                let w = p.trans[k] * alpha;
                for j in 0..GEO_DIM {
                    p.feats[k][j] += w * v[1 + j];
                }
                p.depth[k] += w * p.t[k];
                p.trans[k] *= 1.0 - alpha;
                if p.trans[k] < T_MIN {
                    p.alive &= !(1 << k);
                    continue;
                }
            }
            p.t[k] += dt[k];
        }
        true
    }
}

/// The constants of the packet march, in every lane.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Splats {
    zero: __m256,
    one: __m256,
    two: __m256,
    r: __m256,
    voxel: __m256,
    block_f: __m256,
    nb_i: __m256i,
    nb_max: __m256i,
    last_voxel: __m256i,
    r_end: __m256,
    eps: __m256,
    step_c: __m256,
    nb_f: __m256,
    block_c: __m256,
}

#[cfg(target_arch = "x86_64")]
impl Splats {
    #[target_feature(enable = "avx2,fma")]
    fn new(g: &Grid, c: &MarchConstants) -> Splats {
        let splat = _mm256_set1_ps;
        let nb = g.blocks() as i32;
        Splats {
            zero: splat(0.0),
            one: splat(1.0),
            two: splat(2.0),
            r: splat(g.res as f32),
            voxel: splat(g.voxel()),
            block_f: splat(BLOCK as f32),
            nb_i: _mm256_set1_epi32(nb),
            nb_max: _mm256_set1_epi32(nb - 1),
            last_voxel: _mm256_set1_epi32(BLOCK as i32 - 1),
            r_end: splat(c.r_end),
            eps: splat(c.eps),
            step_c: splat(c.step_c),
            nb_f: splat(c.nb),
            block_c: splat(c.block_c),
        }
    }
}

/// The march of one group of [`LANES`] rays in progress: the rays in vectors, the state per lane.
#[cfg(target_arch = "x86_64")]
struct Lanes {
    o: [__m256; 3],
    d: [__m256; 3],
    inv_d: [__m256; 3],
    t_ball: __m256,
    t: [f32; LANES],
    trans: [f32; LANES],
    depth: [f32; LANES],
    feats: [[f32; GEO_DIM]; LANES],
    lookups: [u32; LANES],
    steps: [u32; LANES],
    /// Bit `k`: lane `k` is still marching.
    alive: u32,
}

#[cfg(target_arch = "x86_64")]
impl Lanes {
    fn new(rays: &[([f32; 3], [f32; 3])], near: f32) -> Lanes {
        let st: [MarchState; LANES] =
            std::array::from_fn(|k| MarchState::new(rays[k].0, rays[k].1, near));
        let lanes = |f: &dyn Fn(&MarchState) -> f32| {
            let a: [f32; LANES] = std::array::from_fn(|k| f(&st[k]));
            // SAFETY: SSE (all of x86-64) loads 8 floats as two halves: `a` is 8 floats.
            unsafe { std::mem::transmute::<[f32; LANES], __m256>(a) }
        };
        Lanes {
            o: [lanes(&|s| s.o[0]), lanes(&|s| s.o[1]), lanes(&|s| s.o[2])],
            d: [lanes(&|s| s.d[0]), lanes(&|s| s.d[1]), lanes(&|s| s.d[2])],
            inv_d: [
                lanes(&|s| s.inv_d[0]),
                lanes(&|s| s.inv_d[1]),
                lanes(&|s| s.inv_d[2]),
            ],
            t_ball: lanes(&|s| s.t_ball),
            t: [near; LANES],
            trans: [1.0; LANES],
            depth: [0.0; LANES],
            feats: [[0.0; GEO_DIM]; LANES],
            lookups: [0; LANES],
            steps: [0; LANES],
            alive: (1 << LANES) - 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::from_field;
    use super::*;

    /// Every ray of a packet gives exactly (bit for bit) what it gives marched alone: rays from
    /// inside and outside the unit ball, along the axes (zero direction components), through
    /// opaque and translucent blobs inside the ball and in the far field, into empty space.
    #[test]
    fn a_packet_of_rays_marches_as_each_alone() {
        // Blobs: opaque and translucent, inside the unit ball and in the far field.
        let blobs = [
            [0.4f32, -0.3, 0.2, 0.25, 14.0],
            [-0.5, 0.5, -0.4, 0.2, 2.0],
            [1.4, 1.2, 0.3, 0.3, 14.0],
            [-1.0, -1.3, 0.8, 0.4, 1.0],
        ];
        let field = |p: [f32; 3]| {
            let mut v = [0f32; CHANNELS];
            v[0] = -10.0;
            for (i, c) in blobs.iter().enumerate() {
                let r =
                    ((p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) + (p[2] - c[2]).powi(2)).sqrt();
                let dens = c[4] - 120.0 * (r / c[3] - 0.8).max(0.0);
                if dens > v[0] {
                    v[0] = dens;
                    v[1 + i] = 1.0 - r / c[3];
                    v[5 + i] = p[i % 3];
                }
            }
            v
        };
        let lo = [-10.0; CHANNELS];
        let scale = [25.0 / 255.0; CHANNELS];
        let g = from_field(128, lo, scale, |_, v| v.iter().any(|x| x[0] > -9.0), field);
        assert!(g.slots() > 0);
        let origins = [
            [0.05f32, 0.02, -0.03],
            [0.0, 0.0, 0.0],
            [0.7, -0.2, 0.5],
            [1.6, 0.3, -0.9],
        ];
        let n = 512;
        let dirs: Vec<[f32; 3]> = (0..n)
            .map(|i| {
                if i < 6 {
                    // The axes: two direction components exactly zero.
                    let mut d = [0f32; 3];
                    d[i % 3] = if i < 3 { 1.0 } else { -1.0 };
                    return d;
                }
                let z = 1.0 - 2.0 * (i as f32 + 0.5) / n as f32;
                let phi = i as f32 * 2.399_963;
                let r = (1.0 - z * z).sqrt();
                [r * phi.cos(), r * phi.sin(), z]
            })
            .collect();
        let (mut hits, mut partial, mut looked) = (0, 0, 0);
        for (oi, &o) in origins.iter().enumerate() {
            for (pi, chunk) in dirs.chunks(PACKET).enumerate() {
                // Packets of neighbouring directions and, every other one, scattered ones.
                let rays: [_; PACKET] = std::array::from_fn(|k| {
                    let d = if pi % 2 == 0 {
                        chunk[k]
                    } else {
                        dirs[(pi * 37 + k * 61 + oi) % n]
                    };
                    (o, d)
                });
                let near = [0.0, 0.05][pi % 2];
                let got = g.march_packet(rays, near);
                for (k, &(o, d)) in rays.iter().enumerate() {
                    let want = g.march(o, d, near);
                    assert_eq!(got[k], want, "origin {o:?}, direction {d:?}");
                    hits += (want.opacity > 0.99) as u32;
                    partial += (want.opacity > 0.05 && want.opacity < 0.95) as u32;
                    looked += want.lookups;
                }
            }
        }
        // The rays did meet every case: stopped on opaque blobs, passed through translucent ones.
        assert!(
            hits >= 50 && partial >= 10 && looked > 2_000,
            "{hits} {partial} {looked}"
        );
    }
}
