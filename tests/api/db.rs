//! A backend-neutral look at a test server's database, as an operator (or a thief with
//! a dump) would have: SQLite file or PostgreSQL database, whichever the suite runs on.
//!
//! The whole suite runs once per backend (`scripts/test`): `TEST_STORE=postgres`
//! with `TEST_POSTGRES_URL` (a throwaway cluster's URL, from `scripts/pg-cluster`)
//! gives every `TestApp` a fresh database of its own on that cluster.
//!
//! Queries are written once with `?1`-style parameters; values come back as text
//! (integers in decimal, blobs in lower-case hex, NULL as `None`).

use std::path::PathBuf;

pub enum TestDb {
    Sqlite(PathBuf),
    Postgres(String),
}

/// The backend this run of the suite uses.
pub fn postgres_run() -> bool {
    std::env::var("TEST_STORE").is_ok_and(|b| b == "postgres")
}

/// The throwaway cluster's URL (`scripts/pg-cluster`), if the run has one.
pub fn cluster_url() -> Option<String> {
    std::env::var("TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Runs `f` on a thread of its own with a small runtime, so that synchronous test code
/// (and code already inside a runtime) can talk to PostgreSQL.
pub fn blocking_pg<T: Send>(f: impl AsyncFnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f())
        })
        .join()
        .unwrap()
    })
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test cluster: {e}"));
    tokio::spawn(conn);
    client
}

/// A new, empty database on the test cluster; returns its URL.
pub fn fresh_database() -> String {
    let admin = cluster_url()
        .expect("TEST_STORE=postgres needs TEST_POSTGRES_URL (scripts/test sets both)");
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    blocking_pg(async || {
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    });
    database_url(&admin, &name)
}

/// A key-encryption key (32 random bytes, mode 0600) in `dir`, for a PostgreSQL app's
/// keys (they live in its database, sealed under it).
pub fn write_kek(dir: &std::path::Path) -> PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("kek.bin");
    let mut kek = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut kek).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    f.write_all(&kek).unwrap();
    path
}

/// `admin` (a URL ending in `/postgres`) with another database name.
pub fn database_url(admin: &str, name: &str) -> String {
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{name}")
}

fn literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// `?N` placeholders replaced by quoted literals (PostgreSQL's simple protocol returns
/// every value as text, which is what these helpers want).
fn inline(sql: &str, params: &[&str]) -> String {
    let mut out = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' {
            let mut n = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                n.push(*d);
                chars.next();
            }
            let i: usize = n.parse().expect("?N placeholder");
            out.push_str(&literal(params[i - 1]));
        } else {
            out.push(c);
        }
    }
    out
}

/// A PostgreSQL text value as SQLite would hold it: bytea without its `\x`, and JSON
/// (jsonb prints `{"a": 1}`) in serde_json's compact form, as latchkey writes it.
fn normalise(v: &str) -> String {
    if let Some(hex) = v.strip_prefix("\\x") {
        return hex.to_owned();
    }
    if v.starts_with('{') || v.starts_with('[') {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(v) {
            return json.to_string();
        }
    }
    v.to_owned()
}

