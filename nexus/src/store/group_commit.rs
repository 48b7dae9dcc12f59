//! Group commit: concurrent writes share one transaction and one fsync.
//!
//! On SQLite every write transaction is serialised (`BEGIN IMMEDIATE`), and with
//! `synchronous=FULL` each commit waits for its own fsync, so 16 concurrent puts used to
//! wait in line for 16 fsyncs. Here each write is handed to one writer task, which takes
//! every write waiting at that moment (up to [`MAX_GROUP`]), runs each in one transaction
//! under its own savepoint, so that one write's failure (a check-and-set mismatch, a
//! fence, a seal error) rolls back that write alone, commits once and only then answers
//! each caller: an acknowledged write is on disk, as before. While the writer commits,
//! the next writes queue up and form the next group; a write that finds the writer idle is
//! committed alone, at once.
//!
//! On PostgreSQL writers do not queue behind one lock (rows are locked one by one) and the
//! server already flushes concurrent commits together, while one transaction holding many
//! writers' row locks could deadlock with another replica's: there each write keeps its
//! own transaction, run by its caller.
//!
//! A write that finds nothing queued and no group running runs in its caller's task, in a
//! transaction of its own, as on PostgreSQL: handing it to the writer task and waking its
//! caller back would only add two task switches to its latency, and there is nothing to
//! group it with. It holds the writer's turn while it runs, so the writer waits for it
//! before its next group (as SQLite's write lock would make it wait anyway), and a write
//! arriving meanwhile queues and joins that group. Dropping such a write's future (its
//! caller timed out) closes the connection unless its transaction had ended, which rolls
//! back whatever it had not committed.
//!
//! # One connection for writes
//!
//! Every write of this module runs on one connection of its own, kept between writes and
//! used by one write or group at a time (whoever holds the writer's turn holds it). SQLite
//! runs one write transaction at a time anyway, and a connection taken from the pool for
//! each write costs more than its statements: the pool tests each connection it gets back
//! (a round trip to that connection's thread) and hands out another, whose thread is asleep
//! and whose page cache another connection's commit made stale: back to back in one
//! process, a transaction of one insert took 430-630 us through the pool against 310-350 us
//! on a kept connection (docs/performance.md, also on what a lone put still pays). A write
//! that ends in a database error closes the connection and the next write opens a fresh
//! one; on an in-memory database, whose pool has a single connection, the writer gives it
//! back after every write.
//!
//! # Statements sent together
//!
//! Each query sqlx's SQLite driver runs is a round trip to its worker thread, and on an
//! idle machine each wakes that thread and is woken back: the cost of a lone put was its
//! round trips, not its statements. So the statements that open and end a write are not
//! sent on their own: the write's connection, a [`WriteTx`], owes them, and a write sends
//! the opening (`BEGIN IMMEDIATE` alone, the group's `BEGIN` and the write's `SAVEPOINT` in
//! a group) in the same query string as its first statement ([`WriteTx::statement`]) and
//! the ending (`COMMIT` alone, `RELEASE SAVEPOINT` in a group) with its last
//! ([`WriteTx::last_statement`]). A put is then two round trips, its claim and its
//! finishing statements, where it was four. A write that needs its statements one by one
//! takes the connection with [`WriteTx::conn`], which sends what is owed first; whatever
//! a write did not send, the writer sends after it. sqlx then does not know a transaction
//! is open, so this module ends it itself: on a write's error it rolls back (to the
//! savepoint, in a group), and a connection whose transaction may still be open when its
//! write is dropped or fails to end is closed, which makes SQLite roll it back.
//!
//! A write is a closure over its [`WriteTx`] ([`Store::write`]) that owns what it needs:
//! it runs on the writer task. A caller that stops waiting (its request timed out and was
//! answered 503) withdraws its write, as dropping its own transaction did before: a write
//! whose caller is gone when its turn comes is skipped. Only a caller that leaves while its
//! group is running or committing (a few milliseconds) may find its write stored; it was
//! never acknowledged.
//!
//! # When the writer fails
//!
//! The writer runs under the process's supervisor (`common_process::supervise`), restarted:
//! it keeps nothing a fresh run cannot rebuild. The queue outlives it, and the group it was
//! running is rolled back with its connection. So if a write panics, the writes of its
//! group are answered at once with an unavailable error (503, retry), the failure is logged
//! and counted in `task_failures_total{task="group_commit"}`, and a new run takes the writes
//! queued meanwhile after a short backoff ([`RESTART`]); a caller whose request timed out
//! by then withdrew its write (above). No write waits on a writer that is gone. Exiting the
//! process instead would fail every request in flight for one bad write.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common_process::{Backoff, Supervisor};
use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::read_cache::{ReadCache, WriteTransaction, Written};
use super::{Store, StoreError};

