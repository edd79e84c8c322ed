//! Compute kernels: WGSL validation with naga (no adapter needed), the pipeline cache, and bind
//! groups with layouts reflected from the shader.

use crate::{Bind, Gpu, GpuError};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use wgpu::naga;

/// What a `@group(0) @binding(i)` of a kernel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    Uniform,
    StorageRead,
    StorageReadWrite,
}

/// A compiled compute pipeline with its bind-group layout.
pub struct Kernel {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    /// Binding `i` of group 0, in order.
    pub bindings: Vec<BindingKind>,
    /// Kernel name (entry point), for errors and the profiler.
    pub name: String,
    /// `@workgroup_size` of the entry point.
    pub workgroup_size: [u32; 3],
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("name", &self.name)
            .field("bindings", &self.bindings)
            .finish()
    }
}

/// A bind group built for one kernel (build it once, dispatch it many times).
pub struct BindGroup {
    pub(crate) inner: wgpu::BindGroup,
    pub(crate) kernel: String,
}

/// The optional shader features a device may have, for validation without an adapter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShaderFeatures {
    /// `atomic<f32>` add (`Features::SHADER_FLOAT32_ATOMIC`).
    pub float_atomics: bool,
    /// `enable f16;` (`Features::SHADER_F16`).
    pub f16: bool,
    /// Subgroup built-ins (`Features::SUBGROUP`).
    pub subgroups: bool,
}

/// naga capabilities for a device with these features.
fn capabilities(f: ShaderFeatures) -> naga::valid::Capabilities {
    let mut c = naga::valid::Capabilities::empty();
    if f.float_atomics {
        c |= naga::valid::Capabilities::SHADER_FLOAT32_ATOMIC;
    }
    if f.f16 {
        c |= naga::valid::Capabilities::SHADER_FLOAT16;
    }
    if f.subgroups {
        c |= naga::valid::Capabilities::SUBGROUP;
    }
    c
}

fn parse(source: &str) -> Result<naga::Module, String> {
    naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))
}

/// A WGSL struct's layout as naga computes it (uniform/storage rules): its size and each member's
/// name and byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructLayout {
    pub name: String,
    pub size: u32,
    pub members: Vec<(String, u32)>,
}

/// The layout of every struct of a WGSL module (no adapter needed), so a host-side `#[repr(C)]`
/// mirror can be checked against the shader's declaration.
pub fn wgsl_struct_layouts(source: &str) -> Result<Vec<StructLayout>, String> {
    let module = parse(source)?;
    Ok(module
        .types
        .iter()
        .filter_map(|(_, ty)| match &ty.inner {
            naga::TypeInner::Struct { members, span } => Some(StructLayout {
                name: ty.name.clone().unwrap_or_default(),
                size: *span,
                members: members
                    .iter()
                    .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                    .collect(),
            }),
            _ => None,
        })
        .collect())
}

/// Parse and validate a WGSL module with naga, for a device with or without native f32 atomics.
/// Returns the module's entry points. No adapter is needed (the shader tests run it for every
/// feature combination).
pub fn validate_wgsl(source: &str, float_atomics: bool) -> Result<Vec<String>, String> {
    validate_wgsl_with(
        source,
        ShaderFeatures {
            float_atomics,
            ..ShaderFeatures::default()
        },
    )
}

/// [`validate_wgsl`] for a device with `features` (f16, subgroups, float atomics).
pub fn validate_wgsl_with(source: &str, features: ShaderFeatures) -> Result<Vec<String>, String> {
    let module = parse(source)?;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities(features))
        .validate(&module)
        .map_err(|e| e.emit_to_string(source))?;
    Ok(module.entry_points.iter().map(|e| e.name.clone()).collect())
}

/// The group-0 bindings of a module, in binding order; error on gaps or other groups.
fn reflect(module: &naga::Module) -> Result<Vec<BindingKind>, String> {
    let mut found: Vec<(u32, BindingKind)> = Vec::new();
    for (_, g) in module.global_variables.iter() {
        let Some(b) = &g.binding else { continue };
        if b.group != 0 {
            return Err(format!(
                "binding in group {} (only group 0 is used)",
                b.group
            ));
        }
        let kind = match g.space {
            naga::AddressSpace::Uniform => BindingKind::Uniform,
            naga::AddressSpace::Storage { access } => {
                if access.contains(naga::StorageAccess::STORE) {
                    BindingKind::StorageReadWrite
                } else {
                    BindingKind::StorageRead
                }
            }
            other => return Err(format!("unsupported binding space {other:?}")),
        };
        found.push((b.binding, kind));
    }
    found.sort_by_key(|(i, _)| *i);
    for (k, (i, _)) in found.iter().enumerate() {
        if *i != k as u32 {
            return Err(format!(
                "bindings must be 0..n without gaps (found {i} at {k})"
            ));
        }
    }
    Ok(found.into_iter().map(|(_, k)| k).collect())
}

