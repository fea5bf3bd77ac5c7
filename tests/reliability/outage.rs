//! A database outage, on a throwaway PostgreSQL cluster of the test's own (the shared server is
//! never touched): `gdprd serve` under load while its database stops (a fast shutdown, then a
//! crash) and comes back.
//! While it is gone every API call is answered 503 `service.unavailable` within the connection
//! acquire timeout (no hang, no 500, no crash); once it is back gdprd recovers by itself, and
//! every request it accepted (202) completes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::crash::env_number;
use crate::helpers::ALL_PERMISSIONS;
use crate::support::{Gdprd, eventually, free_port, token_at};

/// GDPRD_DB_ACQUIRE_TIMEOUT_SECS of the server under test.
const ACQUIRE_TIMEOUT_SECS: u64 = 2;

#[tokio::test]
async fn a_database_outage_is_answered_503_and_gdprd_recovers_without_losing_a_request() {
    let Some(cluster) = Cluster::create() else {
        return;
    };
    outages(&cluster, 2, Duration::from_secs(3)).await;
}

/// `scripts/reliability.sh`: GDPRD_RELIABILITY_OUTAGES outages of GDPRD_RELIABILITY_OUTAGE_SECS.
#[tokio::test]
#[ignore = "heavy; scripts/reliability.sh runs it"]
async fn repeated_longer_outages_lose_nothing() {
    let Some(cluster) = Cluster::create() else {
        return;
    };
    let count = env_number("GDPRD_RELIABILITY_OUTAGES", 3);
    let seconds = env_number("GDPRD_RELIABILITY_OUTAGE_SECS", 15) as u64;
    outages(&cluster, count, Duration::from_secs(seconds)).await;
}

const UP: u8 = 0;
const DOWN: u8 = 1;
const RECOVERING: u8 = 2;

#[derive(Debug, Clone)]
struct Sample {
    /// The database's state over the whole call (`RECOVERING` when it changed meanwhile).
    phase: u8,
    /// `None` when the call got no answer at all (a hang or a dropped connection).
    status: Option<u16>,
    code: Option<String>,
    elapsed: Duration,
}

