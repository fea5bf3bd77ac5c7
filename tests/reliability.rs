//! Reliability and security, end to end: a worker killed mid-batch, a server stopped with SIGTERM
//! while it works, a database that goes away and comes back, several instances on one database,
//! hostile input, and the promises of the security model (organizations, tokens, signed links,
//! logs). Most tests run the real `gdprd` binary against the test's own database.
//!
//! The heavier versions of these tests (more kills, longer outages, more instances) are
//! `#[ignore]`d here and run by `scripts/reliability.sh`.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

#[path = "reliability/crash.rs"]
mod crash;
#[path = "reliability/hostile.rs"]
mod hostile;
#[path = "reliability/instances.rs"]
mod instances;
#[path = "reliability/outage.rs"]
mod outage;
#[path = "reliability/security.rs"]
mod security;
#[path = "reliability/shutdown.rs"]
mod shutdown;
#[path = "reliability/support.rs"]
mod support;