/// The most writes one group holds, so that no transaction grows long.
pub const MAX_GROUP: usize = 64;

/// A write's connection, inside its transaction (or its savepoint, in a group), with the
/// statements the write owes before its first statement and after its last (see the module
/// docs). On PostgreSQL it owes none: its caller began the transaction and commits it.
pub(crate) struct WriteTx<'c> {
    conn: &'c mut AnyConnection,
    bounds: Bounds,
    /// The opening was sent, alone or with a statement: it may have run.
    opened: bool,
    /// The ending was sent with the write's last statement.
    ended: bool,
}

/// What a write owes: statements before its first and after its last.
#[derive(Clone, Copy)]
struct Bounds {
    opening: &'static str,
    ending: &'static str,
}

/// A write in a transaction of its own.
const ALONE: Bounds = Bounds {
    opening: "BEGIN IMMEDIATE",
    ending: "COMMIT",
};
/// The first write of a group to run a statement: it begins the group's transaction.
const FIRST_IN_GROUP: Bounds = Bounds {
    opening: "BEGIN IMMEDIATE; SAVEPOINT one_write",
    ending: "RELEASE SAVEPOINT one_write",
};
/// The other writes of a group.
const IN_GROUP: Bounds = Bounds {
    opening: "SAVEPOINT one_write",
    ending: "RELEASE SAVEPOINT one_write",
};
/// A write in a transaction its caller began and ends: on PostgreSQL, and the writes that
/// begin their own (`Store::begin_write`).
const BEGUN: Bounds = Bounds {
    opening: "",
    ending: "",
};

impl<'c> WriteTx<'c> {
    fn new(conn: &'c mut AnyConnection, bounds: Bounds) -> Self {
        WriteTx {
            conn,
            bounds,
            opened: false,
            ended: false,
        }
    }

    /// A write in a transaction its caller began and ends: it owes nothing.
    pub(super) fn begun(conn: &'c mut AnyConnection) -> Self {
        WriteTx::new(conn, BEGUN)
    }

    /// The connection, for statements sent one by one: the opening is sent first if it is
    /// still owed (one round trip of its own).
    pub(crate) async fn conn(&mut self) -> Result<&mut AnyConnection, StoreError> {
        if !self.opened && !self.bounds.opening.is_empty() {
            self.opened = true;
            sqlx::query(self.bounds.opening)
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(&mut *self.conn)
    }

    /// `sql` as the query string to send next, after the opening if that is still owed,
    /// and the connection to send it on. SQLite's driver runs the statements of one string
    /// in turn (binding `$N` in each to the N-th argument: the opening takes none) and
    /// stops at the first that fails; on PostgreSQL, which takes one statement per query,
    /// nothing is owed and `sql` comes back as it is. Read its rows with `fetch_all`:
    /// `fetch_one` and `fetch_optional` of sqlx's `Any` driver look at the string's first
    /// result only, which is the opening's (no row).
    pub(crate) fn statement<'s>(&mut self, sql: &'s str) -> (Cow<'s, str>, &mut AnyConnection) {
        let sql = if self.opened || self.bounds.opening.is_empty() {
            Cow::Borrowed(sql)
        } else {
            self.opened = true;
            Cow::Owned(format!("{}; {sql}", self.bounds.opening))
        };
        (sql, &mut *self.conn)
    }

    /// As [`statement`](Self::statement), for the write's last statement: the ending follows
    /// it in the same string. Once it has run, the write is committed (alone) or its
    /// savepoint released (in a group), so the write must not fail after it: its caller
    /// would be told of a failure that is on disk.
    pub(crate) fn last_statement<'s>(
        &mut self,
        sql: &'s str,
    ) -> (Cow<'s, str>, &mut AnyConnection) {
        let ending = self.bounds.ending;
        let (sql, _) = self.statement(sql);
        let sql = if ending.is_empty() {
            sql
        } else {
            self.ended = true;
            Cow::Owned(format!("{sql}; {ending}"))
        };
        (sql, &mut *self.conn)
    }

    /// What the write sent of what it owed.
    fn progress(&self) -> Progress {
        Progress {
            opened: self.opened,
            ended: self.ended,
        }
    }
}