impl TestDb {
    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDb::Postgres(_))
    }

    /// Every row of `sql`, each column as text.
    pub fn rows(&self, sql: &str, params: &[&str]) -> Vec<Vec<Option<String>>> {
        match self {
            TestDb::Sqlite(path) => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .unwrap();
                let mut st = conn.prepare(sql).unwrap();
                let cols = st.column_count();
                st.query_map(rusqlite::params_from_iter(params), |r| {
                    (0..cols)
                        .map(|i| {
                            use rusqlite::types::ValueRef;
                            Ok(match r.get_ref(i)? {
                                ValueRef::Null => None,
                                ValueRef::Integer(n) => Some(n.to_string()),
                                ValueRef::Real(f) => Some(f.to_string()),
                                ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                                ValueRef::Blob(b) => Some(hex::encode(b)),
                            })
                        })
                        .collect()
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
            }
            TestDb::Postgres(url) => {
                let sql = inline(sql, params);
                blocking_pg(async || {
                    let client = connect(url).await;
                    let mut rows = Vec::new();
                    for m in client.simple_query(&sql).await.unwrap() {
                        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                            rows.push((0..r.len()).map(|i| r.get(i).map(normalise)).collect());
                        }
                    }
                    rows
                })
            }
        }
    }

    /// Runs a statement that changes the database; returns the rows it changed.
    pub fn exec(&self, sql: &str, params: &[&str]) -> u64 {
        match self {
            TestDb::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .unwrap();
                conn.execute(sql, rusqlite::params_from_iter(params))
                    .unwrap() as u64
            }
            TestDb::Postgres(url) => {
                let sql = inline(sql, params);
                blocking_pg(async || {
                    let client = connect(url).await;
                    client
                        .simple_query(&sql)
                        .await
                        .unwrap()
                        .iter()
                        .map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => *n,
                            _ => 0,
                        })
                        .sum()
                })
            }
        }
    }

    /// Every row of every table as text (PostgreSQL; bytea in hex), for tests that a
    /// secret is stored nowhere.
    pub fn dump(&self) -> String {
        let tables = self.column(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        );
        let mut out = String::new();
        for table in tables.into_iter().flatten() {
            for row in self.column(&format!("SELECT row_to_json(t)::text FROM {table} t"), &[]) {
                out.push_str(&row.unwrap_or_default());
                out.push('\n');
            }
        }
        out
    }

    /// The first column of every row.
    pub fn column(&self, sql: &str, params: &[&str]) -> Vec<Option<String>> {
        self.rows(sql, params)
            .into_iter()
            .map(|mut r| r.swap_remove(0))
            .collect()
    }

    /// The one value `sql` returns (first column of the first row).
    pub fn value(&self, sql: &str, params: &[&str]) -> Option<String> {
        self.rows(sql, params)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no row from {sql}"))
            .swap_remove(0)
    }

    /// A number `sql` returns (a count, say).
    pub fn count(&self, sql: &str, params: &[&str]) -> i64 {
        self.value(sql, params)
            .expect("a number")
            .parse()
            .expect("a number")
    }

    /// A text value `sql` returns (an id, say).
    pub fn text(&self, sql: &str, params: &[&str]) -> String {
        self.value(sql, params).expect("a value")
    }
}

/// A database stall held by another process for `hold`: SQLite's write lock
/// (`BEGIN IMMEDIATE`, a stuck writer) or an exclusive lock on PostgreSQL's `sessions`
/// table (reads of it wait too). Returns once the lock is held; join the handle to wait
/// for its release.
pub struct Stall(Option<std::thread::JoinHandle<()>>);

impl Stall {
    pub fn release_wait(mut self) {
        if let Some(h) = self.0.take() {
            h.join().unwrap();
        }
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

impl TestDb {
    pub fn stall(&self, hold: std::time::Duration) -> Stall {
        let (held, is_held) = std::sync::mpsc::channel();
        let handle = match self {
            TestDb::Sqlite(path) => {
                let path = path.clone();
                std::thread::spawn(move || {
                    let conn = rusqlite::Connection::open(path).unwrap();
                    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                    held.send(()).unwrap();
                    std::thread::sleep(hold);
                    conn.execute_batch("ROLLBACK").unwrap();
                })
            }
            TestDb::Postgres(url) => {
                let url = url.clone();
                std::thread::spawn(move || {
                    blocking_pg(async || {
                        let client = connect(&url).await;
                        client
                            .batch_execute("BEGIN; LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
                            .await
                            .unwrap();
                        held.send(()).unwrap();
                        tokio::time::sleep(hold).await;
                        client.batch_execute("ROLLBACK").await.unwrap();
                    })
                })
            }
        };
        is_held.recv().expect("the stall holds its lock");
        Stall(Some(handle))
    }
}
