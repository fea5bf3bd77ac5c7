//! Delivery of completion notifications from the outbox, in its own task so that a slow
//! receiver never delays a job.
//!
//! Claims work like the job queue's: `FOR UPDATE SKIP LOCKED` and a lease, no transaction open
//! during the HTTP call. The notifications of one request go out in order: one is claimed only
//! when none before it is still pending. The message id (`webhook-id`) is the notification's id,
//! the same on every retry.

use std::time::{Duration, Instant};

use futures::future::join_all;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use sqlx::types::Json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Worker, queue, wait_notification};
use crate::notifications::store;
use crate::outbound::excerpt;
use crate::outbound::signing::Secrets;

/// A notification this worker holds the lease of.
#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    id: Uuid,
    client_id: Uuid,
    request_id: Uuid,
    url: String,
    payload: Json<serde_json::Value>,
    attempts: i32,
    max_attempts: i32,
}

/// How one attempt went.
struct Outcome {
    http_status: Option<i32>,
    error: Option<String>,
}

/// Delivers until `stop` is cancelled. Wakes on NOTIFY `gdpr_notifications`, and polls as a
/// fallback (and for retries that come due).
pub async fn run(worker: Worker, stop: CancellationToken) {
    let mut listener = listen(&worker.pool).await;
    let poll = Duration::from_millis(worker.settings.poll_interval_ms);
    while !stop.is_cancelled() {
        let delivered = match worker.deliver_step().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "notification delivery step failed");
                0
            }
        };
        if delivered > 0 {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(poll) => {}
            _ = wait_notification(&mut listener) => {}
        }
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.ok()?;
    listener.listen("gdpr_notifications").await.ok()?;
    Some(listener)
}

