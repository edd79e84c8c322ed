//! The bake stage: the trained NeRF baked into a representation that renders in real time on a
//! CPU, a GPU or in a browser (see [`grid`] for the representation and the march, [`bake`] for how
//! the field is sampled, [`model`] for the file, [`gpu`] for the wgpu renderer).

pub mod bake;
pub mod eval;
pub mod finetune;
pub mod gpu;
pub mod grid;
pub mod model;
pub mod stage;

pub use model::{BakedModel, BakedOutput};
pub use stage::BakeStage;
