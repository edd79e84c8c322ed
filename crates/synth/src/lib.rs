//! flythrough synth stage (work in progress).
