//! Per-kernel GPU time from timestamp queries written at the start and end of each dispatch's
//! compute pass.

use crate::Gpu;
use crate::buffer::Readback;
use std::collections::BTreeMap;

/// Accumulates GPU time per kernel name over the submissions it is attached to.
pub struct Profiler {
    qs: wgpu::QuerySet,
    resolve: crate::GpuBuffer,
    cap: u32,
    labels: Vec<String>,
    pending: Option<(Readback, Vec<String>)>,
    period_ns: f64,
    totals: BTreeMap<String, (f64, u64)>,
}

impl Profiler {
    /// A profiler for up to `max_dispatches` dispatches per submission; `None` when the device has
    /// no timestamp queries.
    pub fn new(gpu: &Gpu, max_dispatches: u32) -> Option<Profiler> {
        if !gpu.caps().timestamps {
            return None;
        }
        let cap = (2 * max_dispatches).clamp(2, 4096);
        let qs = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profiler"),
            ty: wgpu::QueryType::Timestamp,
            count: cap,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profiler resolve"),
            size: 8 * cap as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Some(Profiler {
            qs,
            resolve: crate::GpuBuffer::wrap(resolve, 8 * cap as u64, "profiler resolve"),
            cap,
            labels: Vec::new(),
            pending: None,
            period_ns: gpu.queue.get_timestamp_period() as f64,
            totals: BTreeMap::new(),
        })
    }

    /// The query set and index pair for the next dispatch, if there is room.
    pub(crate) fn slot(&mut self, label: &str) -> Option<(&wgpu::QuerySet, u32)> {
        let i = 2 * self.labels.len() as u32;
        if i + 2 > self.cap || self.pending.is_some() {
            return None;
        }
        self.labels.push(label.to_string());
        Some((&self.qs, i))
    }

    pub(crate) fn resolve(&mut self, enc: &mut wgpu::CommandEncoder, gpu: &Gpu) {
        let n = 2 * self.labels.len() as u32;
        if n == 0 {
            return;
        }
        enc.resolve_query_set(&self.qs, 0..n, &self.resolve.inner, 0);
        let bytes = 8 * n as u64;
        let staging = gpu.take_staging(bytes);
        enc.copy_buffer_to_buffer(&self.resolve.inner, 0, &staging, 0, bytes);
        let state = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
        let s = state.clone();
        enc.map_buffer_on_submit(&staging, wgpu::MapMode::Read, ..bytes, move |r| {
            s.store(
                if r.is_ok() { 1 } else { 2 },
                std::sync::atomic::Ordering::Release,
            )
        });
        let labels = std::mem::take(&mut self.labels);
        self.pending = Some((
            Readback {
                staging: Some(staging),
                bytes,
                label: "profiler".into(),
                state,
            },
            labels,
        ));
    }

    /// Wait for the last profiled submission and add its kernel times to the totals.
    pub fn collect(&mut self, gpu: &Gpu) {
        if let Some((rb, labels)) = self.pending.take()
            && let Ok(v) = rb.wait_as::<u64>(gpu)
        {
            for (k, l) in labels.into_iter().enumerate() {
                let (a, b) = (v[2 * k], v[2 * k + 1]);
                let ms = b.saturating_sub(a) as f64 * self.period_ns * 1e-6;
                let e = self.totals.entry(l).or_insert((0.0, 0));
                e.0 += ms;
                e.1 += 1;
            }
        }
    }

    /// `(kernel, total ms, dispatches)` sorted by name.
    pub fn totals(&self) -> Vec<(String, f64, u64)> {
        self.totals
            .iter()
            .map(|(k, (ms, n))| (k.clone(), *ms, *n))
            .collect()
    }

    pub fn reset(&mut self) {
        self.totals.clear();
    }
}
