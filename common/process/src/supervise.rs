//! Supervision of a process's background tasks: none may fail unnoticed.
//!
//! A task spawned with its handle dropped dies silently: a panic in a CA rotation loop or a
//! policy listener leaves a process that looks healthy and is not. Every background task of
//! a service is therefore spawned through a [`Supervisor`], under a name and one of two
//! policies, chosen at the call site for a reason said there:
//!
//! - [`Supervisor::restart`]: the task keeps no state a fresh run cannot rebuild (a polling
//!   loop, a listener on a database channel). Each failure (an error it returns, or a panic)
//!   is logged at error, counted in `task_failures_total{task}`, and the task is started
//!   again after a backoff that doubles up to a cap (reset once a run lasted longer than the
//!   cap).
//! - [`Supervisor::exit_on_failure`]: the task cannot be rebuilt in place (it owns a bound
//!   listener, or state a panic may have left half-changed). A failure is logged and counted
//!   the same way, then [`Supervisor::failed`] resolves: the process drains like on SIGTERM
//!   and exits non-zero, and the service manager (systemd `Restart=on-failure`, Kubernetes)
//!   starts it afresh. A process's main listener runs under this policy too, and the process
//!   waits for it with [`Running::ended`]: its failure is recorded by then, so the exit
//!   status cannot miss it.
//!
//! A task that returns `Ok` (or `()`) has finished its job, usually because shutdown was
//! asked: it is neither counted nor restarted. At shutdown, [`Supervisor::shutdown`] stops
//! every task and waits until each has dropped what it held (keys included).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::{oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};

/// How long a restarted task waits: doubling from `initial` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after a first failure.
    pub initial: Duration,
    /// The longest wait; a run that lasted longer than this resets the wait to `initial`.
    pub max: Duration,
}

impl Backoff {
    /// One second, doubling up to a minute: quick enough to recover from a blip, slow
    /// enough that a task failing at once does not flood the log.
    pub const DEFAULT: Backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::DEFAULT
    }
}

/// What a task's run ended with: `Ok` when it finished its job, `Err` with the reason when
/// it failed. Implemented for `()` (a task that cannot fail but by panicking) and for
/// `Result<(), E>` with a displayable error.
pub trait Outcome {
    /// The failure's reason, if it failed.
    fn failure(self) -> Option<String>;
}

impl Outcome for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<E: std::fmt::Display> Outcome for Result<(), E> {
    fn failure(self) -> Option<String> {
        self.err().map(|e| format!("{e:#}"))
    }
}

/// A task under the exit policy failed: the process should drain and exit non-zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {task} task failed: {reason}")]
pub struct TaskFailed {
    /// The task's name.
    pub task: &'static str,
    /// Its error, or the panic's message.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TaskLabel {
    task: &'static str,
}

struct Inner {
    failures: Family<TaskLabel, Counter>,
    fatal: watch::Sender<Option<TaskFailed>>,
    tasks: Mutex<JoinSet<()>>,
}

