//! Deterministic synthetic demo data: people spread across every demo service (directory,
//! external contacts with merge sets, dialer lists, conversations with transcripts and
//! attachments, web journeys, consent records), each written to its service tables and to the
//! subject index from the same values.
//!
//! Every person draws from their own generator, keyed by the seed, the organization and their
//! number, so the same seed gives the same people however the work is split. Chunks of people
//! are generated on blocking threads and sent with COPY. Into an empty database, every chunk goes
//! into one transaction that builds the indexes and checks the keys after the rows ([`bulk`]);
//! alongside existing data, chunks are sent over several connections at once, and each commits
//! its service rows and its index records in one transaction.

mod batch;
mod bulk;
mod locales;
mod people;
mod services;
pub mod story;

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use uuid::Uuid;

use self::batch::Batch;
use self::people::Person;
use self::services::{Agent, DirectoryUser, Gen};
use crate::config::SeedArgs;
use crate::index::Normalizer;
use crate::org;

/// People per chunk: large enough for COPY to stream efficiently, small enough that the chunks
/// in flight stay small in memory (some seventeen megabytes of COPY data each) and that the last
/// ones do not leave the connections idle.
const CHUNK: u64 = 5_000;

/// Bytes of COPY data per table gathered before they are sent, when seeding an empty database.
const STATEMENT: usize = 16 << 20;

/// Share of generated people who are employees.
const EMPLOYEES: f64 = 0.05;

pub async fn run(pool: &PgPool, n: &Normalizer, args: &SeedArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    let org_id = org::get_or_create(&mut conn, &args.org).await?;
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM subjects WHERE org_id = $1")
        .bind(org_id)
        .fetch_one(&mut *conn)
        .await?;
    if existing > 0 && !args.force {
        println!(
            "organization {} already holds {existing} index records; skipping (use --force to add more)",
            args.org
        );
        return Ok(());
    }
    let existing = u64::try_from(existing)?;
    let lists = contact_lists(&mut conn, org_id, args, existing).await?;
    drop(conn);
    let plan = Arc::new(Plan::new(args, existing, org_id, lists, n.clone()));
    tracing::info!(people = args.subjects, "seeding");

    let progress = progress_bar(args.subjects, !args.quiet);
    // A connection of its own: its COPY statements and index builds take seconds by design, so it
    // reports slow statements only at debug level.
    let mut conn = pool
        .connect_options()
        .as_ref()
        .clone()
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1))
        .connect()
        .await?;
    let mut tx = conn.begin().await?;
    let totals = match bulk::set_aside(&mut tx).await? {
        Some(set_aside) => {
            tracing::info!(
                indexes_and_keys = set_aside.len(),
                "the database is empty: loading the rows first, then building indexes and keys"
            );
            let totals = load(&mut tx, &plan, &progress).await?;
            progress.finish_and_clear();
            let building = Instant::now();
            set_aside
                .restore(&mut tx)
                .await
                .context("cannot build the indexes and keys of the seeded tables")?;
            tx.commit().await?;
            tracing::info!(
                seconds = building.elapsed().as_secs_f64(),
                "indexes and keys built"
            );
            totals
        }
        None => {
            tx.rollback().await?;
            let mut chunks = futures::stream::iter(plan.chunks())
                .map(|people| write_chunk(pool, Arc::clone(&plan), people))
                .buffer_unordered(writers(pool));
            let mut totals = Totals::default();
            while let Some(chunk) = chunks.try_next().await? {
                progress.inc(chunk.people);
                totals.add(&chunk);
            }
            progress.finish_and_clear();
            totals
        }
    };

    let seconds = started.elapsed().as_secs_f64();
    let rate = totals.people as f64 / seconds.max(1e-9);
    tracing::info!(
        people = totals.people,
        index_records = totals.index_records,
        service_rows = totals.service_rows,
        seconds,
        "seed finished"
    );
    println!(
        "seeded {} people into organization {}: {} index records, {} service rows in {seconds:.1} s ({rate:.0} people/s)",
        totals.people, args.org, totals.index_records, totals.service_rows
    );
    Ok(())
}