/// What a write sent of the statements it owed ([`WriteTx`]).
#[derive(Clone, Copy)]
struct Progress {
    opened: bool,
    ended: bool,
}

/// The queue to the writer task of one SQLite store.
#[derive(Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Box<dyn Queued>>,
    /// The writer's turn, and the connection that goes with it: held by the writer task
    /// while it runs a group, and by a write that runs alone in its caller's task: one at
    /// a time.
    turn: Arc<Mutex<Writer>>,
    /// Writes queued and not yet answered: a write runs alone only when there are none.
    pending: Arc<AtomicUsize>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

/// How soon a failed writer runs again: writes are waiting, so sooner than
/// [`Backoff::DEFAULT`], and still not in a tight loop if every run fails.
pub const RESTART: Backoff = Backoff {
    initial: Duration::from_millis(50),
    max: Duration::from_secs(5),
};

impl GroupCommit {
    /// Starts the writer task under `supervisor`, restarted if it fails (see the module
    /// docs); it ends when every handle to the queue is dropped.
    /// Every group empties `cache` once it has ended, before its writes are answered.
    pub(super) fn start(
        pool: AnyPool,
        cache: &Arc<ReadCache>,
        supervisor: &Supervisor,
    ) -> GroupCommit {
        let (queue, writes) = mpsc::unbounded_channel();
        // Shared with each run of the writer, so that the queue outlives a failed one.
        let writes = Arc::new(Mutex::new(writes));
        let turn = Arc::new(Mutex::new(Writer::new(pool)));
        let pending = Arc::new(AtomicUsize::new(0));
        supervisor.restart("group_commit", RESTART, {
            let (turn, pending) = (Arc::clone(&turn), Arc::clone(&pending));
            let cache = Arc::clone(cache);
            move || writer(cache.clone(), writes.clone(), turn.clone(), pending.clone())
        });
        GroupCommit {
            queue,
            turn,
            pending,
        }
    }
}

impl Store {
    /// Runs `op` in a write transaction and commits it: on SQLite together with the other
    /// writes waiting at that moment (see the module docs), on PostgreSQL alone. `op`'s
    /// error rolls back `op`'s statements only, and is returned as it is. Returns once the
    /// write is committed (on disk) or has failed.
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t, 'c> FnOnce(&'t mut WriteTx<'c>) -> BoxFuture<'t, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let Some(group) = &self.group else {
            return write_begun(self.begin_write().await?, op).await;
        };
        if group.pending.load(Ordering::Acquire) == 0
            && !group.queue.is_closed()
            && let Ok(mut turn) = group.turn.try_lock()
        {
            // Nothing queued, no group running, the writer alive (not shut down): nothing
            // to wait for or group with.
            let mut written = Written::new(self.cache.as_ref());
            let result = turn.run_alone(op, &mut written).await;
            turn.after(result.as_ref().err());
            return result;
        }
        group.pending.fetch_add(1, Ordering::AcqRel);
        let (reply, answer) = oneshot::channel();
        let write = Box::new(Write {
            op: Some(op),
            outcome: None,
            reply,
        });
        if group.queue.send(write).is_err() {
            group.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(writer_gone());
        }
        answer.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    /// Gives up the kept write connection (SQLite) as the pool closes, so that it is closed
    /// with the others and a write after this fails like any use of a closed pool.
    pub(super) async fn close_writer(&self) {
        if let Some(group) = &self.group {
            group.turn.lock().await.conn = None;
        }
    }
}

