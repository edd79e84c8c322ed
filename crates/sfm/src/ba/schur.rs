//! The reduced camera system of [`super::bundle_adjust`]: parameter-block layout, block-sparse
//! assembly of `S = A − W C⁻¹ Wᵀ` by image rows in parallel, and its factorisation, dense
//! ([`cholesky_solve`]) or sparse (`faer`), chosen by size and fill (Triggs et al. 2000, §6.1;
//! Agarwal et al. 2010, "Bundle adjustment in the large", for the sparse Schur complement).

use super::{BaData, BaOptions, BaSeconds, SchurSolver, residual_and_jacobians, robust};
use nalgebra::{DMatrix, DVector, Matrix3, SMatrix, SVector, Vector3, Vector6};
use rayon::prelude::*;
use std::collections::HashMap;

/// A column with no parameter block.
pub(super) const NONE: usize = usize::MAX;

/// Parameter blocks of the reduced camera system: 6 columns `(δω, δt)` per free image in image
/// order, then 3 columns `(f, k1, k2)` per camera with refined intrinsics (a column that is not
/// refined is pinned: zero Jacobian, unit diagonal, so its step is exactly 0).
pub(super) struct Layout {
    /// Per image: its block or [`NONE`] (fixed).
    pub(super) pose_blk: Vec<usize>,
    /// Per pose block: its image.
    pub(super) pose_img: Vec<usize>,
    /// Per camera: its block or [`NONE`].
    pub(super) intr_blk: Vec<usize>,
    /// Per camera: which of `(f, k1, k2)` are refined.
    pub(super) intr_mask: Vec<[bool; 3]>,
    /// Per block: first column and size.
    pub(super) off: Vec<usize>,
    pub(super) sz: Vec<usize>,
    pub(super) nc: usize,
}

impl Layout {
    pub(super) fn new(n_img: usize, n_cam: usize, opts: &BaOptions) -> Layout {
        let mut l = Layout {
            pose_blk: vec![NONE; n_img],
            pose_img: Vec::new(),
            intr_blk: vec![NONE; n_cam],
            intr_mask: vec![[false; 3]; n_cam],
            off: Vec::new(),
            sz: Vec::new(),
            nc: 0,
        };
        for i in 0..n_img {
            if !opts.fixed_images.get(i).copied().unwrap_or(false) {
                l.pose_blk[i] = l.off.len();
                l.pose_img.push(i);
                l.off.push(l.nc);
                l.sz.push(6);
                l.nc += 6;
            }
        }
        for c in 0..n_cam {
            let mask = opts.refine_intrinsics.get(c).copied().unwrap_or([false; 3]);
            if mask.iter().any(|&m| m) {
                l.intr_blk[c] = l.off.len();
                l.intr_mask[c] = mask;
                l.off.push(l.nc);
                l.sz.push(3);
                l.nc += 3;
            }
        }
        l
    }
    pub(super) fn n_blocks(&self) -> usize {
        self.sz.len()
    }
}

/// Observations in point-major order, and per image. Within a point the observations of free
/// photos come first, by pose block, so the pairs `(i, k ≥ i)` of the Schur complement are a
/// suffix of that range.
pub(super) struct ObsIndex {
    /// Observations of point `j` are `flat[ptr[j]..ptr[j + 1]]` (indices into `BaData::obs`),
    /// those of free photos `flat[ptr[j]..free_end[j]]`.
    pub(super) ptr: Vec<usize>,
    pub(super) free_end: Vec<usize>,
    pub(super) flat: Vec<usize>,
    /// Point and pose block ([`NONE`] for a fixed photo) of each flat position.
    pub(super) point: Vec<usize>,
    pub(super) blk: Vec<usize>,
    /// Per image: its flat positions.
    pub(super) by_image: Vec<Vec<usize>>,
}

impl ObsIndex {
    pub(super) fn new(data: &BaData, layout: &Layout) -> ObsIndex {
        let n_pts = data.points.len();
        let mut ptr = vec![0usize; n_pts + 1];
        for o in &data.obs {
            ptr[o.point + 1] += 1;
        }
        for j in 0..n_pts {
            ptr[j + 1] += ptr[j];
        }
        let mut fill = ptr.clone();
        let mut flat = vec![0usize; data.obs.len()];
        for (k, o) in data.obs.iter().enumerate() {
            flat[fill[o.point]] = k;
            fill[o.point] += 1;
        }
        let blk_of = |k: usize| layout.pose_blk[data.obs[k].image];
        let mut free_end = vec![0usize; n_pts];
        let mut point = vec![0usize; data.obs.len()];
        for j in 0..n_pts {
            let r = &mut flat[ptr[j]..ptr[j + 1]];
            // Free photos by pose block (NONE = usize::MAX sorts last), stable otherwise.
            r.sort_by_key(|&k| blk_of(k));
            free_end[j] = ptr[j] + r.partition_point(|&k| blk_of(k) != NONE);
            point[ptr[j]..ptr[j + 1]].fill(j);
        }
        let blk: Vec<usize> = flat.iter().map(|&k| blk_of(k)).collect();
        let mut by_image = vec![Vec::new(); data.rotations.len()];
        for (f, &k) in flat.iter().enumerate() {
            by_image[data.obs[k].image].push(f);
        }
        ObsIndex {
            ptr,
            free_end,
            flat,
            point,
            blk,
            by_image,
        }
    }

