//! Descriptor matching: mutual nearest neighbours with Lowe's ratio test (work in progress).
