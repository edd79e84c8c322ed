//! Image pair selection: exhaustive for small sets, sequential neighbours plus retrieval otherwise.

use crate::features::Features;

/// Pair selection options.
#[derive(Clone, Debug)]
pub struct PairOptions {
    pub exhaustive_max_images: usize,
    pub sequential_overlap: usize,
    pub retrieval_k: usize,
}

impl Default for PairOptions {
    fn default() -> Self {
        Self {
            exhaustive_max_images: 60,
            sequential_overlap: 10,
            retrieval_k: 10,
        }
    }
}

/// Pairs `(i, j)` with `i < j` to match (work in progress: exhaustive + sequential only).
pub fn select_pairs(features: &[Features], opts: &PairOptions) -> Vec<(usize, usize)> {
    let n = features.len();
    let mut out = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            if n <= opts.exhaustive_max_images || j - i <= opts.sequential_overlap {
                out.push((i, j));
            }
        }
    }
    out
}