async fn outages(cluster: &Cluster, count: usize, length: Duration) {
    cluster.start();
    let url = cluster.url();
    let acquire = ACQUIRE_TIMEOUT_SECS.to_string();
    let mut server = Gdprd::serve(
        &url,
        true,
        &[
            ("GDPRD_DB_ACQUIRE_TIMEOUT_SECS", &acquire),
            ("GDPRD_DB_MAX_CONNECTIONS", "8"),
            ("GDPRD_JOB_LEASE_SECS", "3"),
            ("GDPRD_RATE_CREATE_PER_MIN", "1000000"),
            ("GDPRD_RATE_READ_PER_MIN", "1000000"),
        ],
    )
    .await;
    let pool = PgPool::connect(&url).await.unwrap();
    let token = token_at(&pool, &server.base, "demo", ALL_PERMISSIONS).await;
    pool.close().await;

    let phase = Arc::new(AtomicU8::new(UP));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let load: Vec<_> = (0..4)
        .map(|client| {
            tokio::spawn(load(
                client,
                server.base.clone(),
                token.clone(),
                phase.clone(),
                samples.clone(),
                accepted.clone(),
            ))
        })
        .collect();

    gdprd::outbound::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut recoveries = Vec::new();
    for outage in 0..count {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // In turn: a fast shutdown (sessions are told, with an error, that they end) and a
        // crash (connections just drop).
        cluster.stop(if outage % 2 == 0 { "fast" } else { "immediate" });
        phase.store(DOWN, Ordering::SeqCst);
        let health = http.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status().as_u16(), 200, "the process stays up");
        let ready = http.get(server.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status().as_u16(), 503, "not ready without a database");
        tokio::time::sleep(length).await;
        phase.store(RECOVERING, Ordering::SeqCst);
        cluster.start();
        let back = Instant::now();
        let base = server.base.as_str();
        let client = &http;
        eventually(
            Duration::from_secs(30),
            "gdprd answers again",
            move || async move {
                let ready = client.get(format!("{base}/readyz")).send().await;
                ready.is_ok_and(|r| r.status().as_u16() == 200)
            },
        )
        .await;
        recoveries.push(back.elapsed());
        phase.store(UP, Ordering::SeqCst);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    phase.store(u8::MAX, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    assert!(server.is_running(), "gdprd died:\n{}", server.logs());

    let samples = samples.lock().await.clone();
    let during: Vec<&Sample> = samples.iter().filter(|s| s.phase == DOWN).collect();
    let bound = Duration::from_secs(ACQUIRE_TIMEOUT_SECS) + Duration::from_millis(1500);
    assert!(!during.is_empty(), "calls were made during the outage");
    for sample in &samples {
        assert!(sample.status.is_some(), "a call got no answer: {sample:?}");
        assert_ne!(sample.status, Some(500), "{sample:?}");
    }
    for sample in &during {
        assert_eq!(sample.status, Some(503), "{sample:?}");
        assert_eq!(
            sample.code.as_deref(),
            Some("service.unavailable"),
            "{sample:?}"
        );
        assert!(
            sample.elapsed <= bound,
            "answered after {:?}",
            sample.elapsed
        );
    }
    let slowest = during.iter().map(|s| s.elapsed).max().unwrap_or_default();

    // Every accepted request is there and completes.
    let accepted = accepted.lock().await.clone();
    let pool = PgPool::connect(&url).await.unwrap();
    // Every accepted request completes; when one does not (or ends in ERROR), the failure says
    // where each such request and its jobs stand, with the server's log.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT id::text, status, error::text FROM gdpr_requests
              WHERE id::text = ANY($1) AND status <> 'COMPLETED' ORDER BY id",
        )
        .bind(&accepted)
        .fetch_all(&pool)
        .await
        .unwrap();
        if open.is_empty() {
            break;
        }
        if Instant::now() > deadline || open.iter().any(|(_, status, _)| status == "ERROR") {
            let open_ids: Vec<&String> = open.iter().map(|(id, _, _)| id).collect();
            let jobs: Vec<(String, String, String, i32, Option<String>)> = sqlx::query_as(
                "SELECT request_id::text, service, status, attempts, last_error FROM gdpr_jobs
                  WHERE request_id::text = ANY($1) ORDER BY request_id, service",
            )
            .bind(&open_ids)
            .fetch_all(&pool)
            .await
            .unwrap();
            panic!(
                "every accepted request completes: {} of {} did not within 60 s: {open:?}\n\
                 their jobs (request, service, status, attempts, last error): {jobs:#?}\n\
                 server log:\n{}",
                open.len(),
                accepted.len(),
                server.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = server.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    pool.close().await;
    println!(
        "figures: {count} outage(s) of {} s (fast shutdowns and crashes in turn); {} calls, {} during outages, all 503 within {} ms \
         (bound {} ms); recovered {:?} after restart; {} requests accepted, 0 lost",
        length.as_secs(),
        samples.len(),
        during.len(),
        slowest.as_millis(),
        bound.as_millis(),
        recoveries,
        accepted.len()
    );
}

/// One client: submits requests and reads them back in a loop, recording every answer.
async fn load(
    client: usize,
    base: String,
    token: String,
    phase: Arc<AtomicU8>,
    samples: Arc<Mutex<Vec<Sample>>>,
    accepted: Arc<Mutex<Vec<String>>>,
) {
    gdprd::outbound::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(ACQUIRE_TIMEOUT_SECS * 3 + 5))
        .build()
        .unwrap();
    let mut last: Option<String> = None;
    for n in 0.. {
        let before = phase.load(Ordering::SeqCst);
        if before == u8::MAX {
            return;
        }
        let started = Instant::now();
        let request = match (n % 3, &last) {
            (1, _) => http
                .get(format!("{base}/api/v2/gdpr/requests"))
                .query(&[("pageSize", "5")]),
            (2, Some(id)) => http.get(format!("{base}/api/v2/gdpr/requests/{id}")),
            _ => http
                .post(format!("{base}/api/v2/gdpr/requests"))
                .json(&json!({
                    "requestType": "GDPR_GET",
                    "subject": {"emailAddresses": [format!("load-{client}-{n}@example.com")]},
                })),
        };
        let answer = request.bearer_auth(&token).send().await;
        let elapsed = started.elapsed();
        let after = phase.load(Ordering::SeqCst);
        let (status, body) = match answer {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                (Some(status), body)
            }
            Err(_) => (None, Value::Null),
        };
        if status == Some(202) {
            let id = body["id"].as_str().unwrap().to_owned();
            accepted.lock().await.push(id.clone());
            last = Some(id);
        }
        samples.lock().await.push(Sample {
            phase: if before == after { before } else { RECOVERING },
            status,
            code: body["code"].as_str().map(str::to_owned),
            elapsed,
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A PostgreSQL cluster in a temporary directory, listening on a free loopback port. As root it
/// runs as the `postgres` OS user (initdb refuses root). Stopped and deleted when dropped.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as_postgres: bool,
}

impl Cluster {
    /// A new cluster, or `None` (and why, printed) when this machine cannot make one.
    fn create() -> Option<Cluster> {
        let Some(bin) = server_binaries() else {
            println!("skipped: no PostgreSQL server binaries (initdb, pg_ctl) on this machine");
            return None;
        };
        let root = is_root();
        if root
            && !Command::new("id")
                .arg("postgres")
                .output()
                .is_ok_and(|o| o.status.success())
        {
            println!("skipped: running as root and there is no postgres OS user to run initdb");
            return None;
        }
        // The cluster's owner must be able to reach its directory: the temporary directory may
        // be private to this user (below /root, say), /var/tmp and /tmp are not.
        let bases = [std::env::temp_dir(), "/var/tmp".into(), "/tmp".into()];
        let cluster = bases.iter().find_map(|base| {
            let dir = base.join(format!("gdprd-outage-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir(&dir).ok()?;
            let cluster = Cluster {
                dir,
                bin: bin.clone(),
                port: free_port(),
                run_as_postgres: root,
            };
            let usable = !root
                || Command::new("chown")
                    .arg("postgres:")
                    .arg(&cluster.dir)
                    .status()
                    .is_ok_and(|s| s.success())
                    && cluster
                        .as_owner("test", &["-w".as_ref(), cluster.dir.as_os_str()])
                        .success();
            usable.then_some(cluster)
        });
        let Some(cluster) = cluster else {
            println!("skipped: no temporary directory the postgres OS user can write to");
            return None;
        };
        let data = cluster.data();
        let data = data.to_str().unwrap();
        let made = ["C.UTF-8", "C"].iter().any(|locale| {
            cluster
                .pg(
                    "initdb",
                    &[
                        "-D",
                        data,
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "--encoding=UTF8",
                    ],
                    &[&format!("--locale={locale}"), "--no-sync"],
                )
                .success()
        });
        assert!(made, "initdb failed");
        // Throwaway data: no crash safety needed.
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(cluster.data().join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut conf,
            b"\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
        )
        .unwrap();
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let data = self.data();
        let log = self.dir.join("log");
        // TCP only: a Unix socket path in a long temporary directory could be too long.
        let options = format!("-h 127.0.0.1 -p {} -k ''", self.port);
        let started = self.pg(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap()],
            &["-w", "-t", "60", "-o", &options, "start"],
        );
        assert!(
            started.success(),
            "pg_ctl start failed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server: `fast` ends every session with an error first, `immediate` is a crash.
    fn stop(&self, mode: &str) {
        let data = self.data();
        self.pg(
            "pg_ctl",
            &["-D", data.to_str().unwrap()],
            &["-m", mode, "-w", "stop"],
        );
    }

    /// Runs a PostgreSQL program of this cluster (as its owner) and returns how it ended.
    fn pg(&self, program: &str, args: &[&str], more: &[&str]) -> std::process::ExitStatus {
        let path = self.bin.join(program);
        let args: Vec<&std::ffi::OsStr> = args.iter().chain(more).map(|a| a.as_ref()).collect();
        self.as_owner(path.as_os_str(), &args)
    }

    /// Runs `program` as the cluster's owner, from `/`, quietly.
    fn as_owner(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&std::ffi::OsStr],
    ) -> std::process::ExitStatus {
        let mut command = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command
            .args(args)
            .current_dir("/")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            self.stop("immediate");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The newest `/usr/lib/postgresql/N/bin` (Debian's layout), or the directory of an `initdb` on
/// PATH.
fn server_binaries() -> Option<PathBuf> {
    let has = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has(&bin).then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin);
    debian.or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).find(|dir| has(dir))
    })
}
