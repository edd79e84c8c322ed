//! Descriptor matching: mutual nearest neighbours with Lowe's ratio test.

use crate::features::Features;

/// Matching options (defaults follow COLMAP's `SiftMatchingOptions`).
#[derive(Clone, Debug)]
pub struct MatchOptions {
    pub ratio: f32,
    pub max_distance: f32,
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

/// Matches of one image pair: `matches[k] = (index in features[i], index in features[j])`.
#[derive(Clone, Debug)]
pub struct PairMatches {
    pub i: usize,
    pub j: usize,
    pub matches: Vec<(u32, u32)>,
}

/// Matches two feature sets (work in progress: currently returns none).
pub fn match_pair(_a: &Features, _b: &Features, _opts: &MatchOptions) -> Vec<(u32, u32)> {
    Vec::new()
}

/// Matches every listed pair.
pub fn match_pairs(
    features: &[Features],
    pairs: &[(usize, usize)],
    opts: &MatchOptions,
) -> Vec<PairMatches> {
    pairs
        .iter()
        .map(|&(i, j)| PairMatches {
            i,
            j,
            matches: match_pair(&features[i], &features[j], opts),
        })
        .collect()
}
