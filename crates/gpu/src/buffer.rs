//! Buffers: storage and uniform buffers, uploads, read-backs, and a small pool of named scratch
//! buffers that grow on demand.

use crate::{Gpu, GpuError};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// NaN with a recognisable payload: what poisoned buffers hold.
pub const SENTINEL_BITS: u32 = 0x7FC0_DEAD;

/// A GPU buffer (cheap to clone: reference counted). Storage buffers can be bound, copied from
/// and to, and cleared; uniform buffers hold a kernel's parameters.
#[derive(Clone, Debug)]
pub struct GpuBuffer {
    pub(crate) inner: Arc<wgpu::Buffer>,
    bytes: u64,
    label: Arc<str>,
    id: u64,
}

impl GpuBuffer {
    pub(crate) fn wrap(b: wgpu::Buffer, bytes: u64, label: &str) -> GpuBuffer {
        GpuBuffer {
            inner: Arc::new(b),
            bytes,
            label: label.into(),
            id: 0,
        }
    }
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// Size in 4-byte elements.
    pub fn len(&self) -> usize {
        (self.bytes / 4) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
    pub fn label(&self) -> &str {
        &self.label
    }
    /// Unique id within the process (for callers that cache bind groups by buffer).
    pub fn id(&self) -> u64 {
        self.id
    }
    /// A byte range of this buffer as a binding (offset aligned to the storage offset alignment).
    pub fn range(&self, offset: u64, bytes: u64) -> Bind<'_> {
        Bind::Range(self, offset, bytes)
    }
}

/// One binding of a bind group: a whole buffer or a byte range of one.
#[derive(Clone, Copy, Debug)]
pub enum Bind<'a> {
    Whole(&'a GpuBuffer),
    Range(&'a GpuBuffer, u64, u64),
}

impl<'a> From<&'a GpuBuffer> for Bind<'a> {
    fn from(b: &'a GpuBuffer) -> Self {
        Bind::Whole(b)
    }
}