/// Generates one chunk of people on a blocking thread.
async fn generate(plan: Arc<Plan>, people: Range<u64>) -> anyhow::Result<Batch> {
    tokio::task::spawn_blocking(move || plan.generate(people)).await?
}

/// Writes every chunk into the emptied tables of `tx` (see [`bulk`]) while the next chunks are
/// generated on the other cores. Chunks are gathered into statements of at least [`STATEMENT`]
/// bytes per table.
async fn load(
    tx: &mut PgConnection,
    plan: &Arc<Plan>,
    progress: &ProgressBar,
) -> anyhow::Result<Totals> {
    let mut batches = futures::stream::iter(plan.chunks())
        .map(|people| generate(Arc::clone(plan), people))
        .buffer_unordered(cores() + 1);
    let mut totals = Totals::default();
    let mut pending = Batch::new(plan.org_id);
    while let Some(batch) = batches.try_next().await? {
        let chunk = Totals::of(&batch);
        pending.absorb(batch);
        pending
            .flush_frozen(&mut *tx, STATEMENT)
            .await
            .context("cannot write the seed data")?;
        progress.inc(chunk.people);
        totals.add(&chunk);
    }
    pending
        .flush_frozen(&mut *tx, 0)
        .await
        .context("cannot write the seed data")?;
    Ok(totals)
}

/// Generates one chunk of people and writes it in its own transaction: its service rows and its
/// index records become visible together.
async fn write_chunk(pool: &PgPool, plan: Arc<Plan>, people: Range<u64>) -> anyhow::Result<Totals> {
    let batch = generate(plan, people).await?;
    let totals = Totals::of(&batch);
    let mut tx = pool.begin().await?;
    batch
        .write(&mut tx)
        .await
        .context("cannot write the seed data")?;
    tx.commit().await?;
    Ok(totals)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

/// How many chunks are generated and written at once. PostgreSQL checks each row's foreign keys
/// and maintains its indexes on one core per connection, so parallel connections are what makes
/// seeding fast; one more chunk than there are cores keeps them busy while chunks are generated.
fn writers(pool: &PgPool) -> usize {
    let connections = pool.options().get_max_connections().max(1) as usize;
    (cores() + 1).clamp(2, 9).min(connections)
}

#[derive(Default)]
struct Totals {
    people: u64,
    index_records: u64,
    service_rows: u64,
}

impl Totals {
    fn of(batch: &Batch) -> Totals {
        Totals {
            people: batch.people,
            index_records: batch.index_records(),
            service_rows: batch.service_rows(),
        }
    }

    fn add(&mut self, chunk: &Totals) {
        self.people += chunk.people;
        self.index_records += chunk.index_records;
        self.service_rows += chunk.service_rows;
    }
}

/// The organization's dialer contact lists; 20 of them are created when it has none.
async fn contact_lists(
    conn: &mut PgConnection,
    org_id: Uuid,
    args: &SeedArgs,
    salt: u64,
) -> anyhow::Result<Vec<Uuid>> {
    let lists: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM demo.contact_lists WHERE org_id = $1 ORDER BY id")
            .bind(org_id)
            .fetch_all(&mut *conn)
            .await?;
    if !lists.is_empty() {
        return Ok(lists);
    }
    let mut rng = generator(run_key(args.seed, &args.org, salt, Stream::ContactLists), 0);
    let mut ids = Vec::new();
    let mut names = Vec::new();
    let mut created: Vec<DateTime<Utc>> = Vec::new();
    for campaign in [
        "Renewals",
        "Win-back",
        "Appointment reminders",
        "Survey follow-up",
        "Collections",
    ] {
        for region in ["East", "West", "North", "South"] {
            ids.push(services::uuid(&mut rng));
            names.push(format!("{campaign} {region}"));
            created.push(services::past(&mut rng));
        }
    }
    sqlx::query(
        "INSERT INTO demo.contact_lists (id, org_id, name, created_at)
         SELECT id, $1, name, created_at
           FROM UNNEST($2::uuid[], $3::text[], $4::timestamptz[]) AS l (id, name, created_at)",
    )
    .bind(org_id)
    .bind(&ids)
    .bind(&names)
    .bind(&created)
    .execute(&mut *conn)
    .await?;
    Ok(ids)
}

/// What a generator is for: the streams of one run never overlap.
#[derive(Clone, Copy)]
enum Stream {
    People,
    ContactLists,
}

/// The key of a run's generators: the seed, the organization's name (so that several
/// organizations of one database get different ids) and the salt of a `--force` run. Each
/// person then draws from their own ChaCha stream, numbered by their number: portable, and
/// independent of every other person.
fn run_key(seed: u64, org: &str, salt: u64, stream: Stream) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"gdprd seed\0")
        .chain_update((org.len() as u64).to_le_bytes())
        .chain_update(org.as_bytes())
        .chain_update(seed.to_le_bytes())
        .chain_update(salt.to_le_bytes())
        .chain_update([stream as u8])
        .finalize()
        .into()
}

