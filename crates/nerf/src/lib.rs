//! flythrough nerf stage (work in progress).
