//! Library operations behind the commands.

pub mod build;
pub mod cache;
pub mod plan;
pub mod query;
