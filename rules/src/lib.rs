//! placeholder
pub mod actions;
pub mod bundle_spec;
pub mod compress;
pub mod config;
pub mod cpio;
pub mod formats;
pub mod gc;
pub mod indexes;
pub mod layer;
pub mod lock;
pub mod lower;
pub mod oci;
pub mod resolve;
pub mod tarball;
pub mod tree;
pub mod workspace;
