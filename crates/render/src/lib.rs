//! flythrough render stage (work in progress).
