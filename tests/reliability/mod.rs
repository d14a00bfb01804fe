//! Load and fault harness: the real app, OpenID provider and fault-injecting
//! Loki receiver, driven by many signed-in clients while the receiver fails
//! in one way per run. See `docs/reliability.md` for the figures.
#![allow(dead_code)]

pub mod faulty_loki;
pub mod load;
pub mod scenario;
pub mod table;
