//! The engine (placeholder, being written).
#![allow(missing_docs)]
pub struct Engine;
pub struct EngineConfig;
pub struct SyncFailed;
pub struct SyncReport;
