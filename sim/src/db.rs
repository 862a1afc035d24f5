//! The "database" behind the cache: answers `GET <key>\n` with the key's
//! canonical value after a simulated delay, and counts queries per key.

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

/// The canonical value of a key.
pub fn value_of(key: &str) -> Vec<u8> {
    format!("row-of-{key}").into_bytes()
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
                *counts.borrow_mut().entry(key.clone()).or_default() += 1;
                tokio::time::sleep(QUERY_TIME).await;
                let mut reply = value_of(&key);
                reply.push(b'\n');
                if w.write_all(&reply).await.is_err() {
                    break;
                }
            }
        });
    }
}
