//! A TCP proxy on loopback that a test can cut, heal and slow down: the
//! network faults of issue 8 item 2, between real node processes, without
//! touching the host's network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::AbortHandle;

#[derive(Default)]
struct State {
    cut: AtomicBool,
    delay_ms: AtomicU64,
    /// Bytes forwarded, both ways.
    bytes: AtomicU64,
    live: Mutex<Vec<AbortHandle>>,
}

/// Forwards `127.0.0.1:port` to a target until dropped.
pub struct Proxy {
    /// The port it listens on.
    pub port: u16,
    state: Arc<State>,
    accept: AbortHandle,
}

impl Proxy {
    /// Listens on `127.0.0.1:port` and forwards every connection to
    /// `target`.
    pub async fn start(port: u16, target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let state = Arc::new(State::default());
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if st.cut.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let st2 = st.clone();
                let task = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        pipe(inbound, outbound, st2).await;
                    }
                });
                let mut live = st.live.lock().await;
                live.retain(|h| !h.is_finished());
                live.push(task.abort_handle());
            }
        })
        .abort_handle();
        Ok(Self {
            port,
            state,
            accept,
        })
    }

    /// Drops every open connection and refuses new ones (they are accepted
    /// and closed at once, as a dead link would).
    pub async fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for h in self.state.live.lock().await.drain(..) {
            h.abort();
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Holds every chunk this long before passing it on (0: none).
    pub fn delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Bytes forwarded so far, both directions.
    pub fn bytes(&self) -> u64 {
        self.state.bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut live) = self.state.live.try_lock() {
            for h in live.drain(..) {
                h.abort();
            }
        }
    }
}

async fn pipe(a: TcpStream, b: TcpStream, st: Arc<State>) {
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    let st2 = st.clone();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match ar.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let d = st.delay_ms.load(Ordering::SeqCst);
            if d > 0 {
                tokio::time::sleep(Duration::from_millis(d)).await;
            }
            if bw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            st.bytes.fetch_add(n as u64, Ordering::SeqCst);
        }
        let _ = bw.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match br.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let d = st2.delay_ms.load(Ordering::SeqCst);
            if d > 0 {
                tokio::time::sleep(Duration::from_millis(d)).await;
            }
            if aw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            st2.bytes.fetch_add(n as u64, Ordering::SeqCst);
        }
        let _ = aw.shutdown().await;
    };
    tokio::join!(up, down);
}
