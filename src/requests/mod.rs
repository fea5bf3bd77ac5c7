//! GDPR requests: what a client submits, how it is accepted, and how it is read back.
//! The work itself is done by the worker (`crate::worker`) through the catalog.

pub mod create;
pub mod mask;
pub mod model;
pub mod store;
pub mod terms;
