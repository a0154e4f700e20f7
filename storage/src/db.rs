//! Opening the RocksDB database: column-family options, the stats merge operator, repair.

use std::path::Path;

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, MergeOperands, Options, DB};

use crate::config::SpoolConfig;
use crate::error::Error;
use crate::keys::Cf;

/// Options shared by every open of the database (and by repair).
fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Background flushes and compactions; 2 cores on the reference machine.
    opts.increase_parallelism(2);
    opts.set_max_background_jobs(2);
    // Sync SST/blob writes incrementally instead of in one burst at the end of a flush,
    // so that the foreground WAL fsyncs do not queue behind a large writeback.
    opts.set_bytes_per_sync(1 << 20);
    // Bound the WAL: a WAL holding a CF whose memtable is not flushed is kept alive;
    // above this size RocksDB flushes the oldest CFs so old WALs can go.
    opts.set_max_total_wal_size(256 << 20);
    opts.set_keep_log_file_num(4);
    opts.set_max_log_file_size(16 << 20);
    opts
}

fn table_options(cache: &Cache) -> BlockBasedOptions {
    let mut t = BlockBasedOptions::default();
    t.set_block_cache(cache);
    t.set_block_size(16 << 10);
    t.set_bloom_filter(10.0, false);
    t
}

fn cf_options(cf: Cf, config: &SpoolConfig, cache: &Cache) -> Options {
    let mut o = Options::default();
    o.set_block_based_table_factory(&table_options(cache));
    o.set_compression_type(DBCompressionType::Lz4);
    match cf {
        Cf::Body | Cf::Shadow => {
            o.set_write_buffer_size(config.write_buffer_bytes);
            o.set_enable_blob_files(true);
            o.set_min_blob_size(config.blob_threshold);
            o.set_blob_file_size(256 << 20);
            o.set_blob_compression_type(DBCompressionType::Lz4);
            // Removed bodies leave garbage in blob files; GC rewrites the live ones
            // during compaction so that the space comes back.
            o.set_enable_blob_gc(true);
            o.set_blob_gc_age_cutoff(0.25);
        }
        Cf::Msg => {
            o.set_write_buffer_size(config.write_buffer_bytes);
        }
        Cf::Cluster | Cf::Chunks => {
            o.set_write_buffer_size(4 << 20);
        }
        Cf::Stats => {
            o.set_write_buffer_size(4 << 20);
            o.set_merge_operator_associative("estafette_add_u64", add_u64_merge);
        }
        Cf::Sched | Cf::Event | Cf::EventByTime => {
            o.set_write_buffer_size(config.write_buffer_bytes / 4);
        }
    }
    o
}

/// Merge operator of the `stats` column family: values and operands are u64
/// big-endian, merged by wrapping addition.
///
/// A value or operand that is not 8 bytes counts as 0 (it cannot come from this crate;
/// failing the merge instead would put the whole DB into a background-error state over
/// one operator counter).
fn add_u64_merge(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let read = |b: &[u8]| -> u64 { b.try_into().map(u64::from_be_bytes).unwrap_or(0) };
    let mut sum = existing.map(read).unwrap_or(0);
    for op in operands.iter() {
        sum = sum.wrapping_add(read(op));
    }
    Some(sum.to_be_bytes().to_vec())
}

/// Opens (creating if needed) the database with every column family.
pub(crate) fn open(config: &SpoolConfig) -> Result<DB, Error> {
    let cache = Cache::new_lru_cache(config.block_cache_bytes);
    let opts = db_options();
    // The default column family only holds the writer's health probe. It is listed
    // explicitly because its memtable size matters: after a disk-full error RocksDB
    // resumes writes by itself once the free space exceeds the largest write buffer of
    // any column family (its SstFileManager polls every 5 s), and the implicit default
    // (64 MiB) would demand 64 MiB free whatever the configuration says.
    let mut default_cf = Options::default();
    default_cf.set_write_buffer_size(1 << 20);
    let cfs = std::iter::once(ColumnFamilyDescriptor::new(
        rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
        default_cf,
    ))
    .chain(
        Cf::ALL
            .iter()
            .map(|&cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(cf, config, &cache))),
    );
    DB::open_cf_descriptors(&opts, &config.path, cfs).map_err(|e| Error::Open {
        path: config.path.clone(),
        reason: e.into_string().trim_end_matches(['.', ' ']).to_string(),
    })
}

/// Opens the database read-only: no lock taken, so it works while the node
/// that owns the spool runs (admin commands read a consistent snapshot of what
/// is on disk, WAL included).
pub(crate) fn open_read_only(config: &SpoolConfig) -> Result<DB, Error> {
    let cache = Cache::new_lru_cache(config.block_cache_bytes);
    let opts = db_options();
    // Only the families the spool has: one written by an older version lacks
    // the newer ones (`chunks`), and a read-only open cannot create them.
    let existing = DB::list_cf(&opts, &config.path).unwrap_or_default();
    let cfs = std::iter::once(ColumnFamilyDescriptor::new(
        rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
        Options::default(),
    ))
    .chain(
        Cf::ALL
            .iter()
            .filter(|cf| existing.is_empty() || existing.iter().any(|e| e == cf.name()))
            .map(|&cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(cf, config, &cache))),
    );
    DB::open_cf_descriptors_read_only(&opts, &config.path, cfs, false).map_err(|e| Error::Open {
        path: config.path.clone(),
        reason: e.into_string().trim_end_matches(['.', ' ']).to_string(),
    })
}

/// RocksDB's RepairDB on the spool at `path`; see [`crate::Spool::repair`].
pub(crate) fn repair(path: &Path) -> Result<(), Error> {
    let opts = db_options();
    DB::repair(&opts, path).map_err(|e| Error::Open {
        path: path.to_path_buf(),
        reason: format!("repair failed: {}", e.into_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_merge_adds_and_tolerates_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let config = SpoolConfig::new(dir.path(), 1);
        let db = open(&config).unwrap();
        let cf = db.cf_handle("stats").unwrap();
        db.merge_cf(cf, b"k", 5u64.to_be_bytes()).unwrap();
        db.merge_cf(cf, b"k", 7u64.to_be_bytes()).unwrap();
        db.merge_cf(cf, b"k", b"bad").unwrap();
        let v = db.get_cf(cf, b"k").unwrap().unwrap();
        assert_eq!(v, 12u64.to_be_bytes());
    }
}
