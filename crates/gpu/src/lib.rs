//! The GPU host module: the **only** crate of the workspace that calls `wgpu` (pinned in the
//! workspace `Cargo.toml`), so a wgpu major bump touches this crate alone.
//!
//! What it owns:
//! - **Adapter and device** ([`Gpu::shared`]): [`Selection::Hardware`] (config `device = "auto"`)
//!   takes a hardware adapter, discrete first, and never a software rasteriser (llvmpipe/lavapipe);
//!   [`Selection::Any`] (`device = "gpu"`) takes the best adapter there is, software included. The
//!   device is requested with the adapter's own limits and, where present, the features
//!   `SHADER_FLOAT32_ATOMIC` and `TIMESTAMP_QUERY`. One device per adapter and process.
//! - **Buffers** ([`GpuBuffer`], [`BufferPool`]): f32/u32 storage buffers, uniforms, uploads and
//!   read-backs (blocking, or [`Readback`] mapped on submit and collected later). With
//!   [`Gpu::set_poison`] every new storage buffer is filled with a NaN sentinel, so tests catch a
//!   kernel that reads memory nothing wrote (wgpu itself zero-fills new buffers).
//! - **Pipeline cache** ([`Gpu::kernel`]): a compute pipeline per (WGSL source, entry point), built
//!   once, with an explicit bind-group layout reflected from the shader by naga (every
//!   `@group(0) @binding(i)` in order, storage read-only / read-write or uniform), so bind groups
//!   built once by the caller ([`Gpu::bind`]) stay valid for every dispatch.
//! - **Recording** ([`Recorder`]): one command encoder; consecutive dispatches share one compute
//!   pass (wgpu inserts the barriers between them), or with a [`Profiler`] attached each dispatch
//!   has its own pass, timed with timestamp queries; one submit.
//! - **Shader run-time checks**: [`Gpu::kernel`] keeps naga's bounds checks and loop bounding;
//!   [`Gpu::kernel_trusted`] (audited kernels) leaves them out unless [`CHECKS_ENV`] is set.
//! - **Validation without an adapter** ([`validate_wgsl`]): naga parse + validate, used by the
//!   shader tests for every feature combination.
//!
//! Naming: sizes called `bytes` are in bytes, `len` in 4-byte elements.

mod adapter;
mod buffer;
mod kernel;
mod profiler;
mod recorder;

pub use adapter::{AdapterDesc, AdapterKind, Selection, is_software, pick};
pub use buffer::{Bind, BufferPool, GpuBuffer, Readback};
pub use kernel::{
    BindGroup, BindingKind, CHECKS_ENV, Kernel, ShaderFeatures, StructLayout, checks_requested,
    validate_wgsl, validate_wgsl_with, wgsl_struct_layouts,
};
pub use profiler::Profiler;
pub use recorder::{Recorder, Submission};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::sync::{Arc, Mutex, OnceLock};

/// Errors of the GPU host module; each says what failed and, where it helps, what to change.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    #[error("GPU device on {adapter}: {msg}")]
    Device { adapter: String, msg: String },
    #[error("GPU shader {name}: {msg}")]
    Shader { name: String, msg: String },
    #[error("GPU memory: {0}")]
    Memory(String),
    #[error("GPU read-back of {label}: {msg}")]
    Readback { label: String, msg: String },
}

/// Optional features the device was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `atomic<f32>` add on storage buffers (`Features::SHADER_FLOAT32_ATOMIC`).
    pub float_atomics: bool,
    /// Timestamp queries at compute-pass boundaries (`Features::TIMESTAMP_QUERY`).
    pub timestamps: bool,
    /// Subgroup operations (`Features::SUBGROUP`, requested where offered): the hash-grid
    /// gradient scatter pre-reduces lanes that hit the same entry before its atomics.
    pub subgroups: bool,
    /// `f16` in shaders and storage buffers (`Features::SHADER_F16`, requested where offered): the
    /// MLPs' hidden activations kept for the backward may be stored in half precision.
    pub shader_f16: bool,
}

