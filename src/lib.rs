//! gdprd: GDPR data-subject requests over the Genesys Cloud GDPR API.
//!
//! Where to look: `http/` is the API surface (one file per resource), `wire` the Genesys models,
//! `index/` the subject index and identifier normalization, `auth/` clients and tokens,
//! `requests/` GDPR requests and their lifecycle, `worker/` the queue and the jobs that run
//! them, `catalog/` the declared data services and what executes them, `notifications/` the
//! endpoints clients are told of status changes at, `seed/` the demo data, `config` every
//! setting.

pub mod auth;
pub mod catalog;
pub mod commands;
pub mod config;
pub mod copy;
pub mod db;
pub mod http;
pub mod index;
pub mod notifications;
pub mod org;
pub mod outbound;
pub mod ratelimit;
pub mod requests;
pub mod secrets;
pub mod seed;
pub mod state;
pub mod telemetry;
pub mod wire;
pub mod worker;
