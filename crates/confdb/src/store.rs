//! The SQLite file behind confdb: signed schema documents and databag revisions.
//!
//! WAL with `synchronous=FULL`, so a commit that returned survives `kill -9` and a power cut.
//! Each revision is a full JSON snapshot of the databag; the newest [`HISTORY_LIMIT`]
//! revisions per schema are kept.

use crate::error::Error;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Revisions kept per schema; older ones are deleted by the commit that passes the limit.
pub const HISTORY_LIMIT: u64 = 100;

const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS schemas (
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    signed BLOB NOT NULL,
    added INTEGER NOT NULL,
    PRIMARY KEY (account, name)
);
CREATE TABLE IF NOT EXISTS revisions (
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    data TEXT NOT NULL,
    changed TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (account, name, revision)
);
";

#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

/// A stored schema with its newest databag.
#[derive(Debug)]
pub struct StoredSchema {
    pub account: String,
    pub name: String,
    pub signed: Vec<u8>,
    pub revision: u64,
    pub data: Value,
}

/// One row of history.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RevisionInfo {
    pub revision: u64,
    /// Unix time of the commit, in seconds.
    pub created: i64,
    /// Storage paths changed by this revision, relative to the one before.
    pub changed: Vec<String>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Store {
    pub async fn open(dir: &Path) -> Result<Store, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("confdb.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|e| Error::Database {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let store = Store { pool, path };
        sqlx::raw_sql(SCHEMA_SQL)
            .execute(&store.pool)
            .await
            .map_err(|e| store.err(e))?;
        Ok(store)
    }

    fn err(&self, e: sqlx::Error) -> Error {
        Error::Database {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// A revision that already exists means another process wrote to this file behind the
    /// back of this one's in-memory copy: say so instead of quoting SQLite.
    fn commit_err(&self, e: sqlx::Error, account: &str, name: &str, revision: u64) -> Error {
        let duplicate = matches!(&e, sqlx::Error::Database(db) if db.is_unique_violation());
        if duplicate {
            return Error::Database {
                path: self.path.clone(),
                message: format!(
                    "revision {revision} of {account}/{name} was already written by another process (only one process may write a confdb at a time; retry after it stops)"
                ),
            };
        }
        self.err(e)
    }

    pub async fn load_all(&self) -> Result<Vec<StoredSchema>, Error> {
        let rows = sqlx::query(
            "SELECT s.account, s.name, s.signed,
                    (SELECT r.revision FROM revisions r WHERE r.account = s.account AND r.name = s.name ORDER BY r.revision DESC LIMIT 1) AS revision,
                    (SELECT r.data FROM revisions r WHERE r.account = s.account AND r.name = s.name ORDER BY r.revision DESC LIMIT 1) AS data
             FROM schemas s ORDER BY s.account, s.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let account: String = row.try_get("account").map_err(|e| self.err(e))?;
            let name: String = row.try_get("name").map_err(|e| self.err(e))?;
            let signed: Vec<u8> = row.try_get("signed").map_err(|e| self.err(e))?;
            let revision: Option<i64> = row.try_get("revision").map_err(|e| self.err(e))?;
            let data: Option<String> = row.try_get("data").map_err(|e| self.err(e))?;
            let data = match data {
                Some(text) => serde_json::from_str(&text).map_err(|e| Error::Database {
                    path: self.path.clone(),
                    message: format!("revision data of {account}/{name} is not JSON: {e}"),
                })?,
                None => Value::Object(Default::default()),
            };
            out.push(StoredSchema {
                account,
                name,
                signed,
                revision: revision.unwrap_or(0) as u64,
                data,
            });
        }
        Ok(out)
    }

    pub async fn put_schema(&self, account: &str, name: &str, signed: &[u8]) -> Result<(), Error> {
        sqlx::query("INSERT INTO schemas (account, name, signed, added) VALUES (?, ?, ?, ?)
                     ON CONFLICT (account, name) DO UPDATE SET signed = excluded.signed, added = excluded.added")
            .bind(account)
            .bind(name)
            .bind(signed)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Removes the schema and all its revisions in one transaction.
    pub async fn remove_schema(&self, account: &str, name: &str) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        for sql in [
            "DELETE FROM revisions WHERE account = ? AND name = ?",
            "DELETE FROM schemas WHERE account = ? AND name = ?",
        ] {
            sqlx::query(sql)
                .bind(account)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Stores a new revision and trims the history, in one durable transaction.
    pub async fn commit(
        &self,
        account: &str,
        name: &str,
        revision: u64,
        data: &Value,
        changed: &[String],
    ) -> Result<(), Error> {
        let data_text = data.to_string();
        let changed_text = serde_json::Value::from(changed.to_vec()).to_string();
        let mut tx: Transaction<'_, Sqlite> = self.pool.begin().await.map_err(|e| self.err(e))?;
        sqlx::query("INSERT INTO revisions (account, name, revision, data, changed, created) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(account)
            .bind(name)
            .bind(revision as i64)
            .bind(data_text)
            .bind(changed_text)
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.commit_err(e, account, name, revision))?;
        if revision > HISTORY_LIMIT {
            sqlx::query("DELETE FROM revisions WHERE account = ? AND name = ? AND revision <= ?")
                .bind(account)
                .bind(name)
                .bind((revision - HISTORY_LIMIT) as i64)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    pub async fn history(&self, account: &str, name: &str) -> Result<Vec<RevisionInfo>, Error> {
        let rows = sqlx::query("SELECT revision, created, changed FROM revisions WHERE account = ? AND name = ? ORDER BY revision")
            .bind(account)
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let revision: i64 = row.try_get("revision").map_err(|e| self.err(e))?;
            let created: i64 = row.try_get("created").map_err(|e| self.err(e))?;
            let changed: String = row.try_get("changed").map_err(|e| self.err(e))?;
            let changed = serde_json::from_str(&changed).unwrap_or_default();
            out.push(RevisionInfo {
                revision: revision as u64,
                created,
                changed,
            });
        }
        Ok(out)
    }

    pub async fn revision_data(
        &self,
        account: &str,
        name: &str,
        revision: u64,
    ) -> Result<Option<Value>, Error> {
        let row = sqlx::query(
            "SELECT data FROM revisions WHERE account = ? AND name = ? AND revision = ?",
        )
        .bind(account)
        .bind(name)
        .bind(revision as i64)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get("data").map_err(|e| self.err(e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Database {
                path: self.path.clone(),
                message: format!("revision {revision} of {account}/{name} is not JSON: {e}"),
            })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn durable_settings_and_bounded_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(sync, 2, "synchronous must be FULL");
        store.put_schema("acme", "s", b"doc").await.unwrap();
        for rev in 1..=HISTORY_LIMIT + 5 {
            store
                .commit("acme", "s", rev, &json!({ "n": rev }), &["n".to_string()])
                .await
                .unwrap();
        }
        let history = store.history("acme", "s").await.unwrap();
        assert_eq!(history.len() as u64, HISTORY_LIMIT);
        assert_eq!(history[0].revision, 6);
        assert_eq!(history[0].changed, vec!["n".to_string()]);
        assert_eq!(store.revision_data("acme", "s", 5).await.unwrap(), None);
        assert_eq!(
            store.revision_data("acme", "s", 6).await.unwrap(),
            Some(json!({"n": 6}))
        );
        let dup = store
            .commit("acme", "s", 6, &json!({}), &[])
            .await
            .unwrap_err();
        assert!(
            dup.to_string()
                .contains("already written by another process"),
            "{dup}"
        );
        let all = store.load_all().await.unwrap();
        assert_eq!(
            (all[0].revision, &all[0].data),
            (HISTORY_LIMIT + 5, &json!({"n": HISTORY_LIMIT + 5}))
        );
        store.remove_schema("acme", "s").await.unwrap();
        assert!(store.load_all().await.unwrap().is_empty());
        assert!(store.history("acme", "s").await.unwrap().is_empty());
    }
}
