//! The "database" behind the cache: answers `GET <key>\n` with the key's
//! row after a simulated delay, and counts queries per key. Each answer is
//! `row-of-<key>#<n>` for the n-th query of the key: the same row to the
//! application, a distinct value to the checkers (every value written to
//! the cache names its write).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use turmoil::net::TcpListener;

/// Port the database listens on.
pub const PORT: u16 = 5432;
/// How long a query takes.
pub const QUERY_TIME: Duration = Duration::from_millis(50);

/// Queries served, per key.
pub type Counts = Rc<RefCell<BTreeMap<String, u64>>>;

/// The row of `key`, as the `n`-th answer (or any other tag).
pub fn row(key: &str, tag: impl std::fmt::Display) -> Vec<u8> {
    format!("row-of-{key}#{tag}").into_bytes()
}

/// Whether `v` is a row of `key` (whichever answer it came from).
pub fn is_row_of(key: &str, v: &[u8]) -> bool {
    let prefix = format!("row-of-{key}#");
    v.starts_with(prefix.as_bytes())
}

/// Serves queries until the simulation ends.
pub async fn serve(counts: Counts) -> turmoil::Result {
    let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (sock, _) = listener.accept().await?;
        let counts = counts.clone();
        tokio::task::spawn_local(async move {
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let key = line.trim_start_matches("GET ").to_string();
                let n = {
                    let mut c = counts.borrow_mut();
                    let n = c.entry(key.clone()).or_default();
                    *n += 1;
                    *n
                };
                tokio::time::sleep(QUERY_TIME).await;
                let mut reply = row(&key, n);
                reply.push(b'\n');
                if w.write_all(&reply).await.is_err() {
                    break;
                }
            }
        });
    }
}
