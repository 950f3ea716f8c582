//! Group commit: every `insert_batch` of this process queues its prepared
//! batch; two writer tasks each take a group of queued batches (up to
//! `MAX_GROUP_RECORDS`), store it in one transaction (`ingest.rs`) and
//! answer every caller with its own outcome.
//!
//! Why groups: the costs paid per transaction — the commit's WAL flush,
//! PostgreSQL's per-COPY setup (it builds a slot per buffered row, ~1 ms for
//! a 1,000-row COPY), and above all the rollup upserts, which touch the same
//! hot rows (this hour's and today's row of every active series) in every
//! batch — are paid once per group instead of once per batch. With one
//! transaction per batch, batches in flight queued on those row locks, and
//! more concurrency made ingest slower, not faster.
//!
//! Why two writers: one PostgreSQL backend runs one transaction on one core.
//! With two, one group is written while the next is prepared and copied;
//! groups are then smaller (more server CPU per record) but the throughput
//! is ~1.4x that of one writer on the 2-core bench machine; three writers
//! measured slower again (more contention on the rollup rows). See
//! benches/postgres.rs.
//!
//! How a group forms: under light load it is one batch and nothing waits.
//! Under load a writer, before it starts, waits (up to `GATHER`) for batches
//! still being prepared until its group holds its share of the calls in
//! flight (`Writer::enter` counts them), so that the callers a commit woke
//! join the next group instead of trickling in as groups of one or two.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

use super::ingest::write_group;
use super::prepare::Prepared;
use crate::store::{BatchOutcome, StoreError};

/// Transactions in flight per process.
const WRITERS: usize = 2;

/// Records per transaction at most; a larger backlog is split.
const MAX_GROUP_RECORDS: usize = 16_000;

/// Batches waiting for the writer; callers beyond that wait to queue.
const QUEUE: usize = 64;

/// Longest wait for batches still being prepared (a 1,000-record batch takes
/// about a millisecond); bounds the latency a busy collector adds.
const GATHER: Duration = Duration::from_millis(2);

struct Job {
    batch: Prepared,
    reply: oneshot::Sender<Answer>,
}

/// The outcome, and the batch itself handed back so that its caller frees
/// it: a thousand records are some twenty thousand allocations, which the
/// one writer would otherwise free between two transactions.
struct Answer {
    outcome: Result<BatchOutcome, StoreError>,
    _batch: Prepared,
}

impl Job {
    fn answer(self, outcome: Result<BatchOutcome, StoreError>) {
        // The caller may have gone (request cancelled): nothing to do.
        let _ = self.reply.send(Answer {
            outcome,
            _batch: self.batch,
        });
    }
}

pub struct Writer {
    /// `None` once closed.
    queue: RwLock<Option<mpsc::Sender<Job>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    counts: Arc<Counts>,
}

/// What the writers know of the calls under way.
#[derive(Default)]
struct Counts {
    /// Calls between `Writer::enter` and their return.
    in_flight: AtomicUsize,
    /// Batches taken into a group and not answered yet.
    taken: AtomicUsize,
}

impl Counts {
    /// Calls whose batch is being prepared or is queued (or that were just
    /// answered and are returning).
    fn coming(&self) -> usize {
        self.in_flight
            .load(Ordering::Acquire)
            .saturating_sub(self.taken.load(Ordering::Acquire))
    }
}

