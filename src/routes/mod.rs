//! HTTP handlers. Each returns a complete response, including for failures, so that
//! cookie changes made before a failure (such as removing the login cookie) still
//! reach the browser.

pub mod auth;
pub mod health;
pub mod pages;