    /// Flat positions of the free observations of point `j` whose pose block is at least `b`.
    fn free_from(&self, j: usize, b: usize) -> std::ops::Range<usize> {
        let r = self.ptr[j]..self.free_end[j];
        r.start + self.blk[r.clone()].partition_point(|&b2| b2 < b)..r.end
    }
}

/// A symmetric matrix over the parameter blocks: the upper block triangle stored by block rows
/// (columns ascending, the diagonal block first), each block dense and row-major.
#[derive(Clone)]
pub(super) struct BlockSym {
    pub(super) row_ptr: Vec<usize>,
    pub(super) col: Vec<usize>,
    /// Offset of each stored block in `vals` (one more entry than `col`).
    pub(super) val_at: Vec<usize>,
    pub(super) vals: Vec<f64>,
}

impl BlockSym {
    /// The pattern of the reduced camera system: blocks `(a, b)`, `a ≤ b`, of parameter blocks
    /// that appear together in some point's observations.
    pub(super) fn pattern(data: &BaData, layout: &Layout, idx: &ObsIndex) -> BlockSym {
        let nb = layout.n_blocks();
        let blocks_of = |f: usize| {
            let img = data.obs[idx.flat[f]].image;
            [
                layout.pose_blk[img],
                layout.intr_blk[data.image_camera[img]],
            ]
        };
        let mut rows: Vec<Vec<usize>> = layout
            .pose_img
            .par_iter()
            .map_init(
                || vec![NONE; nb],
                |mark, &i| {
                    let b = layout.pose_blk[i];
                    mark[b] = i;
                    let mut cols = vec![b];
                    for &f1 in &idx.by_image[i] {
                        let j = idx.point[f1];
                        let later = idx.free_from(j, b + 1);
                        for c in idx.blk[later]
                            .iter()
                            .copied()
                            .chain((idx.ptr[j]..idx.ptr[j + 1]).map(|f2| blocks_of(f2)[1]))
                        {
                            if c != NONE && c > b && mark[c] != i {
                                mark[c] = i;
                                cols.push(c);
                            }
                        }
                    }
                    cols.sort_unstable();
                    cols
                },
            )
            .collect();
        // Intrinsics rows: pairs of refined cameras that share a point.
        let n_pose = layout.pose_img.len();
        let mut intr_rows: Vec<std::collections::BTreeSet<usize>> = (n_pose..nb)
            .map(|b| std::collections::BTreeSet::from([b]))
            .collect();
        if nb > n_pose {
            let mut seen: Vec<usize> = Vec::new();
            for j in 0..data.points.len() {
                seen.clear();
                for f in idx.ptr[j]..idx.ptr[j + 1] {
                    let c = blocks_of(f)[1];
                    if c != NONE && !seen.contains(&c) {
                        seen.push(c);
                    }
                }
                for &a in &seen {
                    for &b in &seen {
                        if a < b {
                            intr_rows[a - n_pose].insert(b);
                        }
                    }
                }
            }
        }
        rows.extend(intr_rows.into_iter().map(|s| s.into_iter().collect()));
        let mut m = BlockSym {
            row_ptr: vec![0],
            col: Vec::new(),
            val_at: vec![0],
            vals: Vec::new(),
        };
        for (a, cols) in rows.iter().enumerate() {
            for &b in cols {
                m.col.push(b);
                m.val_at
                    .push(m.val_at.last().unwrap() + layout.sz[a] * layout.sz[b]);
            }
            m.row_ptr.push(m.col.len());
        }
        m.vals = vec![0.0; *m.val_at.last().unwrap()];
        m
    }

    /// Index of stored block `(a, b)`, `a ≤ b`.
    pub(super) fn find(&self, a: usize, b: usize) -> Option<usize> {
        let r = &self.col[self.row_ptr[a]..self.row_ptr[a + 1]];
        r.binary_search(&b).ok().map(|k| self.row_ptr[a] + k)
    }