/// Runs `op` in `tx`, a transaction its caller began (PostgreSQL), and commits it. A write
/// that panics is answered as one that panicked on the writer task is: rolled back and
/// unavailable (503), the panic logged, the caller's task unharmed.
async fn write_begun<T, F>(mut tx: WriteTransaction<'_>, op: F) -> Result<T, StoreError>
where
    F: for<'t, 'c> FnOnce(&'t mut WriteTx<'c>) -> BoxFuture<'t, Result<T, StoreError>>,
{
    let outcome = AssertUnwindSafe(op(&mut WriteTx::begun(&mut tx)))
        .catch_unwind()
        .await;
    let Ok(outcome) = outcome else {
        tracing::error!("a write panicked; it was rolled back");
        return Err(writer_gone());
    };
    match outcome {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(error) => {
            // The write's own error says what went wrong; dropping the transaction
            // would roll it back as well, this only does it now.
            if let Err(rollback) = tx.rollback().await {
                tracing::debug!(%rollback, "rolling back a failed write failed");
            }
            Err(error)
        }
    }
}

/// The connection SQLite writes run on (see the module docs), kept between writes.
struct Writer {
    pool: AnyPool,
    conn: Option<PoolConnection<Any>>,
}

impl Writer {
    fn new(pool: AnyPool) -> Writer {
        Writer { pool, conn: None }
    }

    /// The kept connection, or one from the pool if none is kept, taken until it is given
    /// back ([`InTransaction::done`]).
    async fn take(&mut self) -> Result<InTransaction, StoreError> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        Ok(InTransaction { conn: Some(conn) })
    }

    /// Runs `op` alone, in a transaction of its own, in the caller's task; says to
    /// `written` when the transaction has ended. A write that panics is answered as one
    /// that panicked on the writer task is: rolled back and unavailable (503), the panic
    /// logged, the caller's task unharmed.
    async fn run_alone<T, F>(&mut self, op: F, written: &mut Written) -> Result<T, StoreError>
    where
        F: for<'t, 'c> FnOnce(&'t mut WriteTx<'c>) -> BoxFuture<'t, Result<T, StoreError>>,
    {
        let mut taken = self.take().await?;
        let conn = taken.conn();
        let mut tx = WriteTx::new(&mut *conn, ALONE);
        let outcome = AssertUnwindSafe(op(&mut tx)).catch_unwind().await;
        let progress = tx.progress();
        let Ok(outcome) = outcome else {
            // The connection is closed with `taken`, rolling back what the write did.
            tracing::error!("a write panicked; it was rolled back");
            return Err(writer_gone());
        };
        let ended = end_alone(conn, progress, outcome.is_ok()).await;
        match (outcome, ended) {
            (outcome, Ok(())) => {
                written.ended();
                self.conn = Some(taken.done());
                outcome
            }
            // Not committed, so not acknowledged; the connection is closed.
            (Ok(_), Err(commit)) => Err(commit.into()),
            (Err(error), Err(rollback)) => {
                tracing::debug!(%rollback, "rolling back a failed write failed");
                Err(error)
            }
        }
    }

    /// After a write or group that ended with `error` (if any). An in-memory database's
    /// pool has one connection: it goes back to the pool, for readers, which tests it. Else
    /// a database error may have left the connection unfit (its thread gone, its
    /// transaction in an unknown state): it is closed, and the next write opens another.
    fn after(&mut self, error: Option<&StoreError>) {
        if self.pool.options().get_max_connections() == 1 {
            self.conn = None;
        } else if error
            .is_some_and(|e| matches!(e, StoreError::Sql(_) | StoreError::GroupCommit(_)))
            && let Some(mut conn) = self.conn.take()
        {
            conn.close_on_drop();
        }
    }
}

/// The writer's connection while a write or group may have a transaction open on it.
/// Dropped before its transaction ended (its write's caller gave up, a panic, a `COMMIT` or
/// `ROLLBACK` that failed), it closes the connection, and SQLite rolls back what that
/// transaction had not committed, as sqlx's own transaction would be rolled back on drop.
struct InTransaction {
    conn: Option<PoolConnection<Any>>,
}

impl InTransaction {
    fn conn(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().expect("held until given back")
    }

    /// Its transaction has ended: the connection is fit to keep.
    fn done(mut self) -> PoolConnection<Any> {
        self.conn.take().expect("held until given back")
    }
}

impl Drop for InTransaction {
    fn drop(&mut self) {
        if let Some(conn) = &mut self.conn {
            conn.close_on_drop();
        }
    }
}

/// Ends a write that ran in a transaction of its own ([`ALONE`]): commits it if it
/// succeeded (`ok`), rolls it back if it failed; nothing if it sent nothing, or committed
/// with its last statement. `Ok` once the transaction has ended.
async fn end_alone(
    conn: &mut AnyConnection,
    progress: Progress,
    ok: bool,
) -> Result<(), sqlx::Error> {
    let end = match (progress.opened, progress.ended, ok) {
        (false, _, _) | (true, true, true) => return Ok(()),
        (true, false, true) => ALONE.ending,
        (true, _, false) => "ROLLBACK",
    };
    sqlx::query(end).execute(conn).await.map(|_| ())
}

