//! placeholder
pub mod oci;
pub mod config;
pub mod bundle_spec;
pub mod compress;
pub mod cpio;
pub mod layer;
pub mod tarball;
pub mod tree;
pub mod lock;
pub mod resolve;
pub mod workspace;
pub mod actions;
pub mod formats;
pub mod lower;
