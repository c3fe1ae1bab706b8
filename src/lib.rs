//! mailreplica (architecture described below once the layers settle).

pub mod cli;
pub mod config;
pub mod engine;
pub mod mailstore;
pub mod model;
pub mod reconcile;
pub mod state;
