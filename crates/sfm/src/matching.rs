//! Descriptor matching: nearest neighbours with Lowe's ratio test (Lowe 2004 §7.1) and a mutual
//! (cross) check, the way COLMAP's `SiftMatchingOptions` does it.
//!
//! Conventions: a descriptor `d` (RootSIFT, `u8`) is dequantised to `d / 512` and renormalised
//! to unit L2 norm; the distance between two descriptors is the angle `acos(a·b)` in radians (as
//! COLMAP), computed from dot products of blocks of descriptors with one `sgemm`
//! (`matrixmultiply`). A match `(ia, ib)` indexes `a.keypoints` and `b.keypoints`.

use crate::features::Features;
use rayon::prelude::*;

/// Matching options (defaults follow COLMAP's `SiftMatchingOptions`).
#[derive(Clone, Debug)]
pub struct MatchOptions {
    /// Lowe's ratio: keep a match when `best < ratio * second_best` (angles).
    pub ratio: f32,
    /// Largest angle between matched unit descriptors, radians.
    pub max_distance: f32,
    /// Keep only mutual nearest neighbours (each passes the ratio test in its direction).
    pub cross_check: bool,
}

impl Default for MatchOptions {
    fn default() -> Self {
        Self {
            ratio: 0.8,
            max_distance: 0.7,
            cross_check: true,
        }
    }
}

/// How [`match_pairs`] matches a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// Exact nearest neighbours by blocked sgemm (every descriptor against every other).
    BruteForce,
    /// [`guided`] matching when both photos have at least `min_features` features, brute force
    /// otherwise.
    Guided {
        /// Words of the coarse vocabulary.
        words: usize,
        /// Each database descriptor is listed under this many nearest words.
        multi_assign: usize,
        min_features: usize,
    },
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher::Guided {
            words: 256,
            multi_assign: 8,
            min_features: 1024,
        }
    }
}

/// Matches of one image pair: `matches[k] = (index in features[i], index in features[j])`.
#[derive(Clone, Debug)]
pub struct PairMatches {
    pub i: usize,
    pub j: usize,
    pub matches: Vec<(u32, u32)>,
}

/// Rows of descriptors per sgemm block.
const BLOCK: usize = 256;
/// Descriptor length.
const DIM: usize = 128;

/// Descriptors as a row-major `n x 128` f32 matrix of unit rows.
pub(crate) fn to_unit_f32(desc: &[[u8; 128]]) -> Vec<f32> {
    let mut out = Vec::with_capacity(desc.len() * DIM);
    for d in desc {
        let n2: u32 = d.iter().map(|&v| v as u32 * v as u32).sum();
        let inv = if n2 > 0 {
            1.0 / (n2 as f32).sqrt()
        } else {
            0.0
        };
        out.extend(d.iter().map(|&v| v as f32 * inv));
    }
    out
}

