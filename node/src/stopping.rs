//! Stopping while clients are still connected.
//!
//! tonic's graceful shutdown waits for every open connection to close. A
//! client that keeps a stream open and stops reading never lets it close:
//! HTTP/2 flow control holds the data queued for it, and the node would
//! wait for it until killed, without its last checkpoint. So streams end
//! as soon as the node stops ([`send`]), and the servers give open calls
//! [`GRACE`] to finish before their connections are dropped
//! ([`serve_until_stopped`]).

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tonic::Status;

/// How long open calls have to finish once the node stops.
pub const GRACE: Duration = Duration::from_secs(5);

/// Runs `serve` (a server with graceful shutdown on `stopping`) until it
/// ends, or until [`GRACE`] after `stopping`: then the server is dropped
/// with the connections that still hold it up (they are closed when the
/// runtime ends).
pub async fn serve_until_stopped<E>(
    serve: impl Future<Output = Result<(), E>>,
    mut stopping: watch::Receiver<bool>,
    server: &str,
) -> Result<(), E> {
    tokio::pin!(serve);
    tokio::select! {
        r = &mut serve => r,
        () = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(GRACE).await;
        } => {
            tracing::warn!(server, "clients still connected {} s after the stop: closing their connections", GRACE.as_secs());
            Ok(())
        }
    }
}

/// Sends `item` on a server stream unless the node stops first, when the
/// stream ends with UNAVAILABLE and `resume` (if there is room for it: a
/// client that does not read gets nothing more). False: end the stream.
pub async fn send<T>(
    tx: &mpsc::Sender<Result<T, Status>>,
    item: Result<T, Status>,
    stopping: &mut watch::Receiver<bool>,
    resume: &str,
) -> bool {
    if *stopping.borrow() {
        return end(tx, resume);
    }
    tokio::select! {
        sent = tx.send(item) => sent.is_ok(),
        _ = stopping.changed() => end(tx, resume),
    }
}

/// Waits for the next change of `changed` (what a stream follows) while
/// its client is there and the node runs; as [`send`] when the node stops.
/// False: end the stream.
pub async fn wait_for_change<D, T>(
    changed: &mut watch::Receiver<D>,
    tx: &mpsc::Sender<Result<T, Status>>,
    stopping: &mut watch::Receiver<bool>,
    resume: &str,
) -> bool {
    if *stopping.borrow() {
        return end(tx, resume);
    }
    tokio::select! {
        c = changed.changed() => c.is_ok(),
        () = tx.closed() => false,
        _ = stopping.changed() => end(tx, resume),
    }
}

/// Ends a stream because the node stops: UNAVAILABLE with how to resume,
/// if the client has room for it. Always false.
fn end<T>(tx: &mpsc::Sender<Result<T, Status>>, resume: &str) -> bool {
    let _ = tx.try_send(Err(Status::unavailable(format!(
        "the node is stopping; {resume}"
    ))));
    false
}
