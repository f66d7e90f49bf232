//! What a source sends to the monitor, and the bounded channel it sends it through.
//!
//! Every source runs on its own thread and pushes [`Batch`]es into its own bounded channel;
//! the monitor selects over the receivers. A live source (kernel, ETW, AF_PACKET) must never
//! block, so it uses [`BatchSender::send`]: when the channel is full the batch is dropped and
//! counted, and the monitor reports the count. A replay of a file has no deadline and wants
//! every transaction, so it uses [`BatchSender::send_blocking`], which waits instead.

use std::sync::Arc;

use crate::telemetry::{Counter, SourceStats};
use crate::{Source, Transaction};

/// Transactions and telemetry from one source, since its previous batch.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Who sent it.
    pub source: Source,
    /// Transactions completed since the previous batch.
    pub transactions: Vec<Transaction>,
    /// What the source counted since the previous batch.
    pub stats: SourceStats,
}

impl Batch {
    /// An empty batch from `source`.
    pub fn new(source: Source) -> Self {
        Batch {
            source,
            transactions: Vec::new(),
            stats: SourceStats::default(),
        }
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty() && self.stats == SourceStats::default()
    }
}

/// Counts shared by the two ends of one source channel.
#[derive(Debug, Default)]
pub struct ChannelDrops {
    /// Batches dropped because the channel was full.
    pub batches: Counter,
    /// Transactions inside those batches.
    pub transactions: Counter,
}

/// The sending half of a source channel.
#[derive(Clone, Debug)]
pub struct BatchSender {
    tx: crossbeam_channel::Sender<Batch>,
    drops: Arc<ChannelDrops>,
}

/// The receiving half of a source channel, held by the monitor.
#[derive(Debug)]
pub struct BatchReceiver {
    /// The source this channel belongs to.
    pub source: Source,
    rx: crossbeam_channel::Receiver<Batch>,
    drops: Arc<ChannelDrops>,
}

/// The monitor has gone away; the source should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

impl std::fmt::Display for Disconnected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the monitor is no longer receiving")
    }
}

impl std::error::Error for Disconnected {}

/// A bounded channel for one source holding at most `capacity` batches.
pub fn channel(source: Source, capacity: usize) -> (BatchSender, BatchReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let drops = Arc::new(ChannelDrops::default());
    (
        BatchSender {
            tx,
            drops: drops.clone(),
        },
        BatchReceiver { source, rx, drops },
    )
}

impl BatchSender {
    /// Sends without ever blocking: when the channel is full the batch is dropped and counted
    /// (`Ok` all the same: dropping under load is the contract, not an error).
    pub fn send(&self, batch: Batch) -> Result<(), Disconnected> {
        match self.tx.try_send(batch) {
            Ok(()) => Ok(()),
            Err(crossbeam_channel::TrySendError::Full(batch)) => {
                self.drops.batches.inc();
                self.drops.transactions.add(batch.transactions.len() as u64);
                Ok(())
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => Err(Disconnected),
        }
    }

    /// Sends, waiting while the channel is full (for replays that must lose nothing).
    pub fn send_blocking(&self, batch: Batch) -> Result<(), Disconnected> {
        self.tx.send(batch).map_err(|_| Disconnected)
    }
}

impl BatchReceiver {
    /// The underlying receiver, for `crossbeam_channel::Select`.
    pub fn receiver(&self) -> &crossbeam_channel::Receiver<Batch> {
        &self.rx
    }

    /// What the sender had to drop so far.
    pub fn drops(&self) -> &ChannelDrops {
        &self.drops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_channel_drops_and_counts_instead_of_blocking() {
        let (tx, rx) = channel(Source::Ebpf, 1);
        let mut b = Batch::new(Source::Ebpf);
        b.transactions.push(Transaction::default());
        tx.send(b.clone()).unwrap();
        tx.send(b.clone()).unwrap();
        tx.send(b).unwrap();
        assert_eq!(rx.drops().batches.get(), 2);
        assert_eq!(rx.drops().transactions.get(), 2);
        assert_eq!(rx.receiver().try_iter().count(), 1);
        drop(rx);
        assert_eq!(tx.send(Batch::new(Source::Ebpf)), Err(Disconnected));
    }
}