fn generator(key: [u8; 32], stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(stream);
    rng
}

/// Everything a person's generation depends on besides their number.
struct Plan {
    key: [u8; 32],
    /// The organization's index size before this run. A run with `--force` numbers its people
    /// from here (every earlier person had a smaller number, as each has an index record) and
    /// mixes it into the key, so its ids, email addresses and phone numbers differ from those of
    /// earlier runs.
    salt: u64,
    count: u64,
    story: bool,
    /// The numbers of the employees who answer conversations.
    staff: Range<u64>,
    org_id: Uuid,
    lists: Vec<Uuid>,
    agents: Vec<Agent>,
    normalizer: Normalizer,
}

impl Plan {
    fn new(
        args: &SeedArgs,
        existing: u64,
        org_id: Uuid,
        lists: Vec<Uuid>,
        normalizer: Normalizer,
    ) -> Plan {
        let count = args.subjects;
        let story = existing == 0 && count >= story::PEOPLE;
        // Jonas (story person 2) is the first agent; the staff grows with the population.
        let staff_start = existing + if story { 2 } else { 0 };
        let staff_end = (staff_start + (count / 1000).clamp(5, 100)).min(existing + count);
        let mut plan = Plan {
            key: run_key(args.seed, &args.org, existing, Stream::People),
            salt: existing,
            count,
            story,
            staff: staff_start..staff_end.max(staff_start),
            org_id,
            lists,
            agents: Vec::new(),
            normalizer,
        };
        plan.agents = plan
            .staff
            .clone()
            .map(|number| Agent::from(&plan.staff_member(&mut plan.rng(number), number)))
            .collect();
        plan
    }

    /// The numbers of the people of this run, chunk by chunk.
    fn chunks(&self) -> Vec<Range<u64>> {
        let end = self.salt + self.count;
        (self.salt..end)
            .step_by(CHUNK as usize)
            .map(|start| start..(start + CHUNK).min(end))
            .collect()
    }

    fn rng(&self, number: u64) -> ChaCha8Rng {
        generator(self.key, number)
    }

    /// A staff member's directory record: the first thing their generator draws, so the agent
    /// list and their own rows agree.
    fn staff_member(&self, rng: &mut ChaCha8Rng, number: u64) -> DirectoryUser {
        if self.story && number == self.salt + 2 {
            story::jonas(rng)
        } else {
            Person::draw(rng, number).employee(rng, true)
        }
    }

    /// The rows of people `numbers`.
    fn generate(&self, numbers: Range<u64>) -> anyhow::Result<Batch> {
        let mut batch = Batch::new(self.org_id);
        for number in numbers {
            self.person(&mut batch, number)?;
            batch.people += 1;
        }
        Ok(batch)
    }

