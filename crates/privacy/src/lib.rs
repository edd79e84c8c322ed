//! flythrough privacy stage (work in progress).