impl Worker {
    /// Delivers until no notification is due (tests drive delivery with it). Returns the
    /// attempts made.
    pub async fn deliver_until_idle(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let n = self.deliver_step().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Claims a batch of due notifications and delivers them concurrently.
    async fn deliver_step(&self) -> anyhow::Result<usize> {
        let claimed = claim(
            &self.pool,
            &self.id,
            self.notify_lease(),
            self.settings.notify_max_attempts,
            self.settings.concurrency as i64,
        )
        .await?;
        let n = claimed.len();
        join_all(claimed.into_iter().map(|n| self.deliver(n))).await;
        Ok(n)
    }

    /// Outlasts the receiver's timeout, so that a lease never runs out during a call.
    fn notify_lease(&self) -> Duration {
        Duration::from_secs(
            self.settings
                .lease_secs
                .max(self.settings.notify_timeout_secs + 5),
        )
    }

    async fn deliver(&self, notification: Claimed) {
        let started = Instant::now();
        let outcome = if notification.attempts > notification.max_attempts {
            Outcome {
                http_status: None,
                error: Some(format!(
                    "gave up after {} attempts whose workers stopped before finishing",
                    notification.max_attempts
                )),
            }
        } else {
            self.post(&notification).await
        };
        let elapsed = started.elapsed();
        match &outcome.error {
            None => tracing::info!(
                notification_id = %notification.id, request_id = %notification.request_id,
                attempt = notification.attempts, ms = elapsed.as_millis() as u64,
                "notification delivered"
            ),
            Some(error) => tracing::warn!(
                notification_id = %notification.id, request_id = %notification.request_id,
                attempt = notification.attempts, error = %error, "notification not delivered"
            ),
        }
        let delay = queue::backoff(
            notification.attempts,
            Duration::from_millis(self.settings.retry_base_ms),
            Duration::from_secs(self.settings.notify_retry_max_secs),
        );
        if let Err(e) = record(
            &self.pool,
            &self.id,
            &notification,
            &outcome,
            elapsed,
            delay,
        )
        .await
        {
            // The lease runs out and another attempt follows: nothing is lost.
            tracing::warn!(error = %e, "recording a notification attempt failed");
        }
    }

    /// One POST, signed with the client's secrets as they are now.
    async fn post(&self, notification: &Claimed) -> Outcome {
        let failed = |error: String| Outcome {
            http_status: None,
            error: Some(error),
        };
        let secrets = match store::signing_secrets(&self.pool, notification.client_id).await {
            Ok(Some(list)) => match Secrets::from_list(list) {
                Ok(secrets) => secrets,
                Err(e) => return failed(e.to_string()),
            },
            Ok(None) => {
                return failed(
                    "the client's notification endpoint (and its signing secret) was deleted"
                        .into(),
                );
            }
            Err(e) => return failed(format!("loading the signing secrets: {e}")),
        };
        let timeout = Duration::from_secs(self.settings.notify_timeout_secs);
        let sent = self
            .outbound
            .post_signed(
                &notification.url,
                notification.id,
                &secrets,
                &notification.payload.0,
                timeout,
            )
            .await;
        match sent {
            Ok(answer) if (200..300).contains(&answer.status) => Outcome {
                http_status: Some(answer.status.into()),
                error: None,
            },
            Ok(answer) => {
                let body = excerpt(&answer.body);
                Outcome {
                    http_status: Some(answer.status.into()),
                    error: Some(if body.is_empty() {
                        format!("the receiver answered {}", answer.status)
                    } else {
                        format!("the receiver answered {}: {body}", answer.status)
                    }),
                }
            }
            Err(e) => failed(e.to_string()),
        }
    }
}

/// Claims up to `limit` due notifications: pending ones whose time has come and delivering ones
/// whose lease expired, each only when no earlier notification of its request is unfinished.
async fn claim(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
    max_attempts: i32,
    limit: i64,
) -> sqlx::Result<Vec<Claimed>> {
    sqlx::query_as(
        "UPDATE notifications n
            SET state = 'delivering', attempts = n.attempts + 1, locked_by = $1,
                locked_until = now() + make_interval(secs => $2),
                max_attempts = coalesce(n.max_attempts, $3)
          WHERE n.id IN (
                SELECT c.id FROM notifications c
                 WHERE ((c.state = 'pending' AND c.run_at <= now())
                        OR (c.state = 'delivering' AND c.locked_until < now()))
                   AND NOT EXISTS (
                       SELECT 1 FROM notifications e
                        WHERE e.request_id = c.request_id AND e.seq < c.seq
                          AND e.state IN ('pending', 'delivering'))
                 ORDER BY c.run_at
                 LIMIT $4
                 FOR UPDATE SKIP LOCKED)
      RETURNING n.id, n.client_id, n.request_id, n.url, n.payload, n.attempts, n.max_attempts",
    )
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(max_attempts)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Logs the attempt and moves the notification on: delivered, pending again after `delay`, or
/// failed once it has used its attempts. Does nothing when the lease was lost.
async fn record(
    pool: &PgPool,
    worker: &str,
    notification: &Claimed,
    outcome: &Outcome,
    elapsed: Duration,
    delay: Duration,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    let held: Option<String> = sqlx::query_scalar(
        "UPDATE notifications
            SET state = CASE WHEN $3::text IS NULL THEN 'delivered'
                             WHEN attempts >= max_attempts THEN 'failed'
                             ELSE 'pending' END,
                delivered_at = CASE WHEN $3::text IS NULL THEN now() END,
                run_at = now() + make_interval(secs => $4),
                last_error = $3, locked_by = NULL, locked_until = NULL
          WHERE id = $1 AND locked_by = $2 AND state = 'delivering'
      RETURNING state",
    )
    .bind(notification.id)
    .bind(worker)
    .bind(&outcome.error)
    .bind(delay.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(state) = held else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO notification_attempts (notification_id, attempt, http_status, error,
             duration_ms)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
    )
    .bind(notification.id)
    .bind(notification.attempts)
    .bind(outcome.http_status)
    .bind(&outcome.error)
    .bind(elapsed.as_millis() as i64)
    .execute(&mut *tx)
    .await?;
    if state != "pending" {
        // The request's next notification, if any, may go now.
        sqlx::query("SELECT pg_notify('gdpr_notifications', '')")
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
