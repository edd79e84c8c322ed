//! Run folders and photo folders in object storage (`s3://`, `gs://`, `az://`, `file://`), through
//! the `object_store` crate.
//!
//! The pipeline and its stages only ever see a local run folder. [`sync::VenueSync`] keeps that
//! folder in step with a remote one through the [`StageSync`] hooks the stage runner calls: remote
//! commits are pulled as `stage.json` records only, a stage's files are downloaded when a later stage
//! that runs reads them, a committed stage is uploaded with its `stage.json` last, and a stage's
//! resumable state (`RUN/.work/<stage>/`: training checkpoints, rendered frames) is uploaded as it is
//! written. [`lease::Lease`] gives a remote run folder one writer at a time, like
//! `flythrough_core::RunLock` does for a local one.

pub mod lease;
pub mod remote;
pub mod sync;

pub use flythrough_core::Stage;
pub use lease::{Lease, LeaseError};
pub use remote::{Remote, StoreError, is_url};
pub use sync::{RemotePhotos, RemoteRun, VenueSync};

/// What the stage runner calls around each stage so a remote run folder stays in step. Every method
/// returns a one-line error naming the URL.
pub trait StageSync: Send + Sync + std::fmt::Debug {
    /// The capture stage's input hash when the photos are remote (from the listing, so that checking
    /// whether capture is up to date downloads nothing).
    fn photos_fingerprint(&self) -> Option<String>;
    /// When the photos are remote: their names (from the listing) and the folder's URL, what the
    /// config's photo names are checked against before any stage runs.
    fn photo_listing(&self) -> Option<(Vec<String>, String)> {
        None
    }
    /// Before the runner looks at `stage`: bring its resumable state from the remote, if any.
    fn before_stage(&self, stage: Stage) -> Result<(), String>;
    /// At the start of the stage's body (it runs): bring what it reads (earlier stages' files, the
    /// photos for capture and privacy) and start uploading its resumable state as it is written.
    fn stage_inputs(&self, stage: Stage) -> Result<(), String>;
    /// After the stage: upload it if it was committed (or found up to date) and the remote lacks it;
    /// on failure, the resumable state has been uploaded and nothing else changes.
    fn after_stage(&self, stage: Stage, committed: bool) -> Result<(), String>;
    /// Before report.html is written: bring the small files the report reads.
    fn before_report(&self) -> Result<(), String>;
    /// After report.html is written: upload it.
    fn after_report(&self) -> Result<(), String>;
}
