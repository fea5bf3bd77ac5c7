//! End-to-end tests: the real app on a loopback port, a fresh PostgreSQL database per test.

mod auth;
mod cli;
mod errors;
mod helpers;
mod index_writes;
mod limits;
mod notifications;
mod openapi;
mod requests;
mod services;
mod subjects;
