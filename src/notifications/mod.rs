//! Completion notifications: a client registers an endpoint (or gives a `callbackUrl` per
//! request), and every status change of its requests is POSTed there, signed per Standard
//! Webhooks with the client's secrets.
//!
//! A trigger on `gdpr_requests` writes each change to the `notifications` outbox in the
//! transaction that makes it; [`crate::worker::notify`] delivers the outbox with retries and
//! logs every attempt.

pub mod model;
pub mod store;