    fn person(&self, batch: &mut Batch, number: u64) -> anyhow::Result<()> {
        let mut g = Gen::new(self, self.rng(number), batch);
        let position = number - self.salt;
        if self.story && position < story::PEOPLE {
            return story::emit(&mut g, position);
        }
        if self.staff.contains(&number) {
            let user = self.staff_member(&mut g.rng, number);
            return g.directory_user(&user);
        }
        let person = Person::draw(&mut g.rng, number);
        if g.rng.random_bool(EMPLOYEES) {
            let user = person.employee(&mut g.rng, false);
            return g.directory_user(&user);
        }
        people::customer(&mut g, &person)
    }
}

fn progress_bar(people: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(people);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} people, {per_sec}, ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::SearchType;

    fn args(seed: u64, subjects: u64) -> SeedArgs {
        SeedArgs {
            subjects,
            seed,
            org: "demo".into(),
            force: false,
            quiet: true,
        }
    }

    fn plan(args: &SeedArgs, existing: u64) -> Plan {
        let lists = (0..20u128).map(Uuid::from_u128).collect();
        let normalizer = Normalizer::new("US").unwrap();
        Plan::new(args, existing, Uuid::from_u128(7), lists, normalizer)
    }

    fn rows(plan: &Plan, numbers: Range<u64>) -> Vec<Vec<u8>> {
        plan.generate(numbers).unwrap().tables()
    }

    #[test]
    fn the_same_seed_gives_the_same_rows_however_the_people_are_chunked() {
        let args = args(42, 3_000);
        let whole = rows(&plan(&args, 0), 0..3_000);
        let again = plan(&args, 0);
        let mut chunked = rows(&again, 0..1_234);
        for (table, more) in chunked.iter_mut().zip(rows(&again, 1_234..3_000)) {
            table.extend_from_slice(&more);
        }
        assert_eq!(whole, chunked);
    }

    #[test]
    fn another_seed_organization_or_run_gives_other_people() {
        let base = rows(&plan(&args(1, 50), 0), 10..50);
        assert_ne!(base, rows(&plan(&args(2, 50), 0), 10..50));
        let elsewhere = SeedArgs {
            org: "elsewhere".into(),
            ..args(1, 50)
        };
        assert_ne!(base, rows(&plan(&elsewhere, 0), 10..50));
        assert_ne!(base, rows(&plan(&args(1, 50), 1), 10..50));
    }

    #[test]
    fn every_phone_number_slot_of_every_country_normalizes() {
        let n = Normalizer::new("US").unwrap();
        let slots = [0, 1, 9_999, 10_000, 7_889_999, 9_999_999, 123_456_789];
        for slot in slots {
            let (area, line) = locales::us_number(slot);
            for us in [
                format!("({area}) 555-{line:04}"),
                format!("{area}-555-{line:04}"),
                format!("+1 {area} 555 {line:04}"),
            ] {
                let e164 = n.normalize(SearchType::Phone, &us).unwrap();
                assert_eq!(e164.as_str(), format!("+1{area}555{line:04}"));
            }
            for locale in locales::LOCALES {
                if let Some(abroad) = locale.phone {
                    let number = abroad(slot);
                    assert!(
                        n.normalize(SearchType::Phone, &number).is_ok(),
                        "{number} does not normalize"
                    );
                }
            }
        }
    }

    #[test]
    fn the_story_people_come_first_and_only_into_an_empty_organization() {
        let first = plan(&args(1, 10), 0);
        assert!(first.story);
        assert_eq!(first.agents[0].name, story::JONAS_NAME);
        let more = plan(&args(1, 10), 10);
        assert!(!more.story);
        assert_eq!(more.chunks(), vec![10..20]);
        assert!(more.agents.iter().all(|a| a.name != story::JONAS_NAME));
        assert!(!plan(&args(1, 2), 0).story);
    }

    #[test]
    fn the_staff_answers_conversations_even_when_few_people_are_seeded() {
        let tiny = plan(&args(1, 3), 0);
        assert_eq!(tiny.agents.len(), 1);
        let small = plan(&args(1, 40), 0);
        assert_eq!(small.agents.len(), 5);
        let large = plan(&args(1, 1_000_000), 0);
        assert_eq!(large.agents.len(), 100);
    }
}