impl Gpu {
    fn create(
        &self,
        label: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<GpuBuffer, GpuError> {
        // A zero-sized binding is invalid: every buffer holds at least one 16-byte element.
        let alloc = bytes.max(16).next_multiple_of(4);
        if alloc > self.limits().max_buffer_bytes {
            return Err(GpuError::Memory(format!(
                "buffer {label} needs {} MiB but this adapter allows {} MiB per buffer",
                alloc >> 20,
                self.limits().max_buffer_bytes >> 20
            )));
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: alloc,
            usage,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Memory(format!(
                "buffer {label} ({} MiB, {} MiB allocated before it): {e}",
                alloc >> 20,
                self.allocated_bytes() >> 20
            )));
        }
        self.allocated.fetch_add(alloc, Ordering::Relaxed);
        Ok(GpuBuffer {
            inner: Arc::new(buf),
            bytes,
            label: label.into(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// A storage buffer of `bytes` bytes (NaN-filled when poisoning is on, else zeroed).
    pub fn storage(&self, label: &str, bytes: u64) -> Result<GpuBuffer, GpuError> {
        let b = self.create(
            label,
            bytes,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        )?;
        if self.poison.load(Ordering::Relaxed) {
            let words = (b.inner.size() / 4) as usize;
            let fill = vec![SENTINEL_BITS; words];
            self.queue
                .write_buffer(&b.inner, 0, bytemuck::cast_slice(&fill));
        }
        Ok(b)
    }

    /// A storage buffer of `len` 4-byte elements.
    pub fn storage_len(&self, label: &str, len: usize) -> Result<GpuBuffer, GpuError> {
        self.storage(label, 4 * len as u64)
    }

    /// A storage buffer holding `data`.
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> Result<GpuBuffer, GpuError> {
        let bytes = std::mem::size_of_val(data) as u64;
        let b = self.create(
            label,
            bytes,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        )?;
        self.write(&b, 0, data);
        Ok(b)
    }

    /// A uniform buffer holding `data` (a `#[repr(C)]` struct laid out as the WGSL struct).
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, data: &T) -> Result<GpuBuffer, GpuError> {
        let bytes = std::mem::size_of::<T>() as u64;
        let b = self.create(
            label,
            bytes.next_multiple_of(16),
            wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
        )?;
        self.write(&b, 0, std::slice::from_ref(data));
        Ok(b)
    }

    /// Queue a write of `data` at byte `offset` (it happens before the next submit).
    pub fn write<T: bytemuck::Pod>(&self, buf: &GpuBuffer, offset: u64, data: &[T]) {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.is_empty() {
            return;
        }
        crate::AtomicCounters::add(&self.counters.upload_bytes, bytes.len() as u64);
        if bytes.len().is_multiple_of(4) {
            self.queue.write_buffer(&buf.inner, offset, bytes);
        } else {
            let mut v = bytes.to_vec();
            v.resize(bytes.len().next_multiple_of(4), 0);
            self.queue.write_buffer(&buf.inner, offset, &v);
        }
    }

    /// A mappable staging buffer of at least `bytes` (reused from earlier read-backs).
    pub(crate) fn take_staging(&self, bytes: u64) -> wgpu::Buffer {
        let bytes = bytes.max(16).next_multiple_of(4);
        let mut free = self.staging.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.size() >= bytes && b.size() <= 2 * bytes.max(1 << 16))
            .min_by_key(|(_, b)| b.size())
            .map(|(i, _)| i)
        {
            return free.swap_remove(i);
        }
        drop(free);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    pub(crate) fn return_staging(&self, b: wgpu::Buffer) {
        let mut free = self.staging.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < 8 {
            free.push(b);
        }
    }

    /// Blocking read of `bytes` bytes at `offset` of `buf` (waits for all submitted work).
    pub fn read_bytes(
        &self,
        buf: &GpuBuffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<u8>, GpuError> {
        let mut rec = self.recorder("read-back");
        let rb = rec.read_back(buf, offset, bytes);
        rec.submit();
        rb.wait(self)
    }

    /// Blocking read of a whole buffer as `T`s.
    pub fn read<T: bytemuck::Pod>(&self, buf: &GpuBuffer) -> Result<Vec<T>, GpuError> {
        let b = self.read_bytes(buf, 0, buf.bytes())?;
        Ok(bytemuck::pod_collect_to_vec(&b))
    }
}

/// A read-back in flight: a copy into a staging buffer recorded by [`crate::Recorder::read_back`],
/// mapped when its submission finishes. Poll it with [`Readback::ready`] (no blocking) and take the
/// bytes with [`Readback::wait`].
pub struct Readback {
    pub(crate) staging: Option<wgpu::Buffer>,
    pub(crate) bytes: u64,
    pub(crate) label: String,
    /// 0 pending, 1 mapped, 2 failed.
    pub(crate) state: Arc<AtomicU8>,
}

impl Readback {
    /// Whether the data is there (polls the device once, never blocks).
    pub fn ready(&self, gpu: &Gpu) -> bool {
        gpu.poll();
        self.state.load(Ordering::Acquire) != 0
    }

    /// The bytes (blocks until the copy has run).
    pub fn wait(self, gpu: &Gpu) -> Result<Vec<u8>, GpuError> {
        self.with_mapped(gpu, |v| v.to_vec())
    }

    /// Copy the data straight from the mapped staging buffer into `out` (blocks until the copy
    /// has run): one copy, no intermediate vector. Fills `out` (at most the bytes read back; the
    /// rest of `out` is left as it was) and returns the bytes copied.
    pub fn wait_into<T: bytemuck::Pod>(self, gpu: &Gpu, out: &mut [T]) -> Result<usize, GpuError> {
        let out: &mut [u8] = bytemuck::cast_slice_mut(out);
        self.with_mapped(gpu, |v| {
            let n = v.len().min(out.len());
            out[..n].copy_from_slice(&v[..n]);
            n
        })
    }

    /// Run `f` on the mapped bytes (blocks until the copy has run), then hand the staging buffer
    /// back for reuse.
    fn with_mapped<R>(mut self, gpu: &Gpu, f: impl FnOnce(&[u8]) -> R) -> Result<R, GpuError> {
        while self.state.load(Ordering::Acquire) == 0 {
            if let Err(e) = gpu.device.poll(wgpu::PollType::wait_indefinitely()) {
                return Err(GpuError::Readback {
                    label: self.label.clone(),
                    msg: e.to_string(),
                });
            }
        }
        let staging = self.staging.take().expect("read-back taken once");
        if self.state.load(Ordering::Acquire) != 1 {
            return Err(GpuError::Readback {
                label: self.label.clone(),
                msg: "mapping the staging buffer failed (device lost?)".into(),
            });
        }
        let out = {
            let view = staging
                .slice(..self.bytes.max(4).next_multiple_of(4))
                .get_mapped_range()
                .map_err(|e| GpuError::Readback {
                    label: self.label.clone(),
                    msg: e.to_string(),
                })?;
            f(&view[..self.bytes as usize])
        };
        staging.unmap();
        gpu.return_staging(staging);
        Ok(out)
    }

    /// The data as `T`s (blocks).
    pub fn wait_as<T: bytemuck::Pod>(self, gpu: &Gpu) -> Result<Vec<T>, GpuError> {
        Ok(bytemuck::pod_collect_to_vec(&self.wait(gpu)?))
    }
}

/// Named scratch buffers reused across calls: `get` returns the buffer of that name when it is
/// large enough, else a new one 25 % larger than asked (old bind groups must then be rebuilt:
/// compare [`GpuBuffer::id`]).
#[derive(Default)]
pub struct BufferPool {
    bufs: HashMap<String, GpuBuffer>,
}

impl BufferPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// A storage buffer of at least `bytes` bytes named `name`.
    pub fn get(&mut self, gpu: &Gpu, name: &str, bytes: u64) -> Result<GpuBuffer, GpuError> {
        if let Some(b) = self.bufs.get(name)
            && b.bytes() >= bytes
        {
            return Ok(b.clone());
        }
        let grow = if self.bufs.contains_key(name) {
            bytes + bytes / 4
        } else {
            bytes
        };
        let b = gpu.storage(name, grow.next_multiple_of(4))?;
        self.bufs.insert(name.to_string(), b.clone());
        Ok(b)
    }

    /// Total bytes held.
    pub fn bytes(&self) -> u64 {
        self.bufs.values().map(|b| b.bytes()).sum()
    }
}
