//! Which adapter to use: a pure ranking over adapter descriptions (unit-tested without any GPU), and
//! the wgpu enumeration that feeds it.

use serde::Serialize;

/// What the caller accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Selection {
    /// A hardware GPU (discrete first, then integrated, virtual, other), never a software
    /// rasteriser such as llvmpipe/lavapipe, SwiftShader or WARP. `[train] device = "auto"`.
    Hardware,
    /// The best adapter there is, software included. `device = "gpu"`.
    Any,
}

/// Kind of adapter, as wgpu reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdapterKind {
    Discrete,
    Integrated,
    Virtual,
    Cpu,
    Other,
}

/// One adapter as the pipeline describes it (`stage.json`'s `adapter`, the log line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdapterDesc {
    /// e.g. `NVIDIA H200`, `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// `vulkan`, `metal`, `dx12`, `gl`.
    pub backend: String,
    /// Driver name and version (`NVIDIA 550.54`, `llvmpipe Mesa 22.3.6`).
    pub driver: String,
    pub kind: AdapterKind,
    /// A CPU rasteriser (never picked by [`Selection::Hardware`]).
    pub software: bool,
    /// Whether it runs compute shaders with storage buffers (GL ES 3.0 adapters do not).
    #[serde(skip)]
    pub compute: bool,
}

impl std::fmt::Display for AdapterDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.backend, self.driver)
    }
}

/// Names of software rasterisers (some report `DeviceType::Other`/`IntegratedGpu`, not `Cpu`).
const SOFTWARE_NAMES: [&str; 5] = [
    "llvmpipe",
    "lavapipe",
    "swiftshader",
    "softpipe",
    "microsoft basic render",
];

/// Whether a name and device type describe a software rasteriser.
pub fn is_software(name: &str, kind: AdapterKind) -> bool {
    let n = name.to_lowercase();
    kind == AdapterKind::Cpu || SOFTWARE_NAMES.iter().any(|s| n.contains(s))
}

/// Rank of an adapter (lower is better): hardware kind first (discrete < integrated < virtual <
/// other < software), then backend (Vulkan, Metal, DX12 before GL).
fn rank(a: &AdapterDesc) -> (u8, u8) {
    let kind = if a.software {
        4
    } else {
        match a.kind {
            AdapterKind::Discrete => 0,
            AdapterKind::Integrated => 1,
            AdapterKind::Virtual => 2,
            AdapterKind::Other => 3,
            AdapterKind::Cpu => 4,
        }
    };
    let backend = match a.backend.as_str() {
        "vulkan" | "metal" | "dx12" => 0,
        _ => 1,
    };
    (kind, backend)
}

/// Index of the adapter to use, or `None` when `sel` accepts none of them. Ties keep the
/// enumeration order.
pub fn pick(adapters: &[AdapterDesc], sel: Selection) -> Option<usize> {
    adapters
        .iter()
        .enumerate()
        .filter(|(_, a)| a.compute && (sel == Selection::Any || !a.software))
        .min_by_key(|(i, a)| (rank(a), *i))
        .map(|(i, _)| i)
}

pub(crate) fn describe(info: &wgpu::AdapterInfo, compute: bool) -> AdapterDesc {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => AdapterKind::Discrete,
        wgpu::DeviceType::IntegratedGpu => AdapterKind::Integrated,
        wgpu::DeviceType::VirtualGpu => AdapterKind::Virtual,
        wgpu::DeviceType::Cpu => AdapterKind::Cpu,
        wgpu::DeviceType::Other => AdapterKind::Other,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        wgpu::Backend::Gl => "gl",
        wgpu::Backend::BrowserWebGpu => "webgpu",
        _ => "other",
    };
    let driver = [info.driver.trim(), info.driver_info.trim()]
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    AdapterDesc {
        name: info.name.clone(),
        backend: backend.into(),
        driver,
        kind,
        software: is_software(&info.name, kind),
        compute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str, backend: &str, kind: AdapterKind) -> AdapterDesc {
        AdapterDesc {
            name: name.into(),
            backend: backend.into(),
            driver: String::new(),
            kind,
            software: is_software(name, kind),
            compute: true,
        }
    }

    #[test]
    fn hardware_never_picks_software_and_prefers_discrete() {
        let lava = a(
            "llvmpipe (LLVM 15.0.6, 256 bits)",
            "vulkan",
            AdapterKind::Cpu,
        );
        let gl_lava = a("llvmpipe (LLVM 15.0.6, 256 bits)", "gl", AdapterKind::Other);
        let igpu = a(
            "Intel(R) UHD Graphics 770",
            "vulkan",
            AdapterKind::Integrated,
        );
        let dgpu = a("NVIDIA H200", "vulkan", AdapterKind::Discrete);
        let dgpu_gl = a("NVIDIA H200", "gl", AdapterKind::Discrete);
        // Only software: auto takes none, gpu takes the Vulkan one.
        let soft = vec![gl_lava.clone(), lava.clone()];
        assert_eq!(pick(&soft, Selection::Hardware), None);
        assert_eq!(pick(&soft, Selection::Any), Some(1));
        // lavapipe reported as "Other" is still software.
        assert!(gl_lava.software);
        let all = vec![lava, igpu, dgpu_gl, dgpu];
        assert_eq!(pick(&all, Selection::Hardware), Some(3));
        assert_eq!(pick(&all, Selection::Any), Some(3));
        let no_discrete = vec![all[0].clone(), all[1].clone()];
        assert_eq!(pick(&no_discrete, Selection::Hardware), Some(1));
        assert_eq!(pick(&[], Selection::Any), None);
        // An adapter without compute is never picked.
        let mut nc = a("Mali-G52", "gl", AdapterKind::Integrated);
        nc.compute = false;
        assert_eq!(pick(&[nc], Selection::Any), None);
    }
}
