//! flythrough capture stage (work in progress).
