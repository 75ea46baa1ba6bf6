//! [`RecordStore`]'s app-side API: open, `put`/`get`/`delete`/`list`, JSON helpers, atomic
//! [`RecordStore::transaction`]s, and [`RecordStore::subscribe`]. Every SQLite call runs on
//! tokio's blocking pool through [`crate::db::Db::call`].
//!
//! The app-side writes never notify subscribers (the app knows what it wrote); only the
//! engine's writes through the `Replica` face do. This module must not call the engine.

use std::path::Path;

use bytes::Bytes;
use rusqlite::Connection;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sync_core::Key;
use tokio::sync::broadcast;

use crate::db::{self, Db};
use crate::RecordsError;

/// How many change notifications a slow subscriber may fall behind before it misses some
/// (it then gets `RecvError::Lagged` and should reload everything it shows).
const CHANNEL_CAPACITY: usize = 256;

/// An app's local records (bytes under [`Key`]s) in one SQLite file, and the
/// [`sync_core::Replica`] the engine syncs them through. Cheap to clone: clones share the
/// connection and the subscribers.
///
/// Keys form a tree as files do: putting `notes/a` makes the folder `notes` (the engine needs
/// it to exist remotely). A record cannot sit where a folder is needed and a folder with
/// records in it cannot be replaced by a record; such writes fail with
/// [`RecordsError::InTheWay`] instead of losing data.
#[derive(Debug, Clone)]
pub struct RecordStore {
    pub(crate) db: Db,
    pub(crate) changes: broadcast::Sender<Vec<Key>>,
}

impl RecordStore {
    /// Opens (or creates) the store in the SQLite file at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<RecordStore, RecordsError> {
        Ok(RecordStore::with_db(
            Db::open(Some(path.as_ref().to_path_buf())).await?,
        ))
    }

    /// A private store in memory, gone when the last clone is dropped (for tests).
    pub async fn open_in_memory() -> Result<RecordStore, RecordsError> {
        Ok(RecordStore::with_db(Db::open(None).await?))
    }

    fn with_db(db: Db) -> RecordStore {
        let (changes, _) = broadcast::channel(CHANNEL_CAPACITY);
        RecordStore { db, changes }
    }

    /// Stores `value` as the record `key`, replacing what was there.
    pub async fn put(&self, key: &Key, value: impl Into<Bytes>) -> Result<(), RecordsError> {
        let key = key.clone();
        let value: Bytes = value.into();
        self.transaction(move |tx| tx.put(&key, &value)).await
    }

    /// The record `key`, or `None` if there is none (a folder is not a record).
    pub async fn get(&self, key: &Key) -> Result<Option<Bytes>, RecordsError> {
        let key = key.clone();
        self.db
            .call(move |conn| Ok(db::content(conn, &key)?.map(Bytes::from)))
            .await
    }

    /// Deletes the record `key`; true if there was one. Folders are left in place.
    pub async fn delete(&self, key: &Key) -> Result<bool, RecordsError> {
        let key = key.clone();
        self.transaction(move |tx| tx.delete(&key)).await
    }

    /// Every record whose key starts with `prefix` (as a string: `"no"` matches `notes/a`),
    /// in key order. `""` lists everything.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(Key, Bytes)>, RecordsError> {
        let prefix = prefix.to_owned();
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT key, content FROM records WHERE folder = 0 AND key >= ?1 ORDER BY key",
                )?;
                let mut rows = stmt.query([prefix.as_str()])?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let key: String = r.get(0)?;
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    let content: Option<Vec<u8>> = r.get(1)?;
                    let key = Key::new(&key)
                        .map_err(|e| RecordsError::Corrupt(format!("key {key:?}: {e}")))?;
                    out.push((key, Bytes::from(content.unwrap_or_default())));
                }
                Ok(out)
            })
            .await
    }

    /// Stores `value` as JSON under `key`.
    pub async fn put_json<T: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &T,
    ) -> Result<(), RecordsError> {
        let bytes = serde_json::to_vec(value).map_err(|source| RecordsError::Json {
            key: key.clone(),
            source,
        })?;
        self.put(key, bytes).await
    }

    /// The record `key` read as JSON of type `T`, or `None` if there is none.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        key: &Key,
    ) -> Result<Option<T>, RecordsError> {
        match self.get(key).await? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| RecordsError::Json {
                        key: key.clone(),
                        source,
                    })
            }
        }
    }

    /// Runs `f` in one SQLite transaction: its writes are all committed when it returns
    /// `Ok`, and none when it returns `Err` (or any of its writes fails). `f` runs on a blocking
    /// thread, so it must not await.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use store_records::RecordStore;
    /// use sync_core::Key;
    /// let store = RecordStore::open_in_memory().await.unwrap();
    /// let (a, b) = (Key::new("a").unwrap(), Key::new("b").unwrap());
    /// store
    ///     .transaction(move |tx| {
    ///         tx.put(&a, b"1")?;
    ///         tx.put(&b, b"2")?;
    ///         Ok(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(store.list("").await.unwrap().len(), 2);
    /// # });
    /// ```
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, RecordsError>
    where
        F: FnOnce(&mut RecordTx<'_>) -> Result<T, RecordsError> + Send + 'static,
        T: Send + 'static,
    {
        self.db
            .call(move |conn: &mut Connection| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let out = f(&mut RecordTx {
                    conn: &tx,
                    now: db::now_millis(),
                })?;
                tx.commit()?;
                Ok(out)
            })
            .await
    }

    /// Change notifications: every write the engine makes (a sync downloading or removing a
    /// record) sends the keys it changed, so the app can refresh what it shows. App-side writes
    /// are not sent. A receiver that falls far behind gets `Lagged` and should reload.
    pub fn subscribe(&self) -> broadcast::Receiver<Vec<Key>> {
        self.changes.subscribe()
    }

    /// Sends `keys` to the subscribers (none listening is fine).
    pub(crate) fn notify(&self, keys: Vec<Key>) {
        if !keys.is_empty() {
            let _ = self.changes.send(keys);
        }
    }
}

/// The writes of one [`RecordStore::transaction`].
#[derive(Debug)]
pub struct RecordTx<'a> {
    conn: &'a Connection,
    now: u64,
}

impl RecordTx<'_> {
    /// Stores `value` as the record `key` (creating its folders), replacing what was there.
    pub fn put(&mut self, key: &Key, value: impl AsRef<[u8]>) -> Result<(), RecordsError> {
        db::check_parents(self.conn, key)?;
        if db::has_children(self.conn, key)? {
            return Err(RecordsError::InTheWay {
                key: key.clone(),
                message: "a folder with records in it is in the way; delete its records first"
                    .into(),
            });
        }
        db::make_parents(self.conn, key, self.now)?;
        db::upsert_record(self.conn, key, value.as_ref(), self.now)?;
        Ok(())
    }

    /// The record `key` as this transaction sees it.
    pub fn get(&self, key: &Key) -> Result<Option<Bytes>, RecordsError> {
        Ok(db::content(self.conn, key)?.map(Bytes::from))
    }

    /// Deletes the record `key`; true if there was one.
    pub fn delete(&mut self, key: &Key) -> Result<bool, RecordsError> {
        Ok(db::delete_row(self.conn, key, true)?)
    }
}