/// Environment variable that turns naga's run-time checks back on for the kernels built with
/// [`Gpu::kernel_trusted`] (any value but `0` or empty): a debug switch for a kernel suspected of
/// indexing out of bounds or looping forever.
pub const CHECKS_ENV: &str = "FLYTHROUGH_GPU_CHECKS";

/// Whether [`CHECKS_ENV`] (`value` = its value, if set) asks for the run-time checks.
pub fn checks_requested(value: Option<&str>) -> bool {
    value.is_some_and(|v| v != "0" && !v.is_empty())
}

impl Gpu {
    /// The compute pipeline of `entry` in the WGSL `source` (cached: the same source and entry
    /// give the same `Arc`). `name` labels errors and profiles. The module keeps naga's run-time
    /// checks (bounds checks on every array access, loop-bound instrumentation): any shader is
    /// safe here. Audited kernels use [`Gpu::kernel_trusted`].
    pub fn kernel(&self, name: &str, source: &str, entry: &str) -> Result<Arc<Kernel>, GpuError> {
        self.build_kernel(name, source, entry, true)
    }

    /// [`Gpu::kernel`] without naga's run-time checks (`ShaderRuntimeChecks::unchecked()`: no
    /// injected bounds checks, no forced loop bounding, no integer-division guards), unless
    /// [`CHECKS_ENV`] turned them on for the process ([`Gpu::runtime_checks`]).
    ///
    /// # Safety
    ///
    /// The caller vouches that the shader, for every parameter block it is dispatched with, never
    /// indexes a binding, workgroup array or local array out of bounds, never divides an integer
    /// by zero and has no infinite loop: without the checks these are undefined behaviour on the
    /// device (out-of-bounds reads and writes of other buffers, hangs), not clamped accesses.
    pub unsafe fn kernel_trusted(
        &self,
        name: &str,
        source: &str,
        entry: &str,
    ) -> Result<Arc<Kernel>, GpuError> {
        self.build_kernel(name, source, entry, self.runtime_checks)
    }

    fn build_kernel(
        &self,
        name: &str,
        source: &str,
        entry: &str,
        checked: bool,
    ) -> Result<Arc<Kernel>, GpuError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        source.hash(&mut h);
        let key = (h.finish(), entry.to_string(), checked);
        if let Some(k) = self
            .kernels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(k.clone());
        }
        let err = |msg: String| GpuError::Shader {
            name: name.to_string(),
            msg,
        };
        let module = parse(source).map_err(err)?;
        let ep = module
            .entry_points
            .iter()
            .find(|e| e.name == entry)
            .ok_or_else(|| err(format!("no entry point {entry}")))?;
        let workgroup_size = ep.workgroup_size;
        let bindings = reflect(&module).map_err(err)?;
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .enumerate()
            .map(|(i, k)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match k {
                        BindingKind::Uniform => wgpu::BufferBindingType::Uniform,
                        BindingKind::StorageRead => {
                            wgpu::BufferBindingType::Storage { read_only: true }
                        }
                        BindingKind::StorageReadWrite => {
                            wgpu::BufferBindingType::Storage { read_only: false }
                        }
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let shader = if checked {
            self.device.create_shader_module(desc)
        } else {
            // SAFETY: `checked` is false only through `kernel_trusted`, whose caller vouches
            // (its safety contract) that the shader needs none of the checks left out.
            unsafe {
                self.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        };
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(name),
                entries: &entries,
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: Some(&pl),
                module: &shader,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[],
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(err(e.to_string()));
        }
        let k = Arc::new(Kernel {
            pipeline,
            layout,
            bindings,
            name: name.to_string(),
            workgroup_size,
        });
        self.kernels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, k.clone());
        Ok(k)
    }

    /// A bind group for `kernel` with `binds[i]` at binding `i` (panics on a count mismatch: a
    /// caller bug).
    pub fn bind(&self, kernel: &Kernel, binds: &[Bind]) -> BindGroup {
        assert_eq!(
            binds.len(),
            kernel.bindings.len(),
            "kernel {}: {} bindings given, the shader declares {}",
            kernel.name,
            binds.len(),
            kernel.bindings.len()
        );
        let entries: Vec<wgpu::BindGroupEntry> = binds
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let resource = match *b {
                    Bind::Whole(buf) => buf.inner.as_entire_binding(),
                    Bind::Range(buf, off, bytes) => {
                        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &buf.inner,
                            offset: off,
                            size: std::num::NonZeroU64::new(bytes.max(4)),
                        })
                    }
                };
                wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource,
                }
            })
            .collect();
        let inner = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&kernel.name),
            layout: &kernel.layout,
            entries: &entries,
        });
        BindGroup {
            inner,
            kernel: kernel.name.clone(),
        }
    }
}
