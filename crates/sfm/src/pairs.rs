//! Image pair selection (work in progress).
