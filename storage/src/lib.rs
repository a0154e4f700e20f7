//! placeholder
pub use rocksdb as _rocksdb;