/// The limits kernels size themselves by (the adapter's own, requested in full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GpuLimits {
    pub max_buffer_bytes: u64,
    pub max_storage_binding_bytes: u64,
    pub storage_offset_align: u32,
    pub max_workgroup_storage_bytes: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_workgroups_per_dim: u32,
    pub max_storage_buffers_per_stage: u32,
    /// The adapter's subgroup sizes (lanes), smallest and largest: NVIDIA 32, AMD 32-64,
    /// lavapipe its vector width / 32 (8 at 256 bits; `LP_NATIVE_VECTOR_WIDTH` sets it); 0 when
    /// the device was created without subgroups.
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
}

/// How gradient scatters add floats: native `atomicAdd` on `atomic<f32>` or a compare-and-swap
/// loop on the bits in `atomic<u32>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AtomicMode {
    NativeF32,
    CasU32,
}

/// Environment variable that forces the CAS path even where native f32 atomics exist (any value
/// but `0`).
pub const FORCE_CAS_ENV: &str = "FLYTHROUGH_GPU_FORCE_CAS";

impl AtomicMode {
    /// The mode for a device with (`has_native`) or without float atomics, honouring
    /// [`FORCE_CAS_ENV`] (`force_cas` = its value, if set).
    pub fn choose(has_native: bool, force_cas: Option<&str>) -> AtomicMode {
        let forced = force_cas.is_some_and(|v| v != "0" && !v.is_empty());
        if has_native && !forced {
            AtomicMode::NativeF32
        } else {
            AtomicMode::CasU32
        }
    }
}

/// A wgpu device and queue with the caches built on them. Shared (`Arc`) by every user in the
/// process; all methods take `&self`.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    desc: AdapterDesc,
    caps: Caps,
    limits: GpuLimits,
    kernels: Mutex<HashMap<(u64, String, bool), Arc<Kernel>>>,
    /// Whether [`Gpu::kernel_trusted`] keeps naga's run-time checks ([`CHECKS_ENV`]).
    runtime_checks: bool,
    pub(crate) staging: Mutex<Vec<wgpu::Buffer>>,
    poison: AtomicBool,
    allocated: AtomicU64,
    pub(crate) next_id: AtomicU64,
    pub(crate) counters: AtomicCounters,
}

/// Work the host has sent to the device since the [`Gpu`] was created: a snapshot of running
/// totals ([`Gpu::counters`]); per-step figures are differences of two snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GpuCounters {
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Compute passes begun.
    pub passes: u64,
    /// Bytes written with queue writes ([`Gpu::write`], uploads, uniforms).
    pub upload_bytes: u64,
    /// Bytes copied to staging buffers for read-back.
    pub readback_bytes: u64,
    /// Command buffers submitted.
    pub submits: u64,
}

