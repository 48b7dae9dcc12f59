//! Shared helpers for the spire-server integration tests.

pub mod pg;