/// The writer task has stopped: a write panicked in it (the next run takes the writes
/// queued after), or the process is shutting down.
fn writer_gone() -> StoreError {
    sqlx::Error::WorkerCrashed.into()
}

/// A queued write, its result type hidden.
trait Queued: Send {
    /// Runs the write in `tx`; returns whether it succeeded. The outcome is kept for
    /// [`Queued::answer`].
    fn run<'t>(&'t mut self, tx: &'t mut WriteTx<'_>) -> BoxFuture<'t, bool>;

    /// Answers the caller once the group's fate is known: its own error if the write
    /// failed, else its result if the group committed, else the group's error.
    fn answer(self: Box<Self>, committed: Result<(), &Arc<StoreError>>);
}

struct Write<T, F> {
    op: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Queued for Write<T, F>
where
    T: Send + 'static,
    F: for<'t, 'c> FnOnce(&'t mut WriteTx<'c>) -> BoxFuture<'t, Result<T, StoreError>>
        + Send
        + 'static,
{
    fn run<'t>(&'t mut self, tx: &'t mut WriteTx<'_>) -> BoxFuture<'t, bool> {
        Box::pin(async move {
            let Some(op) = self.op.take() else {
                return false;
            };
            if self.reply.is_closed() {
                // Its caller was answered already (a timeout): nothing of it is written.
                return false;
            }
            let outcome = op(tx).await;
            let ok = outcome.is_ok();
            self.outcome = Some(outcome);
            ok
        })
    }

    fn answer(self: Box<Self>, committed: Result<(), &Arc<StoreError>>) {
        let result = match (self.outcome, committed) {
            (Some(Err(own)), _) => Err(own),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(group)) => Err(StoreError::GroupCommit(group.clone())),
            (None, Ok(())) => Err(writer_gone()),
        };
        // A caller that stopped waiting needs no answer.
        let _ = self.reply.send(result);
    }
}

/// One run of the writer task: one group at a time, each every write queued at that moment.
/// A write that panics ends the run (its group's callers see the writer gone, its
/// transaction is rolled back as its connection is closed); the supervisor starts the next.
async fn writer(
    cache: Arc<ReadCache>,
    writes: Arc<Mutex<mpsc::UnboundedReceiver<Box<dyn Queued>>>>,
    turn: Arc<Mutex<Writer>>,
    pending: Arc<AtomicUsize>,
) {
    let mut writes = writes.lock().await;
    let mut group = Vec::with_capacity(MAX_GROUP);
    while writes.recv_many(&mut group, MAX_GROUP).await > 0 {
        // Waits for a write running alone; the writes queued meanwhile join the group.
        let mut turn = turn.lock().await;
        while group.len() < MAX_GROUP {
            match writes.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        // Taken off the count when the group is answered, or when a panic ends this run.
        let _taken = Taken {
            pending: &pending,
            count: group.len(),
        };
        commit_group(&mut turn, &cache, &mut group).await;
    }
}

/// The writes of a group, taken off the count of pending writes when the group is done,
/// however it ends (a panic ends the writer's run).
struct Taken<'a> {
    pending: &'a AtomicUsize,
    count: usize,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.pending.fetch_sub(self.count, Ordering::AcqRel);
    }
}

/// Runs `group` in one transaction, commits it, empties `cache` and answers every write.
async fn commit_group(
    writer: &mut Writer,
    cache: &Arc<ReadCache>,
    group: &mut Vec<Box<dyn Queued>>,
) {
    let committed = {
        let mut written = Written::new(Some(cache));
        let committed = match writer.take().await {
            Ok(mut taken) => {
                let committed = run_group(taken.conn(), group).await;
                if committed.is_ok() {
                    writer.conn = Some(taken.done());
                }
                committed
            }
            Err(error) => Err(error),
        };
        writer.after(committed.as_ref().err());
        if committed.is_ok() {
            written.ended();
        }
        committed.map_err(Arc::new)
    };
    for write in group.drain(..) {
        write.answer(committed.as_ref().map(|_| ()));
    }
}

