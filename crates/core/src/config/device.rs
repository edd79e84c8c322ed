//! `device` of `[train]` and `[render]`: where the NeRF runs (`flythrough run --device` overrides
//! both). The GPU back end is `crates/nerf/src/gpu` on `crates/gpu` (wgpu).
use serde::{Deserialize, Serialize};

/// `[train] device` / `[render] device`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// A hardware GPU (Vulkan, Metal, DX12; discrete first) when there is one, else the CPU. Never
    /// a software rasteriser such as llvmpipe/lavapipe.
    #[default]
    Auto,
    /// The CPU kernels.
    Cpu,
    /// The best GPU adapter there is, a software one included; an error when there is none.
    Gpu,
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu),
            _ => Err(format!("device {s:?}: expected auto, cpu or gpu")),
        }
    }
}

pub(super) const DOC: &str = "Where the NeRF runs: \"auto\" (a hardware GPU through wgpu when there is one, else the CPU;\nnever a software rasteriser), \"cpu\", or \"gpu\" (any GPU adapter, software ones included; an error\nwhen there is none). `flythrough run --device` overrides it. Not part of the stage's config hash.";
