//! nixtla: a web service where people sign in with OpenID Connect and every step of
//! their activity is logged, shipped straight to Grafana Loki.
//!
//! `server::serve` wires the parts together: `config` validates the settings,
//! `telemetry` installs logging (stdout and Loki), `auth` handles sign-in, `app`
//! assembles the routes and `activity` defines the logged events.

pub mod activity;
pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod healthcheck;
pub mod http_metrics;
pub mod loki;
pub mod routes;
pub mod secret;
pub mod server;
pub mod telemetry;

pub use server::serve;
