//! Stopping while clients are still connected.
//!
//! tonic's graceful shutdown waits for every open connection to close. A
//! client that keeps a stream open and stops reading never lets it close:
//! HTTP/2 flow control holds the data queued for it, and the node would
//! wait for it until killed, without its last checkpoint. So streams end
//! as soon as the node stops ([`Outbox`]), and the servers give open calls
//! [`GRACE`] to finish before their connections are dropped
//! ([`serve_until_stopped`]).

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
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

/// The sending end of a server stream that knows when the node stops:
/// a send or a wait is then cut short, and the stream ends with
/// UNAVAILABLE and how to resume (if the client has room for it: one that
/// does not read gets nothing more). Every method returning a bool
/// returns false when the stream should end.
pub struct Outbox<T> {
    tx: mpsc::Sender<Result<T, Status>>,
    stopping: watch::Receiver<bool>,
    resume: &'static str,
}

impl<T> Outbox<T> {
    /// A stream queueing at most `capacity` messages; the receiver is the
    /// response's.
    pub fn channel(
        capacity: usize,
        stopping: watch::Receiver<bool>,
        resume: &'static str,
    ) -> (Self, ReceiverStream<Result<T, Status>>) {
        let (tx, rx) = mpsc::channel(capacity);
        let outbox = Self {
            tx,
            stopping,
            resume,
        };
        (outbox, ReceiverStream::new(rx))
    }

    /// Sends the next message.
    pub async fn send(&mut self, item: T) -> bool {
        self.deliver(Ok(item)).await
    }

    /// Ends the stream with `status`.
    pub async fn fail(&mut self, status: Status) {
        self.deliver(Err(status)).await;
    }

    /// Waits for the next change of `changed` (what the stream follows)
    /// while the client is there.
    pub async fn wait_for_change<D>(&mut self, changed: &mut watch::Receiver<D>) -> bool {
        if *self.stopping.borrow() {
            return self.end();
        }
        tokio::select! {
            c = changed.changed() => c.is_ok(),
            () = self.tx.closed() => false,
            _ = self.stopping.changed() => self.end(),
        }
    }

    async fn deliver(&mut self, item: Result<T, Status>) -> bool {
        if *self.stopping.borrow() {
            return self.end();
        }
        tokio::select! {
            sent = self.tx.send(item) => sent.is_ok(),
            _ = self.stopping.changed() => self.end(),
        }
    }

    fn end(&self) -> bool {
        let _ = self.tx.try_send(Err(Status::unavailable(format!(
            "the node is stopping; {}",
            self.resume
        ))));
        false
    }
}