    /// The camera block's own pattern within this one: per block row the diagonal block and the
    /// intrinsics blocks (`A = Σ w Jcᵀ Jc` couples an image only with itself and its camera).
    pub(super) fn camera_pattern(&self, layout: &Layout) -> BlockSym {
        let n_pose = layout.pose_img.len();
        let mut m = BlockSym {
            row_ptr: vec![0],
            col: Vec::new(),
            val_at: vec![0],
            vals: Vec::new(),
        };
        for a in 0..self.row_ptr.len() - 1 {
            for &b in &self.col[self.row_ptr[a]..self.row_ptr[a + 1]] {
                if b == a || b >= n_pose {
                    m.col.push(b);
                    m.val_at
                        .push(m.val_at.last().unwrap() + layout.sz[a] * layout.sz[b]);
                }
            }
            m.row_ptr.push(m.col.len());
        }
        m.vals = vec![0.0; *m.val_at.last().unwrap()];
        m
    }

    /// Disjoint mutable slices of `vals` (this pattern's values, taken out of `self` so that the
    /// pattern stays readable), one per block row.
    pub(super) fn rows_mut<'v>(&self, vals: &'v mut [f64]) -> Vec<&'v mut [f64]> {
        let mut out = Vec::with_capacity(self.row_ptr.len() - 1);
        let mut rest = vals;
        for a in 0..self.row_ptr.len() - 1 {
            let len = self.val_at[self.row_ptr[a + 1]] - self.val_at[self.row_ptr[a]];
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
            out.push(head);
            rest = tail;
        }
        out
    }

    /// The pose block rows keyed by image (`None` for a fixed image, which owns no block row), so
    /// that image rows can be assembled in parallel, each writing only its own row.
    pub(super) fn pose_rows_by_image<'v>(
        &self,
        vals: &'v mut [f64],
        layout: &Layout,
        n_img: usize,
    ) -> Vec<Option<&'v mut [f64]>> {
        let mut rows: Vec<Option<&mut [f64]>> = (0..n_img).map(|_| None).collect();
        for (b, r) in self
            .rows_mut(vals)
            .into_iter()
            .enumerate()
            .take(layout.pose_img.len())
        {
            rows[layout.pose_img[b]] = Some(r);
        }
        rows
    }

    /// Per block row: offsets of its blocks within the row's value slice, keyed by block column
    /// (written into `slot`, which must have one entry per parameter block).
    pub(super) fn fill_slots(&self, a: usize, slot: &mut [usize]) {
        let base = self.val_at[self.row_ptr[a]];
        for k in self.row_ptr[a]..self.row_ptr[a + 1] {
            slot[self.col[k]] = self.val_at[k] - base;
        }
    }

    /// Element `(p, p)` of diagonal block `a` (the first block of its row).
    pub(super) fn diag_index(&self, a: usize, size: usize, p: usize) -> usize {
        self.val_at[self.row_ptr[a]] + p * size + p
    }

    /// Stored nonzeros (upper triangle, diagonal blocks counted whole).
    pub(super) fn nonzeros(&self) -> usize {
        self.vals.len()
    }

    /// The lower triangle as a dense matrix (what [`cholesky_solve`] reads).
    pub(super) fn to_dense_lower(&self, layout: &Layout) -> DMatrix<f64> {
        let mut s = DMatrix::<f64>::zeros(layout.nc, layout.nc);
        for a in 0..self.row_ptr.len() - 1 {
            for k in self.row_ptr[a]..self.row_ptr[a + 1] {
                let b = self.col[k];
                let (sa, sb) = (layout.sz[a], layout.sz[b]);
                for p in 0..sa {
                    for q in 0..sb {
                        s[(layout.off[b] + q, layout.off[a] + p)] =
                            self.vals[self.val_at[k] + p * sb + q];
                    }
                }
            }
        }
        s
    }

    /// The lower triangle in compressed sparse columns: `(column pointers, row indices, for each
    /// entry its index in vals)`. Column `off[a] + p` holds rows `off[a] + q` (`q ≥ p`) of the
    /// diagonal block, then every row of the other blocks of block row `a` (the transposed upper
    /// triangle, by symmetry).
    /// 32-bit indices halve the index memory (the values are limited to 2³² entries, 32 GB).
    pub(super) fn csc_lower(&self, layout: &Layout) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
        assert!(
            self.vals.len() < u32::MAX as usize,
            "reduced camera system too large"
        );
        let mut col_ptr = vec![0u32];
        let mut row_idx = Vec::new();
        let mut gather = Vec::new();
        for a in 0..self.row_ptr.len() - 1 {
            let sa = layout.sz[a];
            for p in 0..sa {
                for k in self.row_ptr[a]..self.row_ptr[a + 1] {
                    let b = self.col[k];
                    let sb = layout.sz[b];
                    let q0 = if b == a { p } else { 0 };
                    for q in q0..sb {
                        row_idx.push((layout.off[b] + q) as u32);
                        gather.push((self.val_at[k] + p * sb + q) as u32);
                    }
                }
                col_ptr.push(row_idx.len() as u32);
            }
        }
        (col_ptr, row_idx, gather)
    }
}