/// One `insert_batch` call on its way; see `Writer::enter`.
pub struct InFlight(Arc<Counts>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Writer {
    /// Starts the writer tasks (on the current Tokio runtime).
    pub fn start(pool: &Pool) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let counts = Arc::new(Counts::default());
        let tasks = (0..WRITERS)
            .map(|_| {
                tokio::spawn(run(
                    pool.clone(),
                    Arc::clone(&receiver),
                    Arc::clone(&counts),
                ))
            })
            .collect();
        Self {
            queue: RwLock::new(Some(sender)),
            tasks: Mutex::new(tasks),
            counts,
        }
    }

    /// Counts a call from its start (before its batch is prepared) until the
    /// guard is dropped (after its answer), so that the writer knows whether
    /// a batch is still coming.
    pub fn enter(&self) -> InFlight {
        self.counts.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(&self.counts))
    }

    /// Stores `batch` with the next group commit.
    pub async fn write(&self, batch: Prepared) -> Result<BatchOutcome, StoreError> {
        let closed = || StoreError::transient("the PostgreSQL store is closed");
        let sender = self
            .queue
            .read()
            .ok()
            .and_then(|queue| queue.clone())
            .ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Job { batch, reply })
            .await
            .map_err(|_| closed())?;
        answer
            .await
            .map_err(|_| StoreError::internal("the ingest writer stopped"))?
            .outcome
    }

    /// Stops taking batches and waits until every queued one is stored.
    pub async fn close(&self) {
        if let Ok(mut queue) = self.queue.write() {
            queue.take();
        }
        let tasks = self
            .tasks
            .lock()
            .map(|mut tasks| std::mem::take(&mut *tasks))
            .unwrap_or_default();
        for task in tasks {
            // A writer that panicked has answered nobody; its callers got
            // an error already.
            let _ = task.await;
        }
    }
}

async fn run(pool: Pool, queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>, counts: Arc<Counts>) {
    loop {
        let group = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            gather(&mut queue, first, &counts).await
        };
        let taken = group.len();
        store_group(&pool, group, || {
            counts.taken.fetch_sub(taken, Ordering::AcqRel);
        })
        .await;
    }
}

/// The group started by `first`: every batch queued already, and batches
/// still being prepared as they come, for up to `GATHER`, until the group
/// holds its share of the calls in flight (one writer's share, so that one
/// group is prepared while the other is written).
async fn gather(queue: &mut mpsc::Receiver<Job>, first: Job, counts: &Counts) -> Vec<Job> {
    let deadline = Instant::now() + GATHER;
    let share = counts.in_flight.load(Ordering::Acquire).div_ceil(WRITERS);
    counts.taken.fetch_add(1, Ordering::AcqRel);
    let mut records = first.batch.records.len();
    let mut group = vec![first];
    while records < MAX_GROUP_RECORDS {
        let next = match queue.try_recv() {
            Ok(job) => Some(job),
            Err(_) if group.len() < share && counts.coming() > 0 => {
                timeout_at(deadline, queue.recv()).await.ok().flatten()
            }
            Err(_) => None,
        };
        let Some(job) = next else {
            break;
        };
        counts.taken.fetch_add(1, Ordering::AcqRel);
        records += job.batch.records.len();
        group.push(job);
    }
    group
}

/// Stores the group and answers every caller. When the group fails, each
/// batch is tried alone, so that one batch the database refuses fails alone.
async fn store_group(pool: &Pool, group: Vec<Job>, written: impl FnOnce()) {
    let batches: Vec<&Prepared> = group.iter().map(|job| &job.batch).collect();
    let result = write(pool, &batches).await;
    written();
    match result {
        Ok(outcomes) => {
            for (job, outcome) in group.into_iter().zip(outcomes) {
                job.answer(Ok(outcome));
            }
        }
        Err(e) if group.len() == 1 => {
            for job in group {
                job.answer(Err(e.clone()));
            }
        }
        Err(_) => {
            for job in group {
                let result = write(pool, &[&job.batch]).await.and_then(|outcomes| {
                    outcomes
                        .into_iter()
                        .next()
                        .ok_or_else(|| StoreError::internal("no outcome for a batch"))
                });
                job.answer(result);
            }
        }
    }
}

async fn write(pool: &Pool, batches: &[&Prepared]) -> Result<Vec<BatchOutcome>, StoreError> {
    let mut client = pool.get().await?;
    write_group(&mut client, batches).await
}