/// `c (m x n) = a (m x 128) * b (n x 128)^T`, all row-major.
pub(crate) fn dot_block(a: &[f32], b: &[f32], c: &mut [f32]) {
    let m = a.len() / DIM;
    let n = b.len() / DIM;
    assert_eq!(c.len(), m * n);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the pointers cover m*128, n*128 and m*n elements with the given strides.
    unsafe {
        matrixmultiply::sgemm(
            m,
            DIM,
            n,
            1.0,
            a.as_ptr(),
            DIM as isize,
            1,
            b.as_ptr(),
            1,
            DIM as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Best and second-best dot product and the best index.
#[derive(Clone, Copy, Debug)]
struct Top2 {
    d1: f32,
    d2: f32,
    idx: u32,
}

impl Top2 {
    const EMPTY: Top2 = Top2 {
        d1: -1.0,
        d2: -1.0,
        idx: u32::MAX,
    };
    #[cfg(test)]
    fn push(&mut self, d: f32, i: u32) {
        if d > self.d1 {
            self.d2 = self.d1;
            self.d1 = d;
            self.idx = i;
        } else if d > self.d2 {
            self.d2 = d;
        }
    }
    fn merge(&mut self, o: &Top2) {
        if o.d1 > self.d1 {
            self.d2 = self.d1.max(o.d2);
            self.d1 = o.d1;
            self.idx = o.idx;
        } else {
            self.d2 = self.d2.max(o.d1);
        }
    }
    /// Passes the distance and ratio tests on angles (COLMAP `FindBestMatchesOneWay`).
    fn accept(&self, opts: &MatchOptions) -> Option<u32> {
        if self.idx == u32::MAX {
            return None;
        }
        let a1 = self.d1.clamp(-1.0, 1.0).acos();
        let a2 = self.d2.clamp(-1.0, 1.0).acos();
        (a1 <= opts.max_distance && a1 < opts.ratio * a2).then_some(self.idx)
    }
}

/// Best two values of a row and the index of the best, in three branch-free passes (max,
/// first index of the max, max of the rest) that vectorise.
fn row_top2(row: &[f32]) -> Top2 {
    let d1 = lane_max(row);
    let Some(idx) = row.iter().position(|&d| d == d1) else {
        return Top2::EMPTY;
    };
    let d2 = lane_max(&row[..idx]).max(lane_max(&row[idx + 1..]));
    Top2 {
        d1,
        d2,
        idx: idx as u32,
    }
}

/// Maximum of a slice (at least -1) with 16 independent lanes, so that it vectorises.
#[inline]
fn lane_max(v: &[f32]) -> f32 {
    let mut acc = [-1f32; 16];
    let chunks = v.chunks_exact(16);
    let rest = chunks.remainder();
    for ch in chunks {
        for k in 0..16 {
            acc[k] = if ch[k] > acc[k] { ch[k] } else { acc[k] };
        }
    }
    let mut m = rest.iter().fold(-1f32, |m, &d| if d > m { d } else { m });
    for a in acc {
        m = if a > m { a } else { m };
    }
    m
}

/// Matches two feature sets: nearest neighbour by descriptor angle, Lowe's ratio test, maximum
/// distance and (if `cross_check`) the mutual check. Returns `(index in a, index in b)` sorted
/// by the index in `a`.
pub fn match_pair(a: &Features, b: &Features, opts: &MatchOptions) -> Vec<(u32, u32)> {
    let fa = to_unit_f32(&a.descriptors);
    let fb = to_unit_f32(&b.descriptors);
    match_unit(&fa, &fb, opts)
}

/// [`match_pair`] on unit f32 descriptor matrices.
pub(crate) fn match_unit(fa: &[f32], fb: &[f32], opts: &MatchOptions) -> Vec<(u32, u32)> {
    let (na, nb) = (fa.len() / DIM, fb.len() / DIM);
    if na == 0 || nb == 0 {
        return Vec::new();
    }
    let blocks: Vec<(Vec<Top2>, Vec<Top2>)> = fa
        .par_chunks(BLOCK * DIM)
        .enumerate()
        .map_init(Vec::new, |buf: &mut Vec<f32>, (bi, blk)| {
            // One dot-product buffer per worker, reused: fresh 8 MB buffers per block cost
            // as much in page faults as the sgemm itself.
            let m = blk.len() / DIM;
            if buf.len() < m * nb {
                buf.resize(m * nb, 0.0);
            }
            let c = &mut buf[..m * nb];
            dot_block(blk, fb, c);
            let mut rows = vec![Top2::EMPTY; m];
            // Column top-2 as separate arrays, updated with selects so the loop vectorises.
            let nc = if opts.cross_check { nb } else { 0 };
            let (mut c1, mut c2, mut ci) = (vec![-1f32; nc], vec![-1f32; nc], vec![u32::MAX; nc]);
            for (r, row) in c.chunks_exact(nb).enumerate() {
                rows[r] = row_top2(row);
                if opts.cross_check {
                    let gi = (bi * BLOCK + r) as u32;
                    for (((d1, d2), idx), &d) in
                        c1.iter_mut().zip(c2.iter_mut()).zip(ci.iter_mut()).zip(row)
                    {
                        let gt = d > *d1;
                        *d2 = if gt { *d1 } else { d2.max(d) };
                        *idx = if gt { gi } else { *idx };
                        *d1 = if gt { d } else { *d1 };
                    }
                }
            }
            let cols: Vec<Top2> = c1
                .into_iter()
                .zip(c2)
                .zip(ci)
                .map(|((d1, d2), idx)| Top2 { d1, d2, idx })
                .collect();
            (rows, cols)
        })
        .collect();
    let mut cols = vec![Top2::EMPTY; if opts.cross_check { nb } else { 0 }];
    let mut rows = Vec::with_capacity(na);
    for (r, c) in blocks {
        rows.extend(r);
        for (acc, o) in cols.iter_mut().zip(&c) {
            acc.merge(o);
        }
    }
    let back: Vec<Option<u32>> = cols.iter().map(|c| c.accept(opts)).collect();
    rows.iter()
        .enumerate()
        .filter_map(|(ia, t)| {
            let ib = t.accept(opts)?;
            if opts.cross_check && back[ib as usize] != Some(ia as u32) {
                return None;
            }
            Some((ia as u32, ib))
        })
        .collect()
}

/// Matches every listed pair `(i, j)` of `features` in parallel, with a progress bar, by
/// `matcher`. Pairs whose indices are out of range give no matches. Memory: the features, one
/// [`guided::WordIndex`] per photo (a few hundred kB) and per worker the blocks of one pair; no
/// descriptor matrix of all photos.
pub fn match_pairs(
    features: &[Features],
    pairs: &[(usize, usize)],
    opts: &MatchOptions,
    matcher: Matcher,
) -> Vec<PairMatches> {
    let guided_setup = match matcher {
        Matcher::Guided {
            words,
            multi_assign,
            min_features,
        } if pairs.iter().any(|&(i, j)| {
            [i, j].iter().all(|&k| {
                features
                    .get(k)
                    .is_some_and(|f| f.descriptors.len() >= min_features)
            })
        }) =>
        {
            let vocab = guided::Vocabulary::train(features, words, 40_000);
            let index: Vec<Option<guided::WordIndex>> = features
                .par_iter()
                .map(|f| {
                    (f.descriptors.len() >= min_features)
                        .then(|| vocab.index(&f.descriptors, multi_assign))
                })
                .collect();
            Some(index)
        }
        _ => None,
    };
    let pb = flythrough_core::progress::bar(pairs.len() as u64, "sfm: matching pairs");
    let out = pairs
        .par_iter()
        .map(|&(i, j)| {
            let matches = match (features.get(i), features.get(j)) {
                (Some(a), Some(b)) => {
                    let idx = guided_setup
                        .as_ref()
                        .and_then(|ix| Some((ix[i].as_ref()?, ix[j].as_ref()?)));
                    match idx {
                        Some((ia, ib)) => guided::match_pair(a, ia, b, ib, opts),
                        None => match_pair(a, b, opts),
                    }
                }
                _ => Vec::new(),
            };
            pb.inc(1);
            PairMatches { i, j, matches }
        })
        .collect();
    pb.finish_and_clear();
    out
}

/// Vocabulary-guided approximate nearest neighbours (an inverted file over a coarse k-means
/// quantiser, as in Jégou, Douze & Schmid 2011 "Product quantization for nearest neighbor search"
/// §4 IVF, and FLANN's hierarchical k-means with one level; Muja & Lowe 2009): every descriptor
/// of the query photo is compared only with the descriptors of the other photo that list the
/// query's nearest word among their `multi_assign` nearest words. Lowe's ratio test and the mutual
/// check are applied as in the exact matcher, on the candidates found. With 256 words and 4
/// assignments a query is compared with about 3 % of the other photo (clusters are uneven) and 96-97 %
/// of the brute-force matches are kept on real phone frames (`tests/features_real.rs`).
pub mod guided {
    use super::{DIM, MatchOptions, Top2, dot_block, row_top2, to_unit_f32};
    use crate::features::Features;

    /// Unit word centroids, `k x 128` row-major.
    pub struct Vocabulary {
        words: Vec<f32>,
    }

    /// One photo's descriptors listed by word (CSR): `primary` by their nearest word, `multi` by
    /// each of their `multi_assign` nearest words.
    pub struct WordIndex {
        primary_off: Vec<u32>,
        primary: Vec<u32>,
        multi_off: Vec<u32>,
        multi: Vec<u32>,
    }

    impl Vocabulary {
        /// Spherical k-means on up to `samples` descriptors spread evenly over the photos.
        pub fn train(features: &[Features], words: usize, samples: usize) -> Self {
            let total: usize = features.iter().map(|f| f.descriptors.len()).sum();
            let step = total.div_ceil(samples.max(1)).max(1);
            let mut pick: Vec<[u8; 128]> = Vec::new();
            let mut k = 0usize;
            for f in features {
                for d in &f.descriptors {
                    if k.is_multiple_of(step) {
                        pick.push(*d);
                    }
                    k += 1;
                }
            }
            Vocabulary {
                words: crate::pairs::kmeans(&to_unit_f32(&pick), words, 5),
            }
        }

        pub fn len(&self) -> usize {
            self.words.len() / DIM
        }

        pub fn is_empty(&self) -> bool {
            self.words.is_empty()
        }

        /// The word lists of one photo's descriptors.
        pub fn index(&self, desc: &[[u8; 128]], multi_assign: usize) -> WordIndex {
            let k = self.len();
            let m = multi_assign.clamp(1, k.max(1));
            let unit = to_unit_f32(desc);
            let mut nearest: Vec<u32> = Vec::with_capacity(desc.len() * m);
            let mut c = Vec::new();
            for blk in unit.chunks(256 * DIM) {
                let rows = blk.len() / DIM;
                c.resize(rows * k, 0.0);
                dot_block(blk, &self.words, &mut c);
                for row in c.chunks_exact(k) {
                    // The m largest dot products, best first (insertion into a short list).
                    let mut best: Vec<(f32, u32)> = Vec::with_capacity(m + 1);
                    for (w, &d) in row.iter().enumerate() {
                        if best.len() < m || d > best[best.len() - 1].0 {
                            let pos = best.partition_point(|b| b.0 >= d);
                            best.insert(pos, (d, w as u32));
                            best.truncate(m);
                        }
                    }
                    nearest.extend(best.iter().map(|b| b.1));
                    for _ in best.len()..m {
                        nearest.push(u32::MAX);
                    }
                }
            }
            let csr = |entries: &mut dyn Iterator<Item = (u32, u32)>| {
                let list: Vec<(u32, u32)> = entries.filter(|e| e.0 != u32::MAX).collect();
                let mut off = vec![0u32; k + 1];
                for &(w, _) in &list {
                    off[w as usize + 1] += 1;
                }
                for w in 0..k {
                    off[w + 1] += off[w];
                }
                let mut fill = off.clone();
                let mut members = vec![0u32; list.len()];
                for &(w, i) in &list {
                    members[fill[w as usize] as usize] = i;
                    fill[w as usize] += 1;
                }
                (off, members)
            };
            let (primary_off, primary) =
                csr(&mut (0..desc.len()).map(|i| (nearest[i * m], i as u32)));
            let (multi_off, multi) =
                csr(&mut (0..desc.len() * m).map(|q| (nearest[q], (q / m) as u32)));
            WordIndex {
                primary_off,
                primary,
                multi_off,
                multi,
            }
        }
    }

    impl WordIndex {
        /// Descriptor comparisons of one direction of [`match_pair`] with `db` as the database:
        /// `Σ_w |primary_w| · |db.multi_w|` (brute force: `n_q · n_db`).
        pub fn comparisons(&self, db: &WordIndex) -> usize {
            (0..self.primary_off.len().saturating_sub(1))
                .map(|w| {
                    (self.primary_off[w + 1] - self.primary_off[w]) as usize
                        * (db.multi_off[w + 1] - db.multi_off[w]) as usize
                })
                .sum()
        }
    }

    /// Unit f32 rows of the listed descriptors into `out`.
    fn gather(desc: &[[u8; 128]], rows: &[u32], out: &mut Vec<f32>) {
        out.clear();
        for &r in rows {
            let d = &desc[r as usize];
            let n2: u32 = d.iter().map(|&v| v as u32 * v as u32).sum();
            let inv = if n2 > 0 {
                1.0 / (n2 as f32).sqrt()
            } else {
                0.0
            };
            out.extend(d.iter().map(|&v| v as f32 * inv));
        }
    }

    /// Best and second-best candidate of every descriptor of `q` among the descriptors of `db`
    /// that share its nearest word (one small sgemm per word).
    fn top2(q: &Features, iq: &WordIndex, db: &Features, idb: &WordIndex) -> Vec<Top2> {
        let mut out = vec![Top2::EMPTY; q.descriptors.len()];
        let (mut qa, mut da, mut c) = (Vec::new(), Vec::new(), Vec::new());
        let k = iq.primary_off.len().saturating_sub(1);
        for w in 0..k {
            let qs = &iq.primary[iq.primary_off[w] as usize..iq.primary_off[w + 1] as usize];
            let ds = &idb.multi[idb.multi_off[w] as usize..idb.multi_off[w + 1] as usize];
            if qs.is_empty() || ds.is_empty() {
                continue;
            }
            gather(&q.descriptors, qs, &mut qa);
            gather(&db.descriptors, ds, &mut da);
            c.resize(qs.len() * ds.len(), 0.0);
            dot_block(&qa, &da, &mut c);
            for (r, row) in c.chunks_exact(ds.len()).enumerate() {
                let t = row_top2(row);
                if t.idx != u32::MAX {
                    out[qs[r] as usize] = Top2 {
                        idx: ds[t.idx as usize],
                        ..t
                    };
                }
            }
        }
        out
    }

    /// [`super::match_pair`] with candidates from the word lists: nearest neighbour among the
    /// candidates, ratio test against the second-best candidate, maximum distance, mutual check.
    pub fn match_pair(
        a: &Features,
        ia: &WordIndex,
        b: &Features,
        ib: &WordIndex,
        opts: &MatchOptions,
    ) -> Vec<(u32, u32)> {
        let fwd = top2(a, ia, b, ib);
        let back: Vec<Option<u32>> = if opts.cross_check {
            top2(b, ib, a, ia).iter().map(|t| t.accept(opts)).collect()
        } else {
            Vec::new()
        };
        fwd.iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let j = t.accept(opts)?;
                if opts.cross_check && back[j as usize] != Some(i as u32) {
                    return None;
                }
                Some((i as u32, j))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{Features, Keypoint};

    fn random_features(n: usize, seed: u64) -> Features {
        let mut s = seed;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let descriptors: Vec<[u8; 128]> = (0..n)
            .map(|_| {
                let mut d = [0f32; 128];
                d.iter_mut().for_each(|v| *v = (next() % 1000) as f32);
                crate::features::rootsift_quantize(&mut d)
            })
            .collect();
        let keypoints = vec![
            Keypoint {
                x: 0.0,
                y: 0.0,
                scale: 1.0,
                orientation: 0.0
            };
            n
        ];
        Features {
            width: 10,
            height: 10,
            keypoints,
            descriptors,
        }
    }

    /// Brute force reference: the same rules with per-pair integer dot products.
    fn reference(a: &Features, b: &Features, opts: &MatchOptions) -> Vec<(u32, u32)> {
        let fa = to_unit_f32(&a.descriptors);
        let fb = to_unit_f32(&b.descriptors);
        let best = |x: &[f32], ys: &[f32]| {
            let mut t = Top2::EMPTY;
            for (j, y) in ys.chunks(DIM).enumerate() {
                t.push(x.iter().zip(y).map(|(p, q)| p * q).sum(), j as u32);
            }
            t.accept(opts)
        };
        let mut out = Vec::new();
        for (i, x) in fa.chunks(DIM).enumerate() {
            if let Some(j) = best(x, &fb)
                && best(&fb[j as usize * DIM..(j as usize + 1) * DIM], &fa) == Some(i as u32)
            {
                out.push((i as u32, j));
            }
        }
        out
    }

    #[test]
    fn blocked_sgemm_matching_equals_brute_force() {
        let a = random_features(600, 1);
        let mut b = random_features(500, 2);
        // Plant 200 near-copies of a's descriptors in b.
        for k in 0..200 {
            let mut d = a.descriptors[3 * k];
            d[k % 128] = d[k % 128].saturating_add(9);
            b.descriptors[2 * k] = d;
        }
        let opts = MatchOptions::default();
        let got = match_pair(&a, &b, &opts);
        let want = reference(&a, &b, &opts);
        assert_eq!(got, want);
        let planted = got
            .iter()
            .filter(|&&(i, j)| i % 3 == 0 && j % 2 == 0 && i / 3 == j / 2)
            .count();
        assert!(
            planted >= 195,
            "only {planted} of 200 planted matches found"
        );
        assert!(
            got.len() <= planted + 5,
            "{} matches, {planted} planted",
            got.len()
        );
    }

    #[test]
    fn empty_sets_give_no_matches() {
        let a = random_features(10, 3);
        let e = Features::default();
        assert!(match_pair(&a, &e, &MatchOptions::default()).is_empty());
        assert!(match_pair(&e, &a, &MatchOptions::default()).is_empty());
        let m = match_pairs(
            &[a, e],
            &[(0, 1), (0, 5)],
            &MatchOptions::default(),
            Matcher::default(),
        );
        assert_eq!(m.len(), 2);
        assert!(m.iter().all(|p| p.matches.is_empty()));
    }
}