/// `row[at..]` (a block with `C` columns, row-major) `+= s · m`.
pub(super) fn add_block<const R: usize, const C: usize>(
    row: &mut [f64],
    at: usize,
    s: f64,
    m: &SMatrix<f64, R, C>,
) {
    for p in 0..R {
        let r = &mut row[at + p * C..at + (p + 1) * C];
        for (q, v) in r.iter_mut().enumerate() {
            *v += s * m[(p, q)];
        }
    }
}

/// Zero the Jacobian columns of intrinsics that are not refined.
pub(super) fn mask_intrinsics(j: &mut SMatrix<f64, 2, 3>, mask: [bool; 3]) {
    for (q, &m) in mask.iter().enumerate() {
        if !m {
            j.column_mut(q).fill(0.0);
        }
    }
}

/// Per-thread sums for the intrinsics rows, which every image shares.
#[derive(Default)]
pub(super) struct IntrAcc {
    /// `(a, b)`, `a ≤ b` (intrinsics blocks) → 3x3 block.
    pub(super) m: HashMap<(usize, usize), Matrix3<f64>>,
    /// Intrinsics block → its gradient (or right-hand side) part.
    pub(super) g: HashMap<usize, Vector3<f64>>,
}

impl IntrAcc {
    pub(super) fn merge(mut self, other: IntrAcc) -> IntrAcc {
        for (k, v) in other.m {
            *self.m.entry(k).or_insert_with(Matrix3::zeros) += v;
        }
        for (k, v) in other.g {
            *self.g.entry(k).or_insert_with(Vector3::zeros) += v;
        }
        self
    }
}

/// The camera block `A = Σ w Jcᵀ Jc` and gradient `g_c = Σ w Jcᵀ r` (IRLS weights `w`), assembled
/// by image rows in parallel (each image owns its block row; the intrinsics rows are summed per
/// thread). Pinned intrinsics get a unit diagonal; the distortion prior is added.
pub(super) fn camera_block(
    data: &BaData,
    layout: &Layout,
    idx: &ObsIndex,
    sigma: f64,
    w_prior: f64,
    a: &mut BlockSym,
) -> DVector<f64> {
    let mut vals = std::mem::take(&mut a.vals);
    vals.fill(0.0);
    let nb = layout.n_blocks();
    let n_img = data.rotations.len();
    let shape = &*a;
    let rows = shape.pose_rows_by_image(&mut vals, layout, n_img);
    let (grads, acc) = rows
        .into_par_iter()
        .enumerate()
        .fold(
            || (Vec::new(), IntrAcc::default(), vec![NONE; nb]),
            |(mut grads, mut acc, mut slot), (i, mut row)| {
                let b = layout.pose_blk[i];
                let cam = data.image_camera[i];
                let ib = layout.intr_blk[cam];
                if row.is_some() {
                    shape.fill_slots(b, &mut slot);
                }
                let mut gp = Vector6::<f64>::zeros();
                let mut ai = Matrix3::<f64>::zeros();
                let mut gi = Vector3::<f64>::zeros();
                for &f in &idx.by_image[i] {
                    let o = &data.obs[idx.flat[f]];
                    let Some((res, jpose, mut jintr, _)) = residual_and_jacobians(
                        &data.intrinsics[cam],
                        &data.rotations[i],
                        &data.translations[i],
                        &data.points[o.point],
                        &o.xy,
                    ) else {
                        continue;
                    };
                    mask_intrinsics(&mut jintr, layout.intr_mask[cam]);
                    let (wt, _) = robust(res.norm_squared(), sigma);
                    if let Some(row) = row.as_deref_mut() {
                        add_block(row, slot[b], wt, &(jpose.transpose() * jpose));
                        if ib != NONE {
                            add_block(row, slot[ib], wt, &(jpose.transpose() * jintr));
                        }
                        gp += jpose.transpose() * res * wt;
                    }
                    if ib != NONE {
                        ai += jintr.transpose() * jintr * wt;
                        gi += jintr.transpose() * res * wt;
                    }
                }
                if b != NONE {
                    grads.push((b, gp));
                }
                if ib != NONE {
                    *acc.m.entry((ib, ib)).or_insert_with(Matrix3::zeros) += ai;
                    *acc.g.entry(ib).or_insert_with(Vector3::zeros) += gi;
                }
                (grads, acc, slot)
            },
        )
        .map(|(g, acc, _)| (g, acc))
        .reduce(
            || (Vec::new(), IntrAcc::default()),
            |mut x, y| {
                x.0.extend(y.0);
                (x.0, x.1.merge(y.1))
            },
        );
    a.vals = vals;
    let mut gc = DVector::<f64>::zeros(layout.nc);
    for (b, g) in grads {
        gc.rows_mut(layout.off[b], 6).copy_from(&g);
    }
    for (cam, &ib) in layout.intr_blk.iter().enumerate() {
        if ib == NONE {
            continue;
        }
        let mut m = acc.m.get(&(ib, ib)).copied().unwrap_or_else(Matrix3::zeros);
        let mut g = acc.g.get(&ib).copied().unwrap_or_else(Vector3::zeros);
        for q in 0..3 {
            if !layout.intr_mask[cam][q] {
                m[(q, q)] = 1.0;
            } else if q > 0 {
                // The zero-mean prior ½ w k² on k1, k2.
                m[(q, q)] += w_prior;
                g[q] += w_prior * data.intrinsics[cam][2 + q];
            }
        }
        let k = a.find(ib, ib).expect("diagonal block");
        let at = a.val_at[k];
        for p in 0..3 {
            for q in 0..3 {
                a.vals[at + p * 3 + q] = m[(p, q)];
            }
        }
        gc.rows_mut(layout.off[ib], 3).copy_from(&g);
    }
    gc
}