/// Spawns and watches a process's background tasks (see the module docs). Cheap to clone:
/// clones share the tasks, the counter and the exit signal.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor with no tasks yet.
    pub fn new() -> Self {
        Supervisor {
            inner: Arc::new(Inner {
                failures: Family::default(),
                fatal: watch::channel(None).0,
                tasks: Mutex::new(JoinSet::new()),
            }),
        }
    }

    /// Adds `task_failures_total{task}` to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "task_failures",
            "Background task failures (errors and panics), by task",
            self.inner.failures.clone(),
        );
    }

    /// How often the task `name` failed so far.
    pub fn failures(&self, name: &'static str) -> u64 {
        self.inner
            .failures
            .get_or_create(&TaskLabel { task: name })
            .get()
    }

    /// Runs `task()` as the background task `name`, starting it again after each failure
    /// with `backoff` (see the module docs for when this policy fits). The handle stops
    /// it (and tells whether it finished); dropping the handle does not.
    pub fn restart<F, Fut>(&self, name: &'static str, backoff: Backoff, mut task: F) -> AbortHandle
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Outcome,
    {
        let supervisor = self.clone();
        self.spawn(async move {
            let mut wait = backoff.initial;
            loop {
                let started = tokio::time::Instant::now();
                let Some(reason) = run_once(task()).await else {
                    return;
                };
                supervisor.count(name, &reason);
                if started.elapsed() > backoff.max {
                    wait = backoff.initial;
                }
                tracing::warn!(task = name, wait = ?wait, "restarting the task");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(backoff.max);
            }
        })
    }

    /// Runs `task` as the background task `name`; if it fails, [`Supervisor::failed`]
    /// resolves so that the process exits non-zero (see the module docs for when this
    /// policy fits).
    pub fn exit_on_failure<Fut>(&self, name: &'static str, task: Fut) -> Running
    where
        Fut: Future + Send + 'static,
        Fut::Output: Outcome,
    {
        let supervisor = self.clone();
        let (ended_tx, ended) = oneshot::channel::<()>();
        let abort = self.spawn(async move {
            // Dropped last (or with the task when it is stopped): whoever waits for the end
            // finds the failure recorded.
            let _ended = ended_tx;
            if let Some(reason) = run_once(task).await {
                supervisor.count(name, &reason);
                tracing::error!(
                    task = name,
                    "the process stops: a task it cannot restart failed"
                );
                supervisor.inner.fatal.send_if_modified(|fatal| {
                    // The first failure is the one the process exits with.
                    if fatal.is_some() {
                        return false;
                    }
                    *fatal = Some(TaskFailed { task: name, reason });
                    true
                });
            }
        });
        Running { abort, ended }
    }

    /// Resolves once a task under the exit policy failed, with the first such failure.
    pub async fn failed(&self) -> TaskFailed {
        let mut fatal = self.inner.fatal.subscribe();
        let failed = fatal
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|failed| failed.clone());
        match failed {
            Some(failure) => failure,
            // The sender lives in `self`: it cannot be dropped while this waits, and
            // `wait_for` only returns a value that is `Some`.
            None => std::future::pending().await,
        }
    }

    /// Resolves when the process should stop serving: on SIGINT or SIGTERM
    /// ([`crate::shutdown_signal`]), or once a task under the exit policy failed (logged
    /// here). What a process's listeners take as their shutdown signal.
    pub fn stop_requested(&self) -> impl Future<Output = ()> + Send + 'static {
        let supervisor = self.clone();
        async move {
            tokio::select! {
                () = crate::shutdown_signal() => {}
                failed = supervisor.failed() => tracing::error!(%failed, "stopping"),
            }
        }
    }

    /// The first failure of a task under the exit policy, if one failed.
    pub fn failure(&self) -> Option<TaskFailed> {
        self.inner.fatal.borrow().clone()
    }

    /// What the process ends with: `Err` with the first failure of a task under the exit
    /// policy, if one failed.
    pub fn outcome(&self) -> Result<(), TaskFailed> {
        self.failure().map_or(Ok(()), Err)
    }

    /// Stops every task and waits until each has ended, so that whatever they held (a
    /// clone of the service's state, keys included) is dropped before this returns.
    pub async fn shutdown(&self) {
        // Again until none is left: a task may start another while it is being stopped.
        loop {
            let mut tasks = std::mem::take(
                &mut *self
                    .inner
                    .tasks
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if tasks.is_empty() {
                return;
            }
            tasks.shutdown().await;
        }
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> AbortHandle {
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Finished tasks are forgotten here, so a process that starts many short ones
        // (one per federation relationship, say) does not keep them all.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task)
    }

    fn count(&self, name: &'static str, reason: &str) {
        self.inner
            .failures
            .get_or_create(&TaskLabel { task: name })
            .inc();
        tracing::error!(task = name, reason, "background task failed");
    }
}

/// A task started under the exit policy: it can be waited for, or stopped. Dropping this
/// does neither.
#[derive(Debug)]
pub struct Running {
    abort: AbortHandle,
    ended: oneshot::Receiver<()>,
}

impl Running {
    /// Resolves once the task has ended (finished, failed or stopped); a failure is then
    /// already recorded, in [`Supervisor::failure`] and the failure count.
    pub async fn ended(self) {
        let _ = self.ended.await;
    }

    /// Stops the task.
    pub fn abort(&self) {
        self.abort.abort();
    }
}

/// Runs one attempt of a task to its end; its failure's reason if it returned an error or
/// panicked.
async fn run_once<Fut>(task: Fut) -> Option<String>
where
    Fut: Future,
    Fut::Output: Outcome,
{
    // A panic is caught here, not by the runtime, so that it is counted and the policy
    // applies. The task's state is dropped with it; nothing of it is reused.
    match AssertUnwindSafe(task).catch_unwind().await {
        Ok(outcome) => outcome.failure(),
        Err(panic) => Some(panic_message(panic.as_ref())),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    format!("panicked: {message}")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const QUICK: Backoff = Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(4),
    };

    #[tokio::test]
    async fn a_panicking_task_is_counted_and_restarted_until_it_finishes() {
        let supervisor = Supervisor::new();
        let runs = Arc::new(AtomicU32::new(0));
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let mut done_tx = Some(done_tx);
        let counted = runs.clone();
        supervisor.restart("flaky", QUICK, move || {
            let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
            let done_tx = if run == 4 { done_tx.take() } else { None };
            async move {
                match run {
                    1 | 2 => panic!("run {run} panics"),
                    3 => Err("run 3 fails"),
                    _ => {
                        let _ = done_tx.map(|tx| tx.send(()));
                        Ok(())
                    }
                }
            }
        });
        done.await.expect("the fourth run finishes");
        supervisor.shutdown().await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            4,
            "finished: not started again"
        );
        assert_eq!(supervisor.failures("flaky"), 3, "two panics and one error");
        let mut registry = Registry::default();
        supervisor.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains("task_failures_total{task=\"flaky\"} 3"),
            "{text}"
        );
    }

    async fn broken_listener() {
        panic!("listener broke")
    }

    #[tokio::test]
    async fn a_failing_task_under_the_exit_policy_stops_the_process() {
        let supervisor = Supervisor::new();
        supervisor.exit_on_failure("fine", async {});
        supervisor.exit_on_failure("listener", broken_listener());
        let failed = supervisor.failed().await;
        assert_eq!(supervisor.failure(), Some(failed.clone()));
        assert_eq!(failed.task, "listener");
        assert_eq!(failed.reason, "panicked: listener broke");
        assert_eq!(supervisor.failures("listener"), 1);
        assert_eq!(supervisor.failures("fine"), 0);
        // A later failure is counted but does not replace the first.
        supervisor.exit_on_failure("other", async { Err::<(), _>("later") });
        while supervisor.failures("other") == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(supervisor.failed().await.task, "listener");
        supervisor.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_main_listener_that_fails_has_its_failure_recorded_by_the_time_it_ended() {
        // As a process's main listener: the process waits for its end, then exits with
        // `failure()`, which must not be read before the failure was recorded.
        let supervisor = Supervisor::new();
        let (go_tx, go) = tokio::sync::oneshot::channel::<()>();
        let api = supervisor.exit_on_failure("api", async move {
            let _ = go.await;
            broken_listener().await;
        });
        let _ = go_tx.send(());
        api.ended().await;
        let failed = supervisor
            .failure()
            .expect("recorded before the end was seen");
        assert_eq!(failed.task, "api");
        assert_eq!(failed.reason, "panicked: listener broke");
        assert_eq!(supervisor.failures("api"), 1);
        supervisor.shutdown().await;
    }

    #[tokio::test]
    async fn a_stopped_task_has_ended_without_a_failure() {
        let supervisor = Supervisor::new();
        let forever = supervisor.exit_on_failure("forever", std::future::pending::<()>());
        forever.abort();
        forever.ended().await;
        assert_eq!(supervisor.failure(), None);
        assert_eq!(supervisor.failures("forever"), 0);
    }

    #[tokio::test]
    async fn shutdown_drops_what_running_tasks_hold() {
        let supervisor = Supervisor::new();
        let held = Arc::new(());
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let in_task = held.clone();
        supervisor.exit_on_failure("forever", async move {
            let _held = in_task;
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
        });
        started.await.expect("the task started");
        assert_eq!(Arc::strong_count(&held), 2);
        supervisor.shutdown().await;
        assert_eq!(Arc::strong_count(&held), 1, "the task's clone was dropped");
    }
}
