//! flythrough sfm stage (work in progress).