/// What a point contributes to the reduced camera system.
pub(super) struct PointLin {
    /// `C = Σ w Jpᵀ Jp` and `g_p = Σ w Jpᵀ r`.
    pub(super) c: Matrix3<f64>,
    pub(super) g: Vector3<f64>,
    /// Per refined camera seeing the point: the sum of the intrinsics rows of its observations'
    /// `W` (what every observation's intrinsics columns of the Schur complement need).
    pub(super) cams: Vec<(usize, Matrix3<f64>)>,
}

/// The point blocks ([`PointLin`]), and per observation (point-major) the coupling
/// `W = w Jcᵀ Jp` (9x3: pose rows, then intrinsics rows), zero for a point behind the camera.
pub(super) fn point_blocks(
    data: &BaData,
    layout: &Layout,
    idx: &ObsIndex,
    sigma: f64,
    w: &mut [SMatrix<f64, 9, 3>],
) -> Vec<PointLin> {
    let mut slices = Vec::with_capacity(data.points.len());
    let mut rest = w;
    for j in 0..data.points.len() {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(idx.ptr[j + 1] - idx.ptr[j]);
        slices.push(head);
        rest = tail;
    }
    slices
        .into_par_iter()
        .enumerate()
        .map(|(j, ws)| {
            let mut c = Matrix3::<f64>::zeros();
            let mut g = Vector3::<f64>::zeros();
            let mut cams: Vec<(usize, Matrix3<f64>)> = Vec::new();
            for (q, wq) in ws.iter_mut().enumerate() {
                let o = &data.obs[idx.flat[idx.ptr[j] + q]];
                let cam = data.image_camera[o.image];
                let Some((res, jpose, mut jintr, jpt)) = residual_and_jacobians(
                    &data.intrinsics[cam],
                    &data.rotations[o.image],
                    &data.translations[o.image],
                    &data.points[j],
                    &o.xy,
                ) else {
                    *wq = SMatrix::zeros();
                    continue;
                };
                mask_intrinsics(&mut jintr, layout.intr_mask[cam]);
                let (wt, _) = robust(res.norm_squared(), sigma);
                c += jpt.transpose() * jpt * wt;
                g += jpt.transpose() * res * wt;
                let mut jc = SMatrix::<f64, 2, 9>::zeros();
                jc.fixed_view_mut::<2, 6>(0, 0).copy_from(&jpose);
                jc.fixed_view_mut::<2, 3>(0, 6).copy_from(&jintr);
                *wq = jc.transpose() * jpt * wt;
                let ib = layout.intr_blk[cam];
                if ib != NONE {
                    let wi = wq.fixed_rows::<3>(6).into_owned();
                    match cams.iter_mut().find(|u| u.0 == ib) {
                        Some(u) => u.1 += wi,
                        None => {
                            // Usually one camera per point: no spare capacity.
                            cams.reserve_exact(1);
                            cams.push((ib, wi));
                        }
                    }
                }
            }
            PointLin { c, g, cams }
        })
        .collect()
}

