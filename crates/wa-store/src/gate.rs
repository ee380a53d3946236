//! Retiring a store handle once its client has stopped.
//!
//! whatsapp-rust keeps writing after its run loop has ended: its background saver makes a last
//! flush of the device record when the client shuts down, and work already under way may still
//! store sessions or keys. Such a late write must not land after the gateway has erased the
//! device's keys (logout, a fresh pairing), nor over newer state written by the client that
//! replaced it. Each client gets its own [`WriteGate`]; stopping the client retires the gate,
//! which waits for the writes in flight and refuses every later one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::{error, fmt};

use tokio::sync::Notify;
use wacore::store::error::StoreError;

/// Lets the writes of one client through until it is retired.
#[derive(Debug, Default)]
pub struct WriteGate {
    retired: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

impl WriteGate {
    /// A gate that lets writes through.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses every write from now on, then waits for the writes already let through.
    pub async fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Whether the gate has been retired.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// A pass for one write, or the refusal once the gate is retired. Counting the write before
    /// looking at the flag (both sequentially consistent) means `retire` either sees the write
    /// in flight and waits for it, or the write sees the gate retired.
    pub(crate) fn enter(&self) -> Result<Pass<'_>, StoreError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let pass = Pass(self);
        if self.retired.load(Ordering::SeqCst) {
            return Err(StoreError::Database(Box::new(Retired)));
        }
        Ok(pass)
    }
}

/// One write under way; dropping it ends the write.
pub(crate) struct Pass<'a>(&'a WriteGate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A write refused because the client that made it was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retired;

impl fmt::Display for Retired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("write refused: the client of this store was stopped")
    }
}

impl error::Error for Retired {}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn retiring_waits_for_writes_in_flight_and_refuses_later_ones() {
        let gate = Arc::new(WriteGate::new());
        let pass = gate.enter().expect("open gate lets a write through");
        let retiring = tokio::spawn({
            let gate = gate.clone();
            async move { gate.retire().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(gate.is_retired());
        assert!(
            !retiring.is_finished(),
            "retire waits for the write in flight"
        );
        assert!(gate.enter().is_err(), "no write gets through once retiring");
        drop(pass);
        tokio::time::timeout(Duration::from_secs(5), retiring)
            .await
            .expect("retire ends when the last write ends")
            .expect("task");
        assert!(gate.enter().is_err());
    }

    #[tokio::test]
    async fn nested_writes_do_not_block_retiring() {
        let gate = WriteGate::new();
        {
            let _outer = gate.enter().expect("outer");
            let _inner = gate.enter().expect("inner");
        }
        tokio::time::timeout(Duration::from_secs(5), gate.retire())
            .await
            .expect("no write in flight");
    }
}
