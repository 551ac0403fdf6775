//! The filesystem store our arrays live in: zarrs' `FilesystemStore` for reads and listing, and
//! writes that do not `fsync` each file.
//!
//! zarrs' store calls `sync_all` after every write (the metadata, each shard, each partial
//! append): for a dataset of small cases that is thousands of synchronous disk flushes per run,
//! and it made preprocessing Hippocampus ~40% slower than our earlier hand-written store. The
//! project's durability does not rest on per-file flushes: the cache syncs the file system once
//! per run before it publishes (`engine::cache`), and a lookup rebuilds an artifact whose files
//! do not match the sizes and hashes in its manifest. So writes here go to the page cache and
//! are flushed with the rest of the run.
//!
//! Writes of one key are serialized (a lock per key, as in zarrs' store); zarrs' file handle
//! cache stays disabled (its default), so a read never sees a handle opened before a write.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use zarrs::filesystem::FilesystemStore;
use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::{
    Bytes, ListableStorageTraits, MaybeBytesIterator, OffsetBytesIterator, ReadableStorageTraits, StorageError,
    StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix, WritableStorageTraits,
};

/// A node's filesystem store (see the module docs).
#[derive(Debug)]
pub(super) struct LocalStore {
    fs: FilesystemStore,
    locks: Mutex<HashMap<StoreKey, Arc<Mutex<()>>>>,
}

impl LocalStore {
    pub(super) fn new(dir: &Path) -> Result<LocalStore, String> {
        let fs = FilesystemStore::new(dir).map_err(|e| e.to_string())?;
        Ok(LocalStore { fs, locks: Mutex::default() })
    }

    fn path(&self, key: &StoreKey) -> PathBuf {
        self.fs.key_to_fspath(key)
    }

    fn lock(&self, key: &StoreKey) -> Arc<Mutex<()>> {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default().clone()
    }

    /// Opens the file of `key` for writing, creating its folder.
    fn open(&self, key: &StoreKey, truncate: bool) -> Result<fs::File, StorageError> {
        let path = self.path(key);
        if let Some(parent) = path.parent() {
            if !parent.exists() {
                fs::create_dir_all(parent)?;
            }
        }
        Ok(OpenOptions::new().write(true).create(true).truncate(truncate).open(path)?)
    }
}

impl ReadableStorageTraits for LocalStore {
    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        self.fs.get_partial_many(key, byte_ranges)
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        self.fs.size_key(key)
    }

    fn supports_get_partial(&self) -> bool {
        true
    }
}

impl ListableStorageTraits for LocalStore {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        self.fs.list()
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        self.fs.list_prefix(prefix)
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        self.fs.list_dir(prefix)
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        self.fs.size_prefix(prefix)
    }
}

impl WritableStorageTraits for LocalStore {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        let lock = self.lock(key);
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.open(key, true)?.write_all(&value)?;
        Ok(())
    }

    fn set_partial_many(&self, key: &StoreKey, offset_values: OffsetBytesIterator) -> Result<(), StorageError> {
        let lock = self.lock(key);
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        let file = self.open(key, false)?;
        for (offset, value) in offset_values {
            file.write_all_at(&value, offset)?;
        }
        Ok(())
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        let lock = self.lock(key);
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        match fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        let _all = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        match fs::remove_dir_all(self.fs.prefix_to_fs_path(prefix)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn supports_set_partial(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_partial_writes_reads_and_erases() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path()).unwrap();
        let k = StoreKey::new("a/c.0").unwrap();
        s.set(&k, Bytes::from_static(b"hello")).unwrap();
        assert_eq!(s.get(&k).unwrap().unwrap().as_ref(), b"hello");
        // in place: the rest of the file is kept, the file grows past its end
        s.set_partial_many(
            &k,
            Box::new([(1u64, Bytes::from_static(b"EL")), (7, Bytes::from_static(b"!"))].into_iter()),
        )
        .unwrap();
        assert_eq!(s.get(&k).unwrap().unwrap().as_ref(), b"hELlo\0\0!");
        // set truncates
        s.set(&k, Bytes::from_static(b"x")).unwrap();
        assert_eq!(s.size_key(&k).unwrap(), Some(1));
        assert_eq!(s.list().unwrap(), vec![k.clone()]);
        s.erase(&k).unwrap();
        s.erase(&k).unwrap();
        assert!(s.get(&k).unwrap().is_none());
        s.set(&k, Bytes::from_static(b"y")).unwrap();
        s.erase_prefix(&StorePrefix::new("a/").unwrap()).unwrap();
        assert!(s.list().unwrap().is_empty());
    }
}
