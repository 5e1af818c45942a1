//! Library operations behind the commands.

pub mod build;
pub mod cache;
pub mod config;
pub mod plan;
pub mod query;
pub mod run;
