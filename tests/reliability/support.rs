//! What the reliability tests share: the real `gdprd` process, the test's database URL, an audit
//! of job executions recorded by PostgreSQL triggers, and raw HTTP for what a well-behaved client
//! would never send.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gdprd::config::HttpSettings;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The URL of the test's own database (created by `#[sqlx::test]` on `DATABASE_URL`'s server).
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let mut url = reqwest::Url::parse(&base).unwrap();
    url.set_path(&database);
    url.to_string()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Settings every process of these tests starts with (a test may override any): the demo
/// catalog, a small pool (the tests share one PostgreSQL server), quick polling and retries, and
/// a short lease so that a dead worker's jobs are taken over within seconds.
const DEFAULTS: &[(&str, &str)] = &[
    ("GDPRD_CATALOG", "catalog/demo.toml"),
    ("GDPRD_LOG", "warn"),
    ("GDPRD_DB_MAX_CONNECTIONS", "4"),
    ("GDPRD_POLL_INTERVAL_MS", "50"),
    ("GDPRD_JOB_LEASE_SECS", "2"),
    ("GDPRD_RETRY_BASE_MS", "50"),
    ("GDPRD_RETRY_MAX_MS", "400"),
];

/// A running `gdprd` process. Its log (stderr) goes to a file, so that a chatty process never
/// blocks on a full pipe; it is killed when dropped.
pub struct Gdprd {
    child: Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT` of a `serve` process; empty for a worker.
    pub base: String,
    log: PathBuf,
}

impl Gdprd {
    /// Starts `gdprd ARGS` on the database at `url`.
    pub fn start(url: &str, args: &[&str], env: &[(&str, &str)]) -> Gdprd {
        let log =
            std::env::temp_dir().join(format!("gdprd-reliability-{}.log", uuid::Uuid::new_v4()));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_gdprd"));
        command.args(args).env("DATABASE_URL", url);
        for (name, value) in DEFAULTS.iter().chain(env) {
            command.env(name, value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("the gdprd binary starts");
        let pid = child.id();
        let base = match args.first() {
            Some(&"serve") => {
                let listen = env
                    .iter()
                    .find(|(name, _)| *name == "GDPRD_LISTEN")
                    .map(|(_, v)| v.to_string())
                    .expect("serve needs GDPRD_LISTEN");
                format!("http://{listen}")
            }
            _ => String::new(),
        };
        Gdprd {
            child,
            pid,
            base,
            log,
        }
    }

    /// `gdprd worker`.
    pub fn worker(url: &str, env: &[(&str, &str)]) -> Gdprd {
        Gdprd::start(url, &["worker"], env)
    }

    /// `gdprd serve` (with `--no-worker` unless `worker`) on a free port, once it answers.
    pub async fn serve(url: &str, worker: bool, env: &[(&str, &str)]) -> Gdprd {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut all: Vec<(&str, &str)> = vec![("GDPRD_LISTEN", listen.as_str())];
        all.extend_from_slice(env);
        let args: &[&str] = if worker {
            &["serve"]
        } else {
            &["serve", "--no-worker"]
        };
        let mut process = Gdprd::start(url, args, &all);
        process.ready().await;
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `127.0.0.1:PORT`, for raw connections.
    pub fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Waits until `/healthz` answers (at most 30 s).
    pub async fn ready(&mut self) {
        gdprd::outbound::install_crypto_provider();
        let http = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("gdprd exited at start ({status}):\n{}", self.logs());
            }
            if let Ok(r) = http.get(self.url("/healthz")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gdprd did not answer within 30 s:\n{}", self.logs());
    }

    pub fn sigterm(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {}", self.pid);
    }

    /// SIGKILL: the process dies at once, whatever it holds.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit by itself, at most `limit`.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The prefix of this process' worker ids in `gdpr_jobs.locked_by`.
    pub fn lease_prefix(&self) -> String {
        format!("{}-%", self.pid)
    }
}

impl Drop for Gdprd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// HTTP settings without rate limits to speak of: the tests that use them are about something
/// else.
pub fn quiet_settings() -> HttpSettings {
    HttpSettings {
        rate_token_per_min: 1_000_000,
        rate_read_per_min: 1_000_000,
        rate_create_per_min: 1_000_000,
        rate_index_per_min: 1_000_000,
        ..HttpSettings::default()
    }
}

/// Polls `check` until it holds, at most `limit`; returns how long it took.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not within {} s",
            limit.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A bearer token of a new client of `org`, issued by the server at `base`.
pub async fn token_at(pool: &PgPool, base: &str, org: &str, permissions: &[&str]) -> String {
    let permissions: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
    let client = gdprd::auth::clients::create(pool, org, "reliability", &permissions)
        .await
        .unwrap();
    gdprd::outbound::install_crypto_provider();
    gdprd::outbound::install_crypto_provider();
    let response = reqwest::Client::new()
        .post(format!("{base}/oauth/token"))
        .basic_auth(client.client_id, Some(&client.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// The main email address of `n` distinct seeded people: external contacts outside merge sets,
/// so that each is one person with one request.
pub async fn people(pool: &PgPool, n: usize) -> Vec<String> {
    let emails: Vec<String> = sqlx::query_scalar(
        "SELECT record->'emailAddresses'->>0 FROM subjects
          WHERE kind = 'externalContact' AND canonical_contact_id IS NULL
            AND jsonb_array_length(record->'emailAddresses') > 0
          ORDER BY ref_key LIMIT $1",
    )
    .bind(n as i64)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(emails.len(), n, "seed more people");
    emails
}

/// A mixed batch for `emails`, one request per person: erasures, exports and access summaries
/// in turn.
pub fn batch(emails: &[String]) -> Vec<Value> {
    const TYPES: [&str; 3] = ["GDPR_DELETE", "GDPR_EXPORT", "GDPR_GET"];
    emails
        .iter()
        .enumerate()
        .map(|(i, email)| {
            serde_json::json!({
                "requestType": TYPES[i % TYPES.len()],
                "subject": {"emailAddresses": [email]},
            })
        })
        .collect()
}

/// Submits `body` to the API at `base`; returns the new request's id (it must be accepted).
pub async fn submit(http: &reqwest::Client, base: &str, token: &str, body: &Value) -> String {
    let mut request = http
        .post(format!("{base}/api/v2/gdpr/requests"))
        .bearer_auth(token)
        .json(body);
    if body["requestType"] == "GDPR_DELETE" {
        request = request.query(&[("deleteConfirmed", "true")]);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// How many requests there are, and how many are COMPLETED or ERROR.
pub async fn progress(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status IN ('COMPLETED', 'ERROR'))
           FROM gdpr_requests",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits until every request is COMPLETED or ERROR.
pub async fn all_finished(pool: &PgPool, limit: Duration) -> Duration {
    eventually(limit, "every request finishes", move || async move {
        let (total, done) = progress(pool).await;
        total == done
    })
    .await
}

/// Records, with PostgreSQL triggers, every job as it is queued, claimed, released and
/// completed, and every bundle as its row is replaced by its services' jobs (`replaced`, with its
/// holder), each with its transaction id, backend pid and clock time, and every statement that writes to a demo data
/// table, each statement slowed by `delay_ms` so that jobs are caught mid-work. Unlogged tables:
/// only the test reads them.
pub async fn install_audit(pool: &PgPool, delay_ms: u32) {
    let delay = f64::from(delay_ms) / 1000.0;
    let statements = [
        "CREATE UNLOGGED TABLE audit_jobs (
             job_id uuid NOT NULL, request_id uuid NOT NULL, service text NOT NULL,
             status text NOT NULL, attempts int NOT NULL, locked_by text, locked_until timestamptz,
             op text NOT NULL, listed int,
             txid bigint NOT NULL DEFAULT txid_current(),
             backend_pid int NOT NULL DEFAULT pg_backend_pid(),
             at timestamptz NOT NULL DEFAULT clock_timestamp())"
            .to_owned(),
        "CREATE UNLOGGED TABLE audit_data (
             table_name text NOT NULL, operation text NOT NULL,
             txid bigint NOT NULL DEFAULT txid_current(),
             backend_pid int NOT NULL DEFAULT pg_backend_pid(),
             at timestamptz NOT NULL DEFAULT clock_timestamp())"
            .to_owned(),
        "CREATE FUNCTION audit_job() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF TG_OP = 'DELETE' THEN
                 INSERT INTO audit_jobs (job_id, request_id, service, status, attempts,
                                         locked_by, locked_until, op)
                 VALUES (OLD.id, OLD.request_id, OLD.service, 'replaced', OLD.attempts,
                         OLD.locked_by, OLD.locked_until, TG_OP);
             ELSE
                 INSERT INTO audit_jobs (job_id, request_id, service, status, attempts,
                                         locked_by, locked_until, op, listed)
                 VALUES (NEW.id, NEW.request_id, NEW.service, NEW.status, NEW.attempts,
                         NEW.locked_by, NEW.locked_until, TG_OP,
                         jsonb_array_length(NEW.bundle_jobs));
             END IF;
             RETURN NULL;
         END $$"
            .to_owned(),
        "CREATE TRIGGER audit_job AFTER UPDATE ON gdpr_jobs FOR EACH ROW
             WHEN (OLD.status IS DISTINCT FROM NEW.status
                   OR OLD.locked_by IS DISTINCT FROM NEW.locked_by
                   OR OLD.attempts IS DISTINCT FROM NEW.attempts)
             EXECUTE FUNCTION audit_job()"
            .to_owned(),
        "CREATE TRIGGER audit_job_insert AFTER INSERT ON gdpr_jobs FOR EACH ROW
             EXECUTE FUNCTION audit_job()"
            .to_owned(),
        "CREATE TRIGGER audit_bundle AFTER DELETE ON gdpr_jobs FOR EACH ROW
             WHEN (OLD.action = 'bundle') EXECUTE FUNCTION audit_job()"
            .to_owned(),
        format!(
            "CREATE FUNCTION audit_data() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO audit_data (table_name, operation) VALUES (TG_TABLE_NAME, TG_OP);
                 PERFORM pg_sleep({delay});
                 RETURN NULL;
             END $$"
        ),
        "DO $$
         DECLARE t record;
         BEGIN
             FOR t IN SELECT table_name FROM information_schema.tables
                       WHERE table_schema = 'demo' AND table_type = 'BASE TABLE'
             LOOP
                 EXECUTE format('CREATE TRIGGER audit_data AFTER INSERT OR UPDATE OR DELETE
                                 ON demo.%I FOR EACH STATEMENT EXECUTE FUNCTION audit_data()',
                                t.table_name);
             END LOOP;
         END $$"
            .to_owned(),
    ];
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(pool)
            .await
            .unwrap();
    }
}

/// What the audit tables say about how the jobs ran.
#[derive(Debug)]
pub struct Audit {
    pub jobs: i64,
    pub completed_jobs: i64,
    /// Jobs and bundles queued (each is claimed at least once; a bundle's services' jobs are not
    /// queued but completed, or held by the bundle's worker, as the bundle's row goes).
    pub queued: i64,
    /// Times a job or bundle was claimed (claimed again after a failure or a lost lease counts
    /// again); a bundle's services' jobs, held as the bundle's row goes, are not claimed.
    pub claims: i64,
    /// Bundles whose request does not end with a completed job for each service they named:
    /// must be none.
    pub lost_jobs: i64,
    /// Claims of a job whose previous holder never released it: its lease had run out.
    pub takeovers: i64,
    /// Claims made while another worker still held a live lease on the job: must be none.
    pub overlapping_claims: i64,
    /// A request's jobs of a service that became `completed` more than once (the same job
    /// twice, or a bundle completed twice as new rows): must be none.
    pub double_completions: i64,
    /// Transactions that wrote to a data table without completing a job in the same
    /// transaction: must be none (a dead worker's half-done work is rolled back).
    pub orphan_writes: i64,
    /// Transactions that wrote to data tables (each one job's action).
    pub writing_transactions: i64,
    pub max_attempts: i32,
    /// Jobs completed per worker process (by pid).
    pub per_process: Vec<(String, i64)>,
}

pub async fn audit(pool: &PgPool) -> Audit {
    let one = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    // A job completed by its claimant, or as its bundle's row was replaced, by the bundle's.
    let per_process: Vec<(String, i64)> = sqlx::query_as(
        "SELECT split_part(coalesce(claimed.locked_by, bundle.locked_by), '-', 1), count(*)
           FROM audit_jobs done
           LEFT JOIN LATERAL (SELECT locked_by FROM audit_jobs c
                               WHERE c.job_id = done.job_id AND c.status = 'running'
                                 AND c.at <= done.at ORDER BY c.at DESC LIMIT 1) claimed ON true
           LEFT JOIN LATERAL (SELECT locked_by FROM audit_jobs u
                               WHERE u.txid = done.txid AND u.request_id = done.request_id
                                 AND u.status = 'replaced' LIMIT 1) bundle ON true
          WHERE done.status = 'completed'
          GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    Audit {
        jobs: one("SELECT count(*) FROM gdpr_jobs").await,
        completed_jobs: one("SELECT count(*) FROM gdpr_jobs WHERE status = 'completed'").await,
        queued: one("SELECT count(*) FROM audit_jobs
              WHERE status IN ('queued', 'waiting')
                AND at = (SELECT min(at) FROM audit_jobs f WHERE f.job_id = audit_jobs.job_id)")
        .await,
        claims: one("SELECT count(*) FROM audit_jobs WHERE status = 'running' AND op = 'UPDATE'")
            .await,
        lost_jobs: one("SELECT count(*) FROM audit_jobs b
              WHERE b.listed IS NOT NULL AND b.op = 'INSERT'
                AND b.listed <> (SELECT count(*) FROM gdpr_jobs j
                                  WHERE j.request_id = b.request_id AND j.status = 'completed'
                                    AND j.service NOT LIKE '\\_%')")
        .await,
        takeovers: one("SELECT count(*) FROM (
                 SELECT status, lag(status) OVER w AS before
                   FROM audit_jobs WINDOW w AS (PARTITION BY job_id ORDER BY at)) e
              WHERE status = 'running' AND before = 'running'")
        .await,
        overlapping_claims: one("SELECT count(*) FROM (
                 SELECT status, at, lag(status) OVER w AS before,
                        lag(locked_until) OVER w AS lease_end
                   FROM audit_jobs WINDOW w AS (PARTITION BY job_id ORDER BY at)) e
              WHERE status = 'running' AND before = 'running' AND at < lease_end")
        .await,
        double_completions: one(
            "SELECT count(*) FROM (SELECT 1 FROM audit_jobs WHERE status = 'completed'
                                    GROUP BY request_id, service HAVING count(*) > 1) d",
        )
        .await,
        orphan_writes: one("SELECT count(DISTINCT d.txid) FROM audit_data d
              WHERE NOT EXISTS (SELECT 1 FROM audit_jobs j
                                 WHERE j.txid = d.txid AND j.status = 'completed')")
        .await,
        writing_transactions: one("SELECT count(DISTINCT txid) FROM audit_data").await,
        max_attempts: sqlx::query_scalar("SELECT coalesce(max(attempts), 0) FROM gdpr_jobs")
            .fetch_one(pool)
            .await
            .unwrap(),
        per_process,
    }
}

impl Audit {
    /// Every job completed exactly once, no two workers held a job at once, and every write to
    /// the data services belongs to exactly one job's completing transaction.
    pub fn assert_exactly_once(&self) {
        assert_eq!(
            self.completed_jobs, self.jobs,
            "every job completed: {self:?}"
        );
        assert_eq!(self.overlapping_claims, 0, "{self:?}");
        assert_eq!(self.double_completions, 0, "{self:?}");
        assert_eq!(self.orphan_writes, 0, "{self:?}");
        assert_eq!(self.lost_jobs, 0, "{self:?}");
    }
}

/// Row counts and a checksum of the content of every table gdprd and the demo services have.
pub async fn snapshot(pool: &PgPool) -> Vec<(String, i64, String)> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables
          WHERE table_schema IN ('public', 'demo') AND table_type = 'BASE TABLE'
            AND table_name NOT LIKE 'audit%'
          ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = Vec::new();
    for (schema, table) in tables {
        let (count, digest): (i64, Option<String>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text))
               FROM \"{schema}\".\"{table}\" t"
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        out.push((
            format!("{schema}.{table}"),
            count,
            digest.unwrap_or_default(),
        ));
    }
    out
}

/// An HTTP response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(600)
            .collect()
    }
}

/// Sends `request` as it is over a new connection and reads the answer until the server closes
/// it (the request should say `Connection: close`). The request is written while the answer is
/// read, so that a server answering before it has read everything is heard.
pub async fn raw(address: &str, request: Vec<u8>) -> RawResponse {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        for chunk in request.chunks(64 * 1024) {
            if writer.write_all(chunk).await.is_err() {
                return writer;
            }
        }
        let _ = writer.flush().await;
        writer
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 20 s");
    drop(writing.await);
    parse_response(&answer)
}

fn parse_response(bytes: &[u8]) -> RawResponse {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = bytes.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&bytes[..line_end])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let end = (start + size).min(bytes.len());
        out.extend_from_slice(&bytes[start..end]);
        bytes = &bytes[(end + 2).min(bytes.len())..];
    }
    out
}