/// The reduced camera system `S = A − Σ_j W_j C_j⁻¹ W_jᵀ` (written into `s`, which has `A`'s
/// pattern) and its right-hand side `b = −g_c + Σ_j W_j C_j⁻¹ g_j` (Triggs et al. §6.1), by image
/// rows in parallel: a free image `i` owns block row `i` and adds, for each of its observations of
/// point `j`, `W_ij C_j⁻¹ W_kjᵀ` for the free observations `(k, j)` with `k ≥ i` (a suffix of the
/// point's free range); the intrinsics columns use the point's per-camera sums of `W`, so they
/// cost `O(cameras)` per observation, and a fixed photo's observations only that.
#[allow(clippy::too_many_arguments)]
pub(super) fn reduced_system(
    data: &BaData,
    layout: &Layout,
    idx: &ObsIndex,
    w: &[SMatrix<f64, 9, 3>],
    pts: &[PointLin],
    cinvs: &[Option<Matrix3<f64>>],
    a: &BlockSym,
    gc: &DVector<f64>,
    s: &mut BlockSym,
) -> DVector<f64> {
    let mut vals = std::mem::take(&mut s.vals);
    vals.fill(0.0);
    let nb = layout.n_blocks();
    let n_img = data.rotations.len();
    let shape = &*s;
    let rows = shape.pose_rows_by_image(&mut vals, layout, n_img);
    let (rhs, acc) = rows
        .into_par_iter()
        .enumerate()
        .fold(
            || (Vec::new(), IntrAcc::default(), vec![NONE; nb]),
            |(mut rhs, mut acc, mut slot), (i, mut row)| {
                let b = layout.pose_blk[i];
                let ib = layout.intr_blk[data.image_camera[i]];
                if let Some(row) = row.as_deref_mut() {
                    shape.fill_slots(b, &mut slot);
                    // S starts as A (its blocks are a subset of S's pattern).
                    for k in a.row_ptr[b]..a.row_ptr[b + 1] {
                        let src = &a.vals[a.val_at[k]..a.val_at[k + 1]];
                        let at = slot[a.col[k]];
                        for (d, v) in row[at..at + src.len()].iter_mut().zip(src) {
                            *d += v;
                        }
                    }
                }
                let mut bp = Vector6::<f64>::zeros();
                let mut bi = Vector3::<f64>::zeros();
                let mut local: Vec<(usize, Matrix3<f64>)> = Vec::new();
                for &f1 in &idx.by_image[i] {
                    let j = idx.point[f1];
                    let Some(ci) = cinvs[j] else { continue };
                    let wc1 = w[f1] * ci;
                    let wcg = wc1 * pts[j].g;
                    bp += wcg.fixed_rows::<6>(0);
                    bi += wcg.fixed_rows::<3>(6);
                    if let Some(row) = row.as_deref_mut() {
                        let wc1p = wc1.fixed_rows::<6>(0).into_owned();
                        let later = idx.free_from(j, b);
                        for (w2, &b2) in w[later.clone()].iter().zip(&idx.blk[later]) {
                            let m = wc1p * w2.fixed_rows::<6>(0).transpose();
                            add_block(row, slot[b2], -1.0, &m);
                        }
                        for &(ib2, u) in &pts[j].cams {
                            add_block(row, slot[ib2], -1.0, &(wc1p * u.transpose()));
                        }
                    }
                    if ib != NONE {
                        for &(ib2, u) in &pts[j].cams {
                            if ib2 >= ib {
                                let m = wc1.fixed_rows::<3>(6) * u.transpose();
                                match local.iter_mut().find(|l| l.0 == ib2) {
                                    Some(l) => l.1 += m,
                                    None => local.push((ib2, m)),
                                }
                            }
                        }
                    }
                }
                if b != NONE {
                    rhs.push((b, bp));
                }
                if ib != NONE {
                    for (ib2, m) in local {
                        *acc.m.entry((ib, ib2)).or_insert_with(Matrix3::zeros) += m;
                    }
                    *acc.g.entry(ib).or_insert_with(Vector3::zeros) += bi;
                }
                (rhs, acc, slot)
            },
        )
        .map(|(r, acc, _)| (r, acc))
        .reduce(
            || (Vec::new(), IntrAcc::default()),
            |mut x, y| {
                x.0.extend(y.0);
                (x.0, x.1.merge(y.1))
            },
        );
    s.vals = vals;
    // The intrinsics rows: A's blocks, minus the per-thread sums.
    for r in layout.pose_img.len()..nb {
        for k in a.row_ptr[r]..a.row_ptr[r + 1] {
            let ks = s.find(r, a.col[k]).expect("A's pattern is within S's");
            let at = s.val_at[ks];
            for (d, v) in s.vals[at..s.val_at[ks + 1]]
                .iter_mut()
                .zip(&a.vals[a.val_at[k]..a.val_at[k + 1]])
            {
                *d += v;
            }
        }
    }
    let mut b = -gc;
    for (blk, v) in rhs {
        let mut seg = b.rows_mut(layout.off[blk], 6);
        seg += v;
    }
    for ((ia, ib), m) in acc.m {
        let k = s.find(ia, ib).expect("intrinsics block in the pattern");
        let at = s.val_at[k];
        for p in 0..3 {
            for q in 0..3 {
                s.vals[at + p * 3 + q] -= m[(p, q)];
            }
        }
    }
    for (ia, v) in acc.g {
        let mut seg = b.rows_mut(layout.off[ia], 3);
        seg += v;
    }
    b
}