impl GpuCounters {
    /// `self - earlier`, field by field (saturating).
    pub fn since(&self, earlier: &GpuCounters) -> GpuCounters {
        GpuCounters {
            dispatches: self.dispatches.saturating_sub(earlier.dispatches),
            passes: self.passes.saturating_sub(earlier.passes),
            upload_bytes: self.upload_bytes.saturating_sub(earlier.upload_bytes),
            readback_bytes: self.readback_bytes.saturating_sub(earlier.readback_bytes),
            submits: self.submits.saturating_sub(earlier.submits),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct AtomicCounters {
    pub dispatches: AtomicU64,
    pub passes: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub readback_bytes: AtomicU64,
    pub submits: AtomicU64,
}

impl AtomicCounters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

impl Gpu {
    /// Running totals of the work sent to the device (dispatches, passes, uploaded and read-back
    /// bytes, submits); subtract two snapshots with [`GpuCounters::since`].
    pub fn counters(&self) -> GpuCounters {
        let c = &self.counters;
        GpuCounters {
            dispatches: c.dispatches.load(Ordering::Relaxed),
            passes: c.passes.load(Ordering::Relaxed),
            upload_bytes: c.upload_bytes.load(Ordering::Relaxed),
            readback_bytes: c.readback_bytes.load(Ordering::Relaxed),
            submits: c.submits.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.desc)
            .field("caps", &self.caps)
            .finish()
    }
}

/// Turns off Mesa's implicit `VK_LAYER_MESA_device_select` Vulkan layer for this process (sets
/// `NODEVICE_SELECT=1` unless the environment already sets it). The layer only reorders adapters
/// (we choose ours, discrete first), and on a machine without a desktop session it prints
/// "error: XDG_RUNTIME_DIR is invalid or not set in the environment." twice per adapter listing.
///
/// Call it first thing in `main`, before any thread starts: setting an environment variable while
/// another thread reads the environment is undefined behaviour in C.
pub fn quiet_vulkan_layers() {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: documented precondition: called while the process has a single thread.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

/// The process's wgpu instance. Backends: Vulkan, Metal and DX12 (`Backends::PRIMARY`); GL only
/// when `WGPU_BACKEND` asks for it (its compute support is partial, and its EGL contexts must not
/// be created and dropped from several threads).
fn instance() -> &'static wgpu::Instance {
    static INSTANCE: OnceLock<wgpu::Instance> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if std::env::var_os("WGPU_BACKEND").is_none() {
            desc.backends = wgpu::Backends::PRIMARY;
        }
        wgpu::Instance::new(desc)
    })
}

/// Storage buffers a kernel of the NeRF back end binds at most; adapters with fewer are not used.
const MIN_STORAGE_BUFFERS: u32 = 10;

fn adapters() -> Vec<(wgpu::Adapter, AdapterDesc)> {
    let list = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    list.into_iter()
        .map(|a| {
            let compute = a
                .get_downlevel_capabilities()
                .flags
                .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
                && a.limits().max_storage_buffers_per_shader_stage >= MIN_STORAGE_BUFFERS;
            let d = adapter::describe(&a.get_info(), compute);
            (a, d)
        })
        .collect()
}

/// Every adapter wgpu sees on this machine (Vulkan, Metal, DX12; see [`instance`]).
pub fn list_adapters() -> Vec<AdapterDesc> {
    adapters().into_iter().map(|(_, d)| d).collect()
}

impl Gpu {
    /// The process-wide device for `sel`: `Ok(None)` when [`Selection::Hardware`] finds no hardware
    /// adapter (run on the CPU), an error when [`Selection::Any`] finds no adapter at all or the
    /// device cannot be created.
    pub fn shared(sel: Selection) -> Result<Option<Arc<Gpu>>, GpuError> {
        static DEVICES: OnceLock<Mutex<HashMap<String, Arc<Gpu>>>> = OnceLock::new();
        // One caller at a time enumerates and opens devices.
        let map = DEVICES.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        let mut found = adapters();
        let descs: Vec<AdapterDesc> = found.iter().map(|(_, d)| d.clone()).collect();
        let Some(i) = pick(&descs, sel) else {
            return match sel {
                Selection::Hardware => Ok(None),
                Selection::Any => Err(GpuError::NoAdapter(if descs.is_empty() {
                    "wgpu found no Vulkan, Metal or DX12 adapter on this machine (on Linux \
                     install a Vulkan driver, e.g. `apt-get install mesa-vulkan-drivers` for the \
                     CPU driver lavapipe, or the GPU vendor's driver)"
                        .into()
                } else {
                    format!(
                        "none of the adapters runs compute shaders with {MIN_STORAGE_BUFFERS} \
                         storage buffers: {}",
                        descs
                            .iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                })),
            };
        };
        let key = format!("{}|{}", descs[i].name, descs[i].backend);
        if let Some(g) = map.get(&key) {
            return Ok(Some(g.clone()));
        }
        let (adapter, desc) = found.swap_remove(i);
        let gpu = Arc::new(Gpu::open(adapter, desc)?);
        map.insert(key, gpu.clone());
        Ok(Some(gpu))
    }

    fn open(adapter: wgpu::Adapter, desc: AdapterDesc) -> Result<Gpu, GpuError> {
        let want = wgpu::Features::SHADER_FLOAT32_ATOMIC
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::SUBGROUP
            | wgpu::Features::SHADER_F16;
        let features = adapter.features() & want;
        let limits = adapter.limits();
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("flythrough"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GpuError::Device {
            adapter: desc.to_string(),
            msg: e.to_string(),
        })?;
        let caps = Caps {
            float_atomics: features.contains(wgpu::Features::SHADER_FLOAT32_ATOMIC),
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
        };
        let limits = GpuLimits {
            max_buffer_bytes: limits.max_buffer_size,
            max_storage_binding_bytes: limits.max_storage_buffer_binding_size,
            storage_offset_align: limits.min_storage_buffer_offset_alignment,
            max_workgroup_storage_bytes: limits.max_compute_workgroup_storage_size,
            max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_workgroups_per_dim: limits.max_compute_workgroups_per_dimension,
            max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
            subgroup_min_size: if caps.subgroups {
                info.subgroup_min_size
            } else {
                0
            },
            subgroup_max_size: if caps.subgroups {
                info.subgroup_max_size
            } else {
                0
            },
        };
        tracing::debug!("gpu: {desc}, {caps:?}, {limits:?}");
        tracing::info!(
            "gpu: {desc}: float atomics {}, subgroups {}, f16 {}, timestamps {}",
            if caps.float_atomics {
                "native"
            } else {
                "CAS loop"
            },
            if !caps.subgroups {
                "none".to_string()
            } else if limits.subgroup_min_size == limits.subgroup_max_size {
                format!("{} lanes", limits.subgroup_min_size)
            } else {
                format!(
                    "{}-{} lanes",
                    limits.subgroup_min_size, limits.subgroup_max_size
                )
            },
            if caps.shader_f16 { "yes" } else { "none" },
            if caps.timestamps { "yes" } else { "no" },
        );
        let runtime_checks = checks_requested(std::env::var(CHECKS_ENV).ok().as_deref());
        if runtime_checks {
            tracing::info!(
                "gpu: shader run-time checks on for every kernel ({CHECKS_ENV} is set): bounds \
                 checks and loop bounding, slower"
            );
        } else {
            tracing::info!(
                "gpu: audited kernels without shader run-time checks ({CHECKS_ENV}=1 turns them on)"
            );
        }
        Ok(Gpu {
            device,
            queue,
            desc,
            caps,
            limits,
            kernels: Mutex::new(HashMap::new()),
            runtime_checks,
            staging: Mutex::new(Vec::new()),
            poison: AtomicBool::new(false),
            allocated: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            counters: AtomicCounters::default(),
        })
    }

    /// The adapter this device runs on.
    pub fn adapter(&self) -> &AdapterDesc {
        &self.desc
    }

    /// Whether the kernels built with [`Gpu::kernel_trusted`] keep naga's run-time checks (bounds
    /// checks, loop bounding): `false` unless [`CHECKS_ENV`] asked for them when the device was
    /// opened. Kernels built with [`Gpu::kernel`] always keep them.
    pub fn runtime_checks(&self) -> bool {
        self.runtime_checks
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    pub fn limits(&self) -> GpuLimits {
        self.limits
    }

    /// The gradient-scatter mode of this device: native f32 atomics where the adapter has them,
    /// unless [`FORCE_CAS_ENV`] is set.
    pub fn atomic_mode(&self) -> AtomicMode {
        AtomicMode::choose(
            self.caps.float_atomics,
            std::env::var(FORCE_CAS_ENV).ok().as_deref(),
        )
    }

    /// Fill every storage buffer created from now on with a NaN sentinel (tests).
    pub fn set_poison(&self, on: bool) {
        self.poison.store(on, Ordering::Relaxed);
    }

    /// Bytes of buffers created so far (not counting staging buffers).
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Wait until every submitted command has finished.
    pub fn wait_idle(&self) {
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
    }

    /// Process finished work (map callbacks) without blocking.
    pub fn poll(&self) {
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    /// 1-D grid for `threads` invocations of `wg`-wide workgroups: `[x, y, 1]` with `x` at most
    /// the per-dimension limit. Kernels flatten it as `gid.x + gid.y * num_workgroups.x * wg`.
    pub fn grid(&self, threads: u64, wg: u32) -> [u32; 3] {
        let groups = threads.div_ceil(wg as u64).max(1);
        let max = self.limits.max_workgroups_per_dim as u64;
        if groups <= max {
            [groups as u32, 1, 1]
        } else {
            let y = groups.div_ceil(max);
            [groups.div_ceil(y) as u32, y as u32, 1]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_mode_follows_feature_and_env() {
        assert_eq!(AtomicMode::choose(true, None), AtomicMode::NativeF32);
        assert_eq!(AtomicMode::choose(true, Some("1")), AtomicMode::CasU32);
        assert_eq!(AtomicMode::choose(true, Some("0")), AtomicMode::NativeF32);
        assert_eq!(AtomicMode::choose(false, None), AtomicMode::CasU32);
    }

    #[test]
    fn checks_env_values() {
        assert!(!checks_requested(None));
        assert!(!checks_requested(Some("0")));
        assert!(!checks_requested(Some("")));
        assert!(checks_requested(Some("1")));
    }
}
