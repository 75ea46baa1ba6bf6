//! Long-poll wake-ups across servers: one `LISTEN sync_changes` connection per store, fanned
//! out to per-tenant watch channels (`sync_core::server::Watchers`).
//!
//! Every committed write that changes a tenant's feed runs `pg_notify('sync_changes', tenant)`
//! inside its transaction, so PostgreSQL delivers it on commit (and drops it on rollback) to
//! every listening connection: every [`crate::PgServerStore`] in every server process on the
//! database. Each store keeps exactly one dedicated listener connection (outside the pool). A
//! driver task polls that connection ([`tokio_postgres::Connection::poll_message`]) and bumps
//! the `watch` channel of the tenant named in each notification; `wait` sleeps on that channel
//! and re-checks the feed when it moves. Nothing polls the database on a timer for changes.
//!
//! Failure handling, done by a supervisor task:
//! - when the listener connection drops (server restart, network cut, idle-connection killer),
//!   every waiter is woken at once so it re-checks the feed (and reports the error if the
//!   database is really gone), then the supervisor reconnects with exponential backoff
//!   (100 ms doubling to 10 s) and, once `LISTEN` runs again, wakes every waiter once more:
//!   notifications sent while nobody listened are lost, so waiters re-check instead;
//! - a silently dead connection (no FIN, e.g. a dropped NAT entry) is found by a liveness query
//!   (`SELECT 1` every 30 s, 10 s to answer) on the listener connection itself. That is a
//!   health check of one idle connection, not polling of the feed.
//!
//! The tasks stop when the store is dropped.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
pub(crate) use sync_core::server::Watchers;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// The notification channel every store listens on and every write notifies.
pub const CHANNEL: &str = "sync_changes";

/// Notification payloads are limited to 8000 bytes; a tenant id longer than this is sent as
/// an empty payload, which wakes the waiters of every tenant.
pub(crate) const MAX_PAYLOAD: usize = 7_900;

/// How often the idle listener connection is checked.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(30);

/// How long the liveness query may take before the connection counts as dead.
pub(crate) const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// The first reconnect delay; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Aborts a task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A live listener connection: its client and the task that drives the connection.
pub(crate) struct Listening {
    client: Client,
    driver: AbortOnDrop,
}

/// Opens a listener connection, starts its driver task and runs `LISTEN`.
pub(crate) async fn listen(
    config: &tokio_postgres::Config,
    watchers: &Arc<Watchers>,
) -> Result<Listening, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let fan_out = Arc::clone(watchers);
    let driver = AbortOnDrop(tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                    if n.payload().is_empty() {
                        fan_out.notify_all();
                    } else {
                        fan_out.notify(n.payload());
                    }
                }
                Ok(AsyncMessage::Notice(notice)) => {
                    tracing::debug!(
                        message = notice.message(),
                        "PostgreSQL notice on the listener connection"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %crate::error::describe(&e), "the PostgreSQL listener connection failed");
                    break;
                }
            }
        }
    }));
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    Ok(Listening { client, driver })
}

/// Keeps a listener alive for as long as the returned guard lives (see the module docs).
pub(crate) fn supervise(
    config: tokio_postgres::Config,
    watchers: Arc<Watchers>,
    first: Listening,
    target: String,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut current = first;
        loop {
            // Healthy: wait for the connection to end or to stop answering.
            loop {
                tokio::select! {
                    _ = &mut current.driver.0 => break,
                    () = tokio::time::sleep(HEARTBEAT) => {
                        let alive = tokio::time::timeout(
                            HEARTBEAT_TIMEOUT,
                            current.client.simple_query("SELECT 1"),
                        )
                        .await;
                        if !matches!(alive, Ok(Ok(_))) {
                            tracing::warn!(%target, "the PostgreSQL listener connection stopped answering");
                            break;
                        }
                    }
                }
            }
            drop(current);
            tracing::warn!(%target, "lost the PostgreSQL listener connection; waking every long-poll and reconnecting");
            watchers.notify_all();
            let mut delay = FIRST_BACKOFF;
            current = loop {
                tokio::time::sleep(delay).await;
                match listen(&config, &watchers).await {
                    Ok(listening) => break listening,
                    Err(e) => {
                        tracing::warn!(
                            %target,
                            error = %crate::error::describe(&e),
                            retry_in = ?delay.saturating_mul(2).min(MAX_BACKOFF),
                            "cannot reconnect the PostgreSQL listener"
                        );
                        delay = delay.saturating_mul(2).min(MAX_BACKOFF);
                    }
                }
            };
            tracing::info!(%target, "PostgreSQL listener reconnected");
            // Notifications sent while nobody listened are lost: every waiter re-checks.
            watchers.notify_all();
        }
    }))
}
