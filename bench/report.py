"""Writes BENCHMARKS.md and bench/latency.png from the results bench/run.sh left in a folder.

Usage: report.py RESULTS_DIR PG_VERSION COMMAND
"""

import datetime
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results_dir, pg_version, command = sys.argv[1], sys.argv[2], sys.argv[3].strip()
# The server's settings that decide what its figures mean.
pg_settings = sys.argv[4] if len(sys.argv) > 4 else "not recorded"
bench_dir = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(bench_dir)
runs = sorted((json.load(open(p)) for p in glob.glob(os.path.join(results_dir, "result-*.json"))),
              key=lambda r: r["subjects"])
if not runs:
    sys.exit("no results")


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    return os.cpu_count(), mem_kb / 1024 / 1024, cpu


def f(x, digits=1):
    if x is None:
        return "–"
    if isinstance(x, float) and x != x:
        return "–"
    return f"{x:,.{digits}f}"


def i(x):
    return f"{x:,}"


def ok(cond):
    return "met" if cond else "**not met**"


ncpu, mem_gb, cpu = machine()
# The time of the run: when its last result was written.
last_written = max(os.path.getmtime(p) for p in glob.glob(os.path.join(results_dir, "result-*.json")))
now = datetime.datetime.fromtimestamp(last_written, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
cols = [r["subjects"] for r in runs]
head = "| | " + " | ".join(f"{c:,} subjects" for c in cols) + " |\n|---|" + "---:|" * len(cols) + "\n"


def row(label, fn):
    return f"| {label} | " + " | ".join(fn(r) for r in runs) + " |\n"


def seed_rate(r):
    return r["subjects"] / r["seed_s"]


def ratio(r):
    return r["api_rps"] / r["pg_tps"]


def direct(r, key):
    return r.get("direct", {}).get(key)


def written(phase):
    """Rows inserted / updated (HOT) / deleted per request, from bench/activity.rs."""
    g = lambda k: phase.get(f"batch_rows_{k}_per_request")
    if g("updated") is None:
        return "–"
    return f"{f(g('inserted'))} / {f(g('updated'))} ({f(g('hot_updated'))}) / {f(g('deleted'))}"


def wal(phase):
    b = phase.get("batch_wal_bytes_per_request")
    return "–" if b is None else f"{f(b / 1024)} KiB"


def pipeline_ratio(r, phase="batch"):
    base = direct(r, f"{phase}_per_s")
    done = r["pipeline"].get(f"{phase}_completed_per_s")
    return done / base if base and done else None


def peak_rss_mb(r):
    """The server's peak resident memory over the run, the largest subject's exports included,
    in MB (10^6 bytes, as the target)."""
    largest = [e["rss_peak_kb"] for e in r.get("largest_exports", [])]
    return max([r["rss_search_kb"], r["rss_peak_kb"], *largest]) * 1024 / 1e6


def largest(r, n, key):
    """A figure of the largest subject's `n`th export (1 or 2), or None where a run has none."""
    exports = r.get("largest_exports") or []
    return exports[n - 1][key] if len(exports) >= n else None


def mib(kb):
    return "–" if kb is None else f"{kb / 1024:,.0f} MiB"


def erasures_per_s(r):
    """Completed erasures/s of the batch of erasures alone, else of the mixed batch."""
    p = r["pipeline"]
    return p.get("erasures_completed_per_s") or p["batch_completed_per_s"]


out = []
out.append("# Benchmarks\n\n")
out.append(f"Measured {now} with `{command}`; the script's header describes what it does, and it "
           "is not part of the test command. Every figure below comes from that one run; the machine "
           "runs the load generators, gdprd and PostgreSQL at once, so ratios measured in the same "
           "run mean more than absolute figures.\n\n")
out.append("## Machine\n\n")
out.append(f"| | |\n|---|---|\n| CPU | {cpu} |\n| Cores (nproc) | {ncpu} |\n"
           f"| Memory | {mem_gb:.1f} GiB |\n| PostgreSQL | {pg_version} |\n"
           f"| PostgreSQL settings | {pg_settings} |\n"
           f"| Load | wrk, {runs[0]['connections']} connections, {runs[0]['duration_s']} s per run; "
           f"pgbench {runs[0]['connections']} clients, prepared |\n"
           f"| gdprd | release build, `gdprd serve` (API and worker in one process), rate limits "
           f"lifted, worker concurrency {runs[0]['worker_concurrency'].replace('default', 'default (4)')}, "
           f"bundles per transaction {runs[0].get('bundle_batch', 'default').replace('default', 'default (8)')} |\n\n")

out.append("## Against the targets\n\n")
out.append(head)
out.append(row("Seeding ≥ 20,000 subjects/s",
               lambda r: f"{f(seed_rate(r), 0)}/s: {ok(seed_rate(r) >= 20000)}"))
out.append(row("Search ≥ 0.5 × pgbench",
               lambda r: f"{f(ratio(r), 2)}: {ok(ratio(r) >= 0.5)}"))
out.append(row("Search p99 ≤ 10 ms",
               lambda r: f"{f(r['api_p99_ms'], 2)} ms: {ok(r['api_p99_ms'] <= 10)}"
                         + (f" (pgbench's own p99: {f(r['pg_p99_ms'], 2)} ms)" if r.get("pg_p99_ms") else "")))
out.append(row("≥ 200 completed erasures/s",
               lambda r: f"{f(erasures_per_s(r))}/s: {ok((erasures_per_s(r) or 0) >= 200)}"))
out.append(row("Peak RSS < 150 MB under load",
               lambda r: f"{f(peak_rss_mb(r), 0)} MB: {ok(peak_rss_mb(r) < 150)}"))
out.append(row("p50 submit→COMPLETED < 200 ms",
               lambda r: f"{f(r['pipeline']['single_p50_ms'], 0)} ms: "
                         f"{ok((r['pipeline']['single_p50_ms'] or 1e9) < 200)}"))
out.append("\n(Erasures/s: a batch of erasures alone, submitted at once; where a run has none, the "
           "mixed batch of erasures and exports. Both, and their baselines, the same requests' "
           "service SQL run directly, are in the pipeline rows below. Peak RSS: the highest of "
           "the search load, the pipeline and the largest subject's two exports, each in the "
           "server memory rows below.)\n\n")

out.append("## Every figure\n\n")
out.append(head)
out.append("| **Seeding** (`gdprd seed --subjects N`) | |\n")
out.append(row("wall time", lambda r: f"{f(r['seed_s'])} s"))
out.append(row("people/s", lambda r: f(seed_rate(r), 0)))
out.append(row("index records (subjects)", lambda r: i(r["index_records"])))
out.append(row("identifiers (subject_identifiers)", lambda r: i(r["identifiers"])))
out.append(row("service rows", lambda r: i(r["service_rows"])))
out.append(row("index records/s", lambda r: f(r["index_records"] / r["seed_s"], 0)))
out.append(row("service rows/s", lambda r: f(r["service_rows"] / r["seed_s"], 0)))
out.append(row("database size", lambda r: f"{r['db_bytes'] / 2**20:,.0f} MiB"))
out.append(row("floor: PostgreSQL loading the same rows, then building the indexes (one connection)",
               lambda r: f"{f(r['seed_floor_bulk_s'])} s" if r.get('seed_floor_bulk_s') else "–"))
def against_floor(key):
    """A floor's people/s and the seed's time over the floor's ("–" for runs without it)."""
    return lambda r: (f"{f(r['subjects'] / r[key], 0)}/s; {f(r['seed_s'] / r[key], 2)}"
                      if r.get(key) else "–")
out.append(row("floor people/s; seeding / floor time", against_floor('seed_floor_bulk_s')))
out.append(row("floor: the same over two connections at once (each its share of the tables)",
               lambda r: f"{f(r['seed_floor_parallel_s'])} s" if r.get('seed_floor_parallel_s') else "–"))
out.append(row("two-connection floor people/s; seeding / that floor time",
               against_floor('seed_floor_parallel_s')))
out.append(row("PostgreSQL copying the same rows into indexes kept up to date (one connection)",
               lambda r: f"{f(r['seed_floor_s'])} s" if 'seed_floor_s' in r else "–"))
out.append(row("reading the database into the page cache before each phase below (pg_prewarm), in all",
               lambda r: "–" if r.get("prewarm_s") is None else f"{f(r['prewarm_s'])} s"))
out.append("| **Search** `GET /api/v2/gdpr/subjects` | |\n")
out.append(row("distinct search keys (raw spellings)", lambda r: i(r["search_keys"])))
out.append(row("API requests/s", lambda r: f(r["api_rps"], 0)))
out.append(row("API latency p50", lambda r: f"{f(r['api_p50_ms'], 2)} ms"))
out.append(row("API latency p99", lambda r: f"{f(r['api_p99_ms'], 2)} ms"))
out.append(row("API non-200 answers", lambda r: i(r["api_non2xx"])))
out.append(row("pgbench (same statement) transactions/s", lambda r: f(r["pg_tps"], 0)))
out.append(row("pgbench average latency", lambda r: f"{f(r['pg_latency_avg_ms'], 2)} ms"))
out.append(row("pgbench latency p50 / p99 (its own per-statement log)",
               lambda r: f"{f(r.get('pg_p50_ms'), 2)} / {f(r.get('pg_p99_ms'), 2)} ms"))
out.append(row("**API / pgbench**", lambda r: f"**{f(ratio(r), 2)}**"))
out.append(row("PostgreSQL busy time per API search", lambda r: f"{f(r['api_db_ms'], 3)} ms"))
out.append(row("gdprd CPU time per API search", lambda r: f"{f(r['api_gdprd_cpu_ms'], 3)} ms"))
out.append(row("machine load average (1 min) before the search load",
               lambda r: f(r.get("loadavg_before_search"), 2)))
out.append(row("machine CPU busy during the API load", lambda r: f"{r['api_machine_busy'] * 100:.0f} %"))
out.append(row("PostgreSQL busy time per pgbench search", lambda r: f"{f(r['pg_db_ms'], 3)} ms"))
for part, title in (("search_name", "NAME searches alone"),
                    ("search_other", "every other search type")):
    out.append(f"| **Search split: {title}** (same load, same statement) | |\n")
    sp = lambda r, k, p=part: (r.get(p) or {}).get(k)
    out.append(row("search keys", lambda r: i(sp(r, "keys")) if sp(r, "keys") else "–"))
    out.append(row("bytes per API answer (headers included)",
                   lambda r: f"{sp(r, 'api_bytes_per_answer') / 1024:,.1f} KiB" if sp(r, "api_bytes_per_answer") else "–"))
    out.append(row("API requests/s; p50 / p99",
                   lambda r: f"{f(sp(r, 'api_rps'), 0)}; {f(sp(r, 'api_p50_ms'), 2)} / {f(sp(r, 'api_p99_ms'), 2)} ms"
                   + (f"; **{i(sp(r, 'api_non2xx'))} answers not 200**" if sp(r, "api_non2xx") else "")
                   if sp(r, "api_rps") else "–"))
    out.append(row("pgbench transactions/s; p50 / p99",
                   lambda r: f"{f(sp(r, 'pg_tps'), 0)}; {f(sp(r, 'pg_p50_ms'), 2)} / {f(sp(r, 'pg_p99_ms'), 2)} ms"
                   if sp(r, "pg_tps") else "–"))
    out.append(row("API / pgbench",
                   lambda r: f(sp(r, "api_rps") / sp(r, "pg_tps"), 2) if sp(r, "pg_tps") else "–"))
out.append("| **Request pipeline** | |\n")
out.append(row("batch submitted at once", lambda r: f"{r['batch']} GDPR_DELETE + {r['batch']} GDPR_EXPORT"))
out.append(row("unmeasured warm-up before it (pipeline and baseline alike)",
               lambda r: f"{r['pipeline'].get('warmup_requests', 0)} requests"))
out.append(row("accepted (202/200)", lambda r: i(r["pipeline"]["batch_accepted"])))
out.append(row("time to submit the batch", lambda r: f"{f(r['pipeline']['batch_submit_s'], 2)} s"))
out.append(row("time until all COMPLETED", lambda r: f"{f(r['pipeline']['batch_wall_s'], 1)} s"
               + (" (timed out)" if r["pipeline"]["batch_timed_out"] else "")))
out.append(row("completed (of which ERROR)", lambda r: f"{r['pipeline']['batch_done']} ({r['pipeline']['batch_errors']})"))
out.append(row("completed requests/s", lambda r: f(r["pipeline"]["batch_completed_per_s"])))
out.append(row("jobs in the batch", lambda r: i(r["pipeline"]["batch_jobs"])))
out.append(row("PostgreSQL busy time per request (batch)",
               lambda r: f"{f(r['pipeline']['batch_db_active_ms_per_request'], 1)} ms"))
out.append(row("committed transactions per request (batch)",
               lambda r: f(r["pipeline"].get("batch_commits_per_request"), 1)))
out.append(row("rows written per request: inserted / updated (of which HOT) / deleted (batch)",
               lambda r: written(r["pipeline"])))
out.append(row("WAL written per request (batch)", lambda r: wal(r["pipeline"])))
out.append(row("batch of erasures alone, submitted at once",
               lambda r: f"{r.get('erasures', 0)} GDPR_DELETE"))
out.append(row("its time until all COMPLETED",
               lambda r: f"{f(r['pipeline'].get('erasures_wall_s'), 1)} s"
               + (" (timed out)" if r["pipeline"].get("erasures_timed_out") else "")))
out.append(row("its completed (of which ERROR)",
               lambda r: f"{r['pipeline'].get('erasures_done', '–')} ({r['pipeline'].get('erasures_errors', '–')})"))
out.append(row("**completed erasures/s**", lambda r: f"**{f(r['pipeline'].get('erasures_completed_per_s'))}**"))
out.append(row("PostgreSQL busy time per erasure (batch of erasures)",
               lambda r: f"{f(r['pipeline'].get('erasures_db_active_ms_per_request'), 1)} ms"))
out.append(row("single erasure submit→COMPLETED p50 (client, 10 ms polling)",
               lambda r: f"{f(r['pipeline']['single_p50_ms'], 0)} ms"))
out.append(row("single erasure submit→COMPLETED p99",
               lambda r: f"{f(r['pipeline']['single_p99_ms'], 0)} ms"))
out.append(row("single erasure created→completed p50 (server timestamps)",
               lambda r: f"{f(r['pipeline']['single_server_p50_ms'], 0)} ms"))
out.append(row("PostgreSQL busy time per single erasure (with its polling)",
               lambda r: f"{f(r['pipeline']['single_db_active_ms_per_request'], 1)} ms"))
out.append("| **Pipeline baseline**: the same requests for the same people, in a copy of the database "
           "taken after seeding, their services' SQL run directly (`bench/direct_sql.rs`) | |\n")
out.append(row("requests/s (batch, same concurrency as the worker)",
               lambda r: f(direct(r, "batch_per_s"))))
out.append(row("**pipeline / baseline** (completed requests/s)",
               lambda r: f"**{f(pipeline_ratio(r), 2)}**"))
out.append(row("erasures/s (batch of erasures alone)", lambda r: f(direct(r, "erasures_per_s"))))
out.append(row("**pipeline / baseline** (completed erasures/s)",
               lambda r: f"**{f(pipeline_ratio(r, 'erasures'), 2)}**"))
out.append(row("PostgreSQL busy time per erasure (batch of erasures)",
               lambda r: f"{f(direct(r, 'erasures_db_active_ms_per_request'), 1)} ms"))
out.append(row("PostgreSQL busy time per request (batch)",
               lambda r: f"{f(direct(r, 'batch_db_active_ms_per_request'), 1)} ms"))
out.append(row("committed transactions per request (batch)",
               lambda r: f(direct(r, "batch_commits_per_request"), 1)))
out.append(row("rows written per request: inserted / updated (of which HOT) / deleted (batch)",
               lambda r: written(r.get("direct") or {})))
out.append(row("WAL written per request (batch)", lambda r: wal(r.get("direct") or {})))
out.append(row("rows found / erased / exported bytes (batch)",
               lambda r: f"{i(direct(r, 'batch_matched_rows') or 0)} / {i(direct(r, 'batch_erased_rows') or 0)}"
                         f" / {i(direct(r, 'batch_export_bytes') or 0)}"))
out.append(row("single erasure's SQL p50 / p99",
               lambda r: f"{f(direct(r, 'single_p50_ms'), 1)} / {f(direct(r, 'single_p99_ms'), 1)} ms"))
out.append("| **Server memory** (gdprd process) | |\n")
out.append(row("RSS after start", lambda r: f"{r['rss_idle_kb'] / 1024:,.0f} MiB"))
out.append(row("peak RSS (VmHWM) after the search load", lambda r: f"{r['rss_search_kb'] / 1024:,.0f} MiB"))
out.append(row("peak RSS (VmHWM) after the pipeline", lambda r: f"{r['rss_peak_kb'] / 1024:,.0f} MiB"))
out.append("| **The largest subject's export** (the agent in the most conversations, through the "
           "API, alone, twice in a row) | |\n")
out.append(row("rows exported / archive size",
               lambda r: "–" if largest(r, 1, "rows") is None else
                         f"{i(largest(r, 1, 'rows'))} / {f(largest(r, 1, 'archive_bytes') / 1e6, 1)} MB"))
out.append(row("submit→COMPLETED, first / second",
               lambda r: "–" if largest(r, 1, "seconds") is None else
                         f"{f(largest(r, 1, 'seconds'), 2)} / {f(largest(r, 2, 'seconds'), 2)} s"))
out.append(row("RSS before the first → peak during it → after it",
               lambda r: f"{mib(largest(r, 1, 'rss_before_kb'))} → {mib(largest(r, 1, 'rss_peak_kb'))}"
                         f" → {mib(largest(r, 1, 'rss_after_kb'))}"))
out.append(row("peak during the second → after it",
               lambda r: f"{mib(largest(r, 2, 'rss_peak_kb'))} → {mib(largest(r, 2, 'rss_after_kb'))}"))
out.append("\n")
out.append("Search keys: up to 200 random index records per search type, searched with the "
           "spellings their records hold (so phone numbers in national format, names with their "
           "accents and case); pgbench runs the statement of `src/index/store.rs` `search` with "
           "the normalized values of the same records. PostgreSQL busy time is the growth of "
           "`pg_stat_database.active_time` over the phase divided by the operations, i.e. the SQL "
           "cost of one operation as PostgreSQL sees it. The pipeline's baseline runs, for the same "
           "people in a copy of the database taken after seeding, what a worker runs for each request's services on gdprd's "
           "own tables (`catalog::execute`, one transaction per request), and nothing else: no API "
           "call, queue, job bookkeeping or finalization (index clean-up, masking, export archive). "
           "The ratio is the share of the pipeline's throughput the data services' SQL alone allows. "
           "Each measured phase of search and pipeline (the API load, pgbench, each half of the "
           "split, the batches, the largest subject's exports, the baseline) starts with every "
           "table and index of its database read into the operating system's page cache "
           "(`pg_prewarm`, mode `read`), whatever the phases before it wrote.\n\n")
out.append(f"Search keys by type (largest run): {runs[-1]['search_key_types']}.\n\n")

last = runs[-1]
out.append(f"## Search statement plan ({last['subjects']:,} subjects)\n\n```\n{last['explain'].strip()}\n```\n\n")


def tables(tsv):
    lines = [l.split("\t") for l in tsv.strip().splitlines() if l.strip()]
    s = "| table | seq scans | rows read by seq scans | index scans | rows written |\n|---|---:|---:|---:|---:|\n"
    for l in lines[:15]:
        s += f"| {l[0]} | " + " | ".join(f"{int(x):,}" for x in l[1:]) + " |\n"
    return s


out.append(f"## Table access during the search load ({last['subjects']:,} subjects)\n\n")
out.append(tables(last["tables_search"]) + "\n")
out.append(f"## Table access during the pipeline ({last['subjects']:,} subjects)\n\n")
out.append(tables(last["tables_pipeline"]) + "\n")

def exec_ms(text):
    times = [float(l.split(":")[1].split()[0]) for l in text.splitlines() if l.startswith("Execution Time")]
    return times + [None] * (2 - len(times))


out.append("## The index clean-up of an erasure\n\n")
out.append("`DELETE FROM subjects` of `src/worker/finalize.rs` for a subject given by one email "
           "address: the earlier form (an `OR` of two sub-selects) and the form "
           "`src/worker/finalize.rs` uses now, one `IN` list over a `UNION ALL` of index "
           "lookups (EXPLAIN ANALYZE on the benchmark database, rolled back):\n\n")
out.append("| | " + " | ".join(f"{c:,} subjects" for c in cols) + " |\n|---|" + "---:|" * len(cols) + "\n")
out.append(row("earlier form, OR of sub-selects (execution time)", lambda r: f"{f(exec_ms(r['index_delete'])[0], 2)} ms"))
out.append(row("as in finalize.rs, one IN list (execution time)", lambda r: f"{f(exec_ms(r['index_delete'])[1], 3)} ms"))
out.append(f"\n```\n{last['index_delete'].strip()}\n```\n\n")

# The analysis's current part: everything before its history, which stays in bench/analysis.md.
HISTORY_MARK = "<!-- The history below"
analysis = os.path.join(bench_dir, "analysis.md")
if os.path.exists(analysis):
    out.append(open(analysis).read().split(HISTORY_MARK, 1)[0].strip() + "\n\n")

out.append("## Reproducing\n\n```sh\nbench/run.sh                       # 10,000 and 100,000 subjects\n"
           "bench/run.sh 10000 100000 1000000  # and a million (about 30 minutes: seeding and its floors take 18)\n"
           "bench/seed.sh 100000 1000000       # seeding into an empty database and alongside data, against its floors\n"
           "bench/import.sh                    # gdprd index import of a million records (about 3 minutes)\n"
           "bench/export.sh [OTHER_GDPRD...]   # the largest subject's export and peak memory, beside other builds\n"
           "bench/profile.sh 1000000           # flame graphs and plans of each phase: bench/profile/PROFILE.md (about 6 minutes)\n"
           "bench/name_count.sh 1000000        # a common name's count, the identifiers as seeded and in key order (about 5 minutes)\n```\n\n"
           "It needs wrk (`apt-get install wrk`), pgbench and psql, python3, and a PostgreSQL "
           "server as `scripts/pg-env.sh` finds it, with `pg_prewarm` from its contrib to start "
           "each phase from the page cache; it recreates database `gdprd_bench` for each "
           "size and drops it at the end. The plot of latency against dataset size is "
           "[bench/latency.png](bench/latency.png).\n")
open(os.path.join(repo, "BENCHMARKS.md"), "w").write("".join(out))

fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
xs = cols
a.plot(xs, [r["api_p50_ms"] for r in runs], "o-", label="API p50")
a.plot(xs, [r["api_p99_ms"] for r in runs], "o-", label="API p99")
a.plot(xs, [r["pg_latency_avg_ms"] for r in runs], "s--", label="pgbench average (same statement)")
if all(r.get("pg_p99_ms") for r in runs):
    a.plot(xs, [r["pg_p99_ms"] for r in runs], "s--", label="pgbench p99 (same statement)")
if all(r.get("search_other") for r in runs):
    a.plot(xs, [r["search_other"]["api_p99_ms"] for r in runs], "^:", label="API p99, types other than NAME")
a.axhline(10, color="grey", lw=0.8, ls=":", label="target p99 10 ms")
a.set_title(f"Subject search, {runs[0]['connections']} concurrent connections")
b.plot(xs, [r["pipeline"]["single_p50_ms"] for r in runs], "o-", label="single erasure p50")
b.plot(xs, [r["pipeline"]["single_p99_ms"] for r in runs], "o-", label="single erasure p99")
b.axhline(200, color="grey", lw=0.8, ls=":", label="target p50 200 ms")
b.set_title("Erasure, submit → COMPLETED")
for ax in (a, b):
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:,}" for x in xs])
    ax.set_xlabel("subjects seeded")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(bench_dir, "latency.png"), dpi=110)