/// Runs `group` on `conn` and commits it. `Ok` once its transaction has ended (or none
/// began); on `Err` it may still be open, and the caller closes the connection.
async fn run_group(
    conn: &mut AnyConnection,
    group: &mut [Box<dyn Queued>],
) -> Result<(), StoreError> {
    if let [only] = group {
        // Alone: the transaction is the write's own, no savepoint needed.
        let mut tx = WriteTx::new(&mut *conn, ALONE);
        let ok = only.run(&mut tx).await;
        let progress = tx.progress();
        return Ok(end_alone(conn, progress, ok).await?);
    }
    // Each write runs under its own savepoint, begun with its first statement and released
    // with its last (see the module docs); what a write did not send, it is sent here.
    let mut begun = false;
    for write in group.iter_mut() {
        let bounds = if begun { IN_GROUP } else { FIRST_IN_GROUP };
        let mut tx = WriteTx::new(&mut *conn, bounds);
        let ok = write.run(&mut tx).await;
        let progress = tx.progress();
        begun |= progress.opened;
        // If this fails (SQLite rolled the whole transaction back on an I/O error), the
        // group fails: nothing of it is committed, and every write says so.
        let end = match (progress.opened, progress.ended, ok) {
            (false, _, _) | (true, true, true) => continue,
            (true, false, true) => IN_GROUP.ending,
            (true, _, false) => "ROLLBACK TO SAVEPOINT one_write; RELEASE SAVEPOINT one_write",
        };
        sqlx::query(end).execute(&mut *conn).await?;
    }
    if begun {
        sqlx::query(ALONE.ending).execute(conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `op` as a queued write, on the writer task: the writer's turn is held until
    /// the write is queued, so it cannot run alone in its caller's task.
    async fn queued_write<T, F>(store: &Store, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, Result<T, StoreError>> + Send + 'static,
    {
        let group = store.group.as_ref().expect("SQLite groups its writes");
        let turn = group.turn.lock().await;
        let queued = tokio::spawn({
            let store = store.clone();
            async move { store.write(op).await }
        });
        while group.pending.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        drop(turn);
        queued.await.expect("the caller's task survives")
    }

    #[tokio::test]
    async fn a_write_that_panics_fails_its_caller_at_once_and_the_writer_runs_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("nexus.db").display());
        let supervisor = Supervisor::new();
        let store = Store::connect_supervised(&url, &supervisor)
            .await
            .expect("connect");

        // Alone, it runs in its caller's task: answered 503, the caller unharmed.
        let broken = store
            .write::<(), _>(|_tx| Box::pin(async { panic!("a write's bug") }))
            .await
            .expect_err("a panicking write is not acknowledged");
        assert!(broken.is_unavailable(), "answered 503: {broken}");
        assert_eq!(supervisor.failures("group_commit"), 0);

        // While the writer's turn is taken, a write queues and runs on the writer task.
        let broken =
            queued_write::<(), _>(&store, |_tx| Box::pin(async { panic!("a write's bug") }))
                .await
                .expect_err("a panicking write is not acknowledged");
        assert!(broken.is_unavailable(), "answered 503: {broken}");
        while supervisor.failures("group_commit") == 0 {
            tokio::task::yield_now().await;
        }

        // Queued while the writer may still be down: taken by its next run.
        let answer = queued_write(&store, |tx| {
            Box::pin(async move {
                let row: (i64,) = sqlx::query_as("SELECT 7")
                    .fetch_one(tx.conn().await?)
                    .await?;
                Ok(row.0)
            })
        })
        .await
        .expect("the restarted writer commits");
        assert_eq!(answer, 7);
        assert_eq!(supervisor.failures("group_commit"), 1);
        supervisor.shutdown().await;
        let stopped = store
            .write(|_tx| Box::pin(async { Ok(()) }))
            .await
            .expect_err("no writer after shutdown");
        assert!(stopped.is_unavailable(), "{stopped}");
    }

    /// A write whose statements are `sql` alone, sent with what the write owes before and
    /// after it.
    fn statement(
        sql: &'static str,
    ) -> impl for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, Result<(), StoreError>>
    + Send
    + Copy
    + 'static {
        move |tx| {
            Box::pin(async move {
                let (sql, conn) = tx.last_statement(sql);
                sqlx::query(&sql).execute(conn).await?;
                Ok(())
            })
        }
    }

    /// A store on a database file of its own, which lives as long as the directory.
    async fn file_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("nexus.db").display());
        let store = Store::connect(&url).await.expect("connect");
        (dir, store)
    }

    /// A [`file_store`] with a table `t (n INTEGER)` for writes to fill.
    async fn store_with_table() -> (tempfile::TempDir, Store) {
        let (dir, store) = file_store().await;
        store
            .write(statement("CREATE TABLE t (n INTEGER)"))
            .await
            .expect("a table");
        (dir, store)
    }

    /// A write that only runs `SELECT 1`.
    async fn select_one(store: &Store) -> Result<(), StoreError> {
        store.write(statement("SELECT 1")).await
    }

    #[tokio::test]
    async fn a_write_sends_what_it_owes_with_its_first_and_last_statements() {
        let store = Store::connect("sqlite::memory:").await.expect("connect");
        let mut conn = store.pool.acquire().await.expect("a connection");

        let mut tx = WriteTx::new(&mut conn, ALONE);
        assert_eq!(tx.statement("SELECT 1").0, "BEGIN IMMEDIATE; SELECT 1");
        assert_eq!(tx.statement("SELECT 2").0, "SELECT 2", "owed once");
        assert!(tx.progress().opened && !tx.progress().ended);
        assert_eq!(tx.last_statement("SELECT 3").0, "SELECT 3; COMMIT");
        assert!(tx.progress().ended);

        let mut tx = WriteTx::new(&mut conn, FIRST_IN_GROUP);
        assert_eq!(
            tx.last_statement("SELECT 1").0,
            "BEGIN IMMEDIATE; SAVEPOINT one_write; SELECT 1; RELEASE SAVEPOINT one_write"
        );

        // Its caller began the transaction and ends it: nothing owed.
        let mut tx = WriteTx::begun(&mut conn);
        assert_eq!(tx.statement("SELECT 1").0, "SELECT 1");
        assert_eq!(tx.last_statement("SELECT 2").0, "SELECT 2");
        assert!(!tx.progress().opened && !tx.progress().ended);
    }

    /// A write that inserts `n` into table `t` and then fails, the insert sent with what
    /// the write owes before it.
    fn insert_then_fail(
        n: i64,
    ) -> impl for<'t, 'c> FnOnce(&'t mut WriteTx<'c>) -> BoxFuture<'t, Result<(), StoreError>>
    + Send
    + 'static {
        move |tx| {
            Box::pin(async move {
                let (sql, conn) = tx.statement("INSERT INTO t (n) VALUES ($1)");
                sqlx::query(&sql).bind(n).execute(conn).await?;
                Err(StoreError::CasRequired(format!("after {n}")))
            })
        }
    }

    #[tokio::test]
    async fn in_a_group_a_failed_write_is_undone_alone_whatever_it_sent() {
        let (_dir, store) = store_with_table().await;
        let group = store.group.as_ref().expect("SQLite groups its writes");

        // Queued in this order while the writer's turn is held, so one group runs them.
        let turn = group.turn.lock().await;
        let mut queued = Vec::new();
        let mut queue = |write: BoxFuture<'static, Result<(), StoreError>>| {
            queued.push(tokio::spawn(write));
            let count = queued.len();
            async move {
                while group.pending.load(Ordering::Acquire) < count {
                    tokio::task::yield_now().await;
                }
            }
        };
        // Fails before sending anything: the group's `BEGIN` is owed by the next one.
        queue(Box::pin({
            let store = store.clone();
            async move {
                store
                    .write(|_tx| Box::pin(async { Err(StoreError::CasRequired("first".into())) }))
                    .await
            }
        }))
        .await;
        // Fails after its `BEGIN`, `SAVEPOINT` and insert went in one string.
        queue(Box::pin({
            let store = store.clone();
            async move { store.write(insert_then_fail(3)).await }
        }))
        .await;
        // Its `SAVEPOINT` with its first insert, its `RELEASE` with its last.
        queue(Box::pin({
            let store = store.clone();
            async move {
                store
                    .write(|tx| {
                        Box::pin(async move {
                            let (sql, conn) = tx.statement("INSERT INTO t (n) VALUES (1)");
                            sqlx::query(&sql).execute(conn).await?;
                            let (sql, conn) = tx.last_statement("INSERT INTO t (n) VALUES (2)");
                            sqlx::query(&sql).execute(conn).await?;
                            Ok(())
                        })
                    })
                    .await
            }
        }))
        .await;
        // Its statements one by one; the writer releases its savepoint.
        queue(Box::pin({
            let store = store.clone();
            async move {
                store
                    .write(|tx| {
                        Box::pin(async move {
                            let conn = tx.conn().await?;
                            sqlx::query("INSERT INTO t (n) VALUES (4)")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .await
            }
        }))
        .await;
        drop(turn);

        let mut answers = Vec::new();
        for write in queued {
            answers.push(write.await.expect("the caller's task survives"));
        }
        assert!(matches!(&answers[0], Err(StoreError::CasRequired(p)) if p == "first"));
        assert!(matches!(&answers[1], Err(StoreError::CasRequired(p)) if p == "after 3"));
        assert!(answers[2].is_ok() && answers[3].is_ok(), "{answers:?}");
        let rows: Vec<(i64,)> = sqlx::query_as("SELECT n FROM t ORDER BY n")
            .fetch_all(&store.pool)
            .await
            .expect("read back");
        assert_eq!(
            rows,
            [(1,), (2,), (4,)],
            "committed together, the failed write undone"
        );
        assert!(group.turn.lock().await.conn.is_some(), "kept");
    }

    #[tokio::test]
    async fn a_write_alone_whose_caller_leaves_mid_transaction_is_rolled_back() {
        let (_dir, store) = store_with_table().await;
        let (inserted, has_inserted) = oneshot::channel();
        let write = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(move |tx| {
                        Box::pin(async move {
                            let (sql, conn) = tx.statement("INSERT INTO t (n) VALUES (1)");
                            sqlx::query(&sql).execute(conn).await?;
                            let _ = inserted.send(());
                            std::future::pending::<()>().await;
                            Ok(())
                        })
                    })
                    .await
            }
        });
        has_inserted.await.expect("the write ran its insert");
        write.abort();
        assert!(write.await.expect_err("aborted").is_cancelled());

        // Its connection was closed, which rolled its transaction back and let go of
        // SQLite's write lock: the next write commits, and only its own row is there.
        store
            .write(statement("INSERT INTO t (n) VALUES (2)"))
            .await
            .expect("the next write");
        let rows: Vec<(i64,)> = sqlx::query_as("SELECT n FROM t")
            .fetch_all(&store.pool)
            .await
            .expect("read back");
        assert_eq!(rows, [(2,)]);
    }

    #[tokio::test]
    async fn writes_keep_one_connection_and_give_it_up_when_the_store_closes() {
        let (_dir, store) = file_store().await;
        // A temporary table exists only on the connection that made it: the later writes,
        // alone and on the writer task, find it only on that same connection.
        store
            .write(statement("CREATE TEMP TABLE kept (n INTEGER)"))
            .await
            .expect("a write makes the table");
        let insert = statement("INSERT INTO temp.kept (n) VALUES (1)");
        store
            .write(insert)
            .await
            .expect("alone, on the same connection");
        queued_write(&store, insert)
            .await
            .expect("on the writer task, on the same connection");
        let group = store.group.as_ref().expect("SQLite groups its writes");
        assert!(
            group.turn.lock().await.conn.is_some(),
            "kept between writes"
        );

        // Closed with the pool: no write runs after.
        tokio::time::timeout(Duration::from_secs(30), store.close())
            .await
            .expect("the store closes");
        let closed = select_one(&store).await.expect_err("no write after close");
        assert!(closed.is_unavailable(), "{closed}");
    }

    #[tokio::test]
    async fn a_write_that_fails_in_the_database_gets_a_fresh_connection_for_the_next() {
        let (_dir, store) = file_store().await;
        let group = store.group.as_ref().expect("SQLite groups its writes");
        select_one(&store).await.expect("a write");
        assert!(
            group.turn.lock().await.conn.is_some(),
            "kept between writes"
        );

        let failed = store
            .write(statement("INSERT INTO no_such_table VALUES (1)"))
            .await
            .expect_err("no such table");
        assert!(matches!(failed, StoreError::Sql(_)), "{failed}");
        assert!(
            group.turn.lock().await.conn.is_none(),
            "closed after a database error"
        );
        select_one(&store)
            .await
            .expect("the next write opens another");
        assert!(group.turn.lock().await.conn.is_some());
    }

    #[tokio::test]
    async fn an_in_memory_database_gets_its_one_connection_back_after_each_write() {
        let store = Store::connect("sqlite::memory:").await.expect("connect");
        for _ in 0..2 {
            select_one(&store).await.expect("a write");
            // Within the pool's acquire timeout (3 s), not after it.
            sqlx::query("SELECT 1")
                .execute(&store.pool)
                .await
                .expect("a reader gets the connection");
        }
        assert_eq!(store.pool.size(), 1);
    }
}
