//! SIFT features with RootSIFT descriptors (work in progress).