/// The sparse factorisation's structure, analysed once per bundle adjustment (the pattern does
/// not change between iterations).
pub(super) struct SparseChol {
    pub(super) symbolic: faer::sparse::linalg::solvers::SymbolicLlt<u32>,
    pub(super) pattern: faer::sparse::SymbolicSparseColMat<u32>,
    /// Per stored entry of the lower triangle, its index in the block values.
    pub(super) gather: Vec<u32>,
}

impl SparseChol {
    pub(super) fn new(s: &BlockSym, layout: &Layout) -> Option<SparseChol> {
        let (col_ptr, row_idx, gather) = s.csc_lower(layout);
        let pattern = faer::sparse::SymbolicSparseColMat::new_checked(
            layout.nc, layout.nc, col_ptr, None, row_idx,
        );
        let symbolic = faer::sparse::linalg::solvers::SymbolicLlt::try_new(
            pattern.as_ref(),
            faer::Side::Lower,
        )
        .ok()?;
        Some(SparseChol {
            symbolic,
            pattern,
            gather,
        })
    }

    /// Solve `S x = b`; `None` when `S` is not positive definite.
    pub(super) fn solve(&self, s: &BlockSym, b: &DVector<f64>) -> Option<DVector<f64>> {
        use faer::linalg::solvers::Solve;
        let vals: Vec<f64> = self.gather.iter().map(|&g| s.vals[g as usize]).collect();
        let mat = faer::sparse::SparseColMatRef::new(self.pattern.as_ref(), &vals);
        let llt = faer::sparse::linalg::solvers::Llt::try_new_with_symbolic(
            self.symbolic.clone(),
            mat,
            faer::Side::Lower,
        )
        .ok()?;
        let mut x = faer::Mat::<f64>::from_fn(b.len(), 1, |i, _| b[i]);
        llt.solve_in_place(x.as_mut());
        let x = DVector::from_fn(b.len(), |i, _| x[(i, 0)]);
        x.iter().all(|v| v.is_finite()).then_some(x)
    }
}

/// One linearisation of the problem: what every damping attempt of an iteration reuses.
pub(super) struct Linearized<'a> {
    pub(super) data: &'a BaData,
    pub(super) layout: &'a Layout,
    pub(super) idx: &'a ObsIndex,
    pub(super) w: &'a [SMatrix<f64, 9, 3>],
    pub(super) pts: &'a [PointLin],
    pub(super) a: &'a BlockSym,
    pub(super) gc: &'a DVector<f64>,
}

impl Linearized<'_> {
    /// The Levenberg-Marquardt step for damping `lambda` (`H + λ diag(H)` on the full normal
    /// equations, applied to `C` per point and to `S`'s diagonal): the reduced camera system is
    /// assembled into `s`, factorised by `solver`, and the points are back-substituted,
    /// `δx_j = C_j⁻¹ (−g_j − W_jᵀ δc)`. Returns the camera step (layout columns) and each point's
    /// step (zero for fixed points), or `None` when `S` is not positive definite.
    pub(super) fn damped_step(
        &self,
        lambda: f64,
        fixed_points: &[bool],
        solver: SchurSolver,
        sparse: &mut Option<SparseChol>,
        s: &mut BlockSym,
        seconds: &mut BaSeconds,
    ) -> Option<(DVector<f64>, Vec<Vector3<f64>>)> {
        let (layout, idx) = (self.layout, self.idx);
        let t = std::time::Instant::now();
        let cinvs: Vec<Option<Matrix3<f64>>> = self
            .pts
            .par_iter()
            .enumerate()
            .map(|(j, pl)| {
                let c0 = &pl.c;
                if fixed_points.get(j).copied().unwrap_or(false) || idx.ptr[j + 1] == idx.ptr[j] {
                    return None;
                }
                let mut c = *c0;
                for q in 0..3 {
                    c[(q, q)] += lambda * (c0[(q, q)] + 1e-9);
                }
                c.try_inverse()
            })
            .collect();
        let b = reduced_system(
            self.data, layout, idx, self.w, self.pts, &cinvs, self.a, self.gc, s,
        );
        for (blk, &size) in layout.sz.iter().enumerate() {
            for p in 0..size {
                let d = s.diag_index(blk, size, p);
                s.vals[d] += lambda * (self.a.vals[self.a.diag_index(blk, size, p)] + 1e-9);
            }
        }
        seconds.schur += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let dc = if layout.nc == 0 {
            Some(DVector::zeros(0))
        } else if solver == SchurSolver::Dense {
            cholesky_solve(s.to_dense_lower(layout), &b)
        } else {
            if sparse.is_none() {
                *sparse = SparseChol::new(s, layout);
            }
            sparse.as_ref().and_then(|sp| sp.solve(s, &b))
        };
        seconds.solve += t.elapsed().as_secs_f64();
        let dc = dc?;
        let t = std::time::Instant::now();
        let data = self.data;
        let dx: Vec<Vector3<f64>> = (0..data.points.len())
            .into_par_iter()
            .map(|j| {
                let Some(cinv) = cinvs[j] else {
                    return Vector3::zeros();
                };
                let mut rhs = -self.pts[j].g;
                for f in idx.ptr[j]..idx.ptr[j + 1] {
                    let img = data.obs[idx.flat[f]].image;
                    let mut d9 = SVector::<f64, 9>::zeros();
                    let pb = layout.pose_blk[img];
                    if pb != NONE {
                        d9.fixed_rows_mut::<6>(0)
                            .copy_from(&dc.fixed_rows::<6>(layout.off[pb]));
                    }
                    let ib = layout.intr_blk[data.image_camera[img]];
                    if ib != NONE {
                        d9.fixed_rows_mut::<3>(6)
                            .copy_from(&dc.fixed_rows::<3>(layout.off[ib]));
                    }
                    rhs -= self.w[f].transpose() * d9;
                }
                cinv * rhs
            })
            .collect();
        seconds.step += t.elapsed().as_secs_f64();
        Some((dc, dx))
    }
}

