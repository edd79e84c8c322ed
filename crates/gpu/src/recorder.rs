//! Recording GPU work: one command encoder, one submit; consecutive dispatches share one compute
//! pass (one pass per dispatch while a [`Profiler`] times them).
//!
//! Sharing a pass keeps the results of a dependent chain correct: wgpu tracks buffer usage per
//! *dispatch* inside a compute pass, not per pass (wgpu-core 30 `command/compute.rs`,
//! `State::flush_bindings`: "For compute, usage scopes are associated with each dispatch and not
//! with the pass as a whole"), and before each dispatch it records the barriers its bindings need
//! after the previous dispatches (a read-write storage use is never an "ordered" use, so a write
//! followed by a read or a write of the same buffer always gets a barrier). Copies, clears,
//! read-backs and the submit end the open pass first (they are encoder commands).

use crate::buffer::Readback;
use crate::{BindGroup, Gpu, GpuBuffer, Kernel, Profiler};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// Records dispatches, copies, clears and read-backs into one command buffer; [`Recorder::submit`]
/// sends it. Consecutive dispatches share one compute pass; with a [`Profiler`] attached every
/// dispatch gets its own pass and is timed.
pub struct Recorder<'a> {
    gpu: &'a Gpu,
    /// The open compute pass of the dispatches recorded since the last encoder command (declared
    /// before `enc`: it must end first, also when the recorder is dropped unsubmitted).
    pass: Option<wgpu::ComputePass<'static>>,
    enc: wgpu::CommandEncoder,
    prof: Option<&'a mut Profiler>,
}

impl Gpu {
    /// A new recorder.
    pub fn recorder(&self, label: &str) -> Recorder<'_> {
        Recorder {
            gpu: self,
            enc: self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) }),
            prof: None,
            pass: None,
        }
    }
}

impl<'a> Recorder<'a> {
    /// Time every following dispatch with `prof` (no-op when the profiler is full): from now on
    /// each dispatch has its own compute pass, with timestamp writes at its start and end.
    pub fn profile(&mut self, prof: &'a mut Profiler) {
        self.end_pass();
        self.prof = Some(prof);
    }

    /// End the open compute pass (before an encoder command: copy, clear, read-back, submit).
    fn end_pass(&mut self) {
        self.pass = None;
    }

    /// Run `kernel` with `bg` on a `groups` grid of workgroups.
    pub fn dispatch(&mut self, kernel: &Kernel, bg: &BindGroup, groups: [u32; 3]) {
        debug_assert_eq!(
            bg.kernel, kernel.name,
            "bind group built for another kernel"
        );
        if groups.contains(&0) {
            return;
        }
        let c = &self.gpu.counters;
        crate::AtomicCounters::add(&c.dispatches, 1);
        if let Some(prof) = self.prof.as_mut() {
            // Profiled: a pass of its own, timed at its start and end.
            self.pass = None;
            crate::AtomicCounters::add(&c.passes, 1);
            let ts = prof.slot(&kernel.name);
            let mut pass = self.enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&kernel.name),
                timestamp_writes: ts.map(|(qs, i)| wgpu::ComputePassTimestampWrites {
                    query_set: qs,
                    beginning_of_pass_write_index: Some(i),
                    end_of_pass_write_index: Some(i + 1),
                }),
            });
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bg.inner, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
            return;
        }
        let pass = self.pass.get_or_insert_with(|| {
            crate::AtomicCounters::add(&c.passes, 1);
            self.enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("dispatches"),
                    timestamp_writes: None,
                })
                .forget_lifetime()
        });
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bg.inner, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }

    /// Run `kernel` over `threads` invocations (1-D, see [`Gpu::grid`]).
    pub fn dispatch_threads(&mut self, kernel: &Kernel, bg: &BindGroup, threads: u64) {
        if threads == 0 {
            return;
        }
        let g = self.gpu.grid(threads, kernel.workgroup_size[0]);
        self.dispatch(kernel, bg, g);
    }

    /// Copy `bytes` bytes from `src` at `src_off` to `dst` at `dst_off` (offsets and size
    /// multiples of 4).
    pub fn copy(
        &mut self,
        src: &GpuBuffer,
        src_off: u64,
        dst: &GpuBuffer,
        dst_off: u64,
        bytes: u64,
    ) {
        if bytes > 0 {
            self.end_pass();
            self.enc
                .copy_buffer_to_buffer(&src.inner, src_off, &dst.inner, dst_off, bytes);
        }
    }

    /// Zero a whole buffer.
    pub fn clear(&mut self, buf: &GpuBuffer) {
        self.end_pass();
        self.enc.clear_buffer(&buf.inner, 0, None);
    }

    /// Zero `bytes` bytes at `offset` (both multiples of 4).
    pub fn clear_range(&mut self, buf: &GpuBuffer, offset: u64, bytes: u64) {
        if bytes > 0 {
            self.end_pass();
            self.enc.clear_buffer(&buf.inner, offset, Some(bytes));
        }
    }

    /// Copy `bytes` bytes at `offset` of `buf` to the host: the returned [`Readback`] is mapped
    /// once this recorder's submission has run.
    pub fn read_back(&mut self, buf: &GpuBuffer, offset: u64, bytes: u64) -> Readback {
        self.end_pass();
        let padded = bytes.max(4).next_multiple_of(4);
        let staging = self.gpu.take_staging(padded);
        crate::AtomicCounters::add(&self.gpu.counters.readback_bytes, padded);
        self.enc
            .copy_buffer_to_buffer(&buf.inner, offset, &staging, 0, padded);
        let state = Arc::new(AtomicU8::new(0));
        let s = state.clone();
        self.enc
            .map_buffer_on_submit(&staging, wgpu::MapMode::Read, ..padded, move |r| {
                s.store(if r.is_ok() { 1 } else { 2 }, Ordering::Release)
            });
        Readback {
            staging: Some(staging),
            bytes,
            label: buf.label().to_string(),
            state,
        }
    }

    /// Finish and submit. The profiler's timestamps (if any) are resolved in the same submission.
    pub fn submit(mut self) -> Submission {
        self.end_pass();
        if let Some(p) = self.prof.take() {
            p.resolve(&mut self.enc, self.gpu);
        }
        crate::AtomicCounters::add(&self.gpu.counters.submits, 1);
        Submission(self.gpu.queue.submit([self.enc.finish()]))
    }
}

/// A submitted command buffer, to wait for ([`Gpu::wait_for`]) without reading anything back.
#[derive(Debug, Clone)]
pub struct Submission(wgpu::SubmissionIndex);

impl Gpu {
    /// Block until `s` has finished on the device (a fence: bounds how far the host runs ahead).
    pub fn wait_for(&self, s: &Submission) {
        let _ = self.device.poll(wgpu::PollType::Wait {
            submission_index: Some(s.0.clone()),
            timeout: None,
        });
    }
}
