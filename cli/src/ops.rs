//! Library operations behind the commands.

pub mod build;