/// Columns per block of [`cholesky_solve`].
const CHOL_BLOCK: usize = 96;

/// Solve `S x = b` for a symmetric positive definite `S` by a right-looking blocked Cholesky
/// factorisation `S = L Lᵀ` (Golub & Van Loan, *Matrix Computations*, 4th ed., Alg. 4.2.4 with
/// blocks): per block column, the unblocked factor of the diagonal block, a triangular solve of the
/// panel below it, and the trailing update `S₂₂ ← S₂₂ − L₂₁ L₂₁ᵀ` as one `dgemm`
/// (`matrixmultiply`), which carries almost all of the `n³/3` flops. Then forward and back
/// substitution. `None` when a pivot is not positive (not positive definite), like nalgebra's
/// `cholesky`.
pub fn cholesky_solve(mut s: DMatrix<f64>, b: &DVector<f64>) -> Option<DVector<f64>> {
    let n = s.nrows();
    assert_eq!(s.ncols(), n);
    assert_eq!(b.len(), n);
    let mut k = 0;
    while k < n {
        let kb = CHOL_BLOCK.min(n - k);
        // Unblocked Cholesky of the diagonal block (lower triangle, column by column).
        for j in k..k + kb {
            let mut d = s[(j, j)];
            for p in k..j {
                d -= s[(j, p)] * s[(j, p)];
            }
            if d <= 0.0 || !d.is_finite() {
                return None;
            }
            let d = d.sqrt();
            s[(j, j)] = d;
            for i in j + 1..k + kb {
                let mut v = s[(i, j)];
                for p in k..j {
                    v -= s[(i, p)] * s[(j, p)];
                }
                s[(i, j)] = v / d;
            }
        }
        let rest = n - k - kb;
        if rest > 0 {
            // Panel: rows below the block, L₂₁ = S₂₁ L₁₁⁻ᵀ (per row, forward substitution).
            for j in k..k + kb {
                let d = s[(j, j)];
                for p in k..j {
                    let l = s[(j, p)];
                    for i in k + kb..n {
                        let v = s[(i, p)];
                        s[(i, j)] -= v * l;
                    }
                }
                for i in k + kb..n {
                    s[(i, j)] /= d;
                }
            }
            // Trailing update S₂₂ −= L₂₁ L₂₁ᵀ. Column-major storage: (i, j) at i + j n.
            let ptr = s.as_mut_ptr();
            // SAFETY: L₂₁ occupies columns k..k+kb and S₂₂ columns k+kb..n of the same n x n
            // buffer, so the operands do not overlap; the strides describe in-bounds views.
            unsafe {
                let l21 = ptr.add(k + kb + k * n);
                let s22 = ptr.add(k + kb + (k + kb) * n);
                matrixmultiply::dgemm(
                    rest, kb, rest, -1.0, l21, 1, n as isize, l21, n as isize, 1, 1.0, s22, 1,
                    n as isize,
                );
            }
        }
        k += kb;
    }
    // L y = b, then Lᵀ x = y.
    let mut x = b.clone();
    for j in 0..n {
        let v = x[j] / s[(j, j)];
        x[j] = v;
        for i in j + 1..n {
            x[i] -= s[(i, j)] * v;
        }
    }
    for j in (0..n).rev() {
        let mut v = x[j];
        for i in j + 1..n {
            v -= s[(i, j)] * x[i];
        }
        x[j] = v / s[(j, j)];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}
