#!/usr/bin/env python3
"""Writes bench/profile/PROFILE.md from what bench/profile.sh recorded.

Usage: profile_report.py OUT_DIR PROFILE_MD PEOPLE PG_VERSION COMMAND

OUT_DIR holds each phase's call stacks folded by inferno (seed, search, pipeline: one line per
stack, the process's name first, kernel frames marked `_[k]`), the search statement's plans
(explain.txt) and the log of the server whose connections ran auto_explain (serve-explained.log,
JSON lines). No value searched for or erased reaches this report: the plans are generic.
"""

import collections
import datetime
import json
import os
import re
import sys

PHASES = [
    ("seed", "Seeding (`gdprd seed` into the empty database)"),
    ("search", "Search (wrk, 32 connections, `GET /api/v2/gdpr/subjects`)"),
    ("pipeline", "Request pipeline (a batch of erasures and exports at once, then erasures alone)"),
]

# Process (thread) names, as perf records them, by program.
PROGRAMS = [
    ("PostgreSQL", lambda c: c == "postgres"),
    ("gdprd", lambda c: c in ("gdprd", "tokio-rt-worker", "tokio-runtime-w")),
    ("load client", lambda c: c in ("wrk", "pipeline", "bench-pipeline")),
    ("idle", lambda c: c == "swapper"),
]

# What a PostgreSQL backend is doing: the first of these, in this order, that has a function in
# the sample's stack names it (so an expression evaluated while an index is built counts as the
# index build, and a row sent while a statement runs as talking to the client).
PG_ACTIVITIES = [
    ("building indexes and keys", ("btbuild", "index_build", "_bt_parallel_build_main", "validateForeignKeyConstraint", "RI_Initial_Check")),
    ("COPY", ("CopyFrom", "DoCopy")),
    ("autovacuum and VACUUM", ("do_autovacuum", "vacuum_rel", "heap_vacuum_rel")),
    ("checkpoints, WAL and background writers", ("CheckpointerMain", "WalWriterMain", "BackgroundWriterMain", "WalSndLoop")),
    ("flushing WAL", ("XLogFlush", "XLogWrite")),
    ("talking to the client (socket, TLS)", ("secure_read", "secure_write", "pq_getbyte", "pq_flush", "pq_recvbuf", "ReadCommand", "pq_getmessage", "socket_flush", "internal_flush")),
    ("planning (and checking cached plans)", ("pg_plan_queries", "planner", "standard_planner", "GetCachedPlan")),
    ("parsing and analysis", ("raw_parser", "parse_analyze_fixedparams", "parse_analyze_varparams", "pg_analyze_and_rewrite_fixedparams", "pg_analyze_and_rewrite_varparams")),
    ("receiving parameters", ("exec_bind_message", "OidReceiveFunctionCall", "ReceiveFunctionCall")),
    ("executing statements", ("standard_ExecutorRun", "ExecutorRun", "standard_ExecutorStart", "ExecutorStart", "standard_ExecutorFinish", "AfterTriggerEndQuery", "standard_ExecutorEnd", "PortalRun", "PortalRunMulti", "PortalRunSelect")),
    ("starting and ending transactions", ("StartTransactionCommand", "CommitTransactionCommand", "CommitTransaction", "StartTransaction", "AbortCurrentTransaction")),
    # Matching regular expressions: perf unwinds no further than PostgreSQL's regex executor, so
    # what it ran for (an index expression, a statement) is not known.
    ("matching regular expressions (the caller not unwound)", ("pg_regexec",)),
]

# Where gdprd's own time goes: by the sampled function first (allocator, copies), then by the
# first frame towards the root that belongs to a known crate.
RUST_LEAVES = [
    ("memory allocation (glibc malloc and free)", re.compile(r"^(_int_malloc|_int_free|malloc|free|cfree|__libc_malloc|__libc_free|tcache_\w+|malloc_consolidate|unlink_chunk|realloc|_int_realloc|__libc_realloc)$")),
    ("memory copies", re.compile(r"^__mem(cpy|move|set)\w*$")),
]
RUST_CRATES = [
    ("gdprd's own code", "gdprd::"),
    ("TLS to PostgreSQL (rustls)", "rustls"),
    ("sqlx (PostgreSQL protocol)", "sqlx"),
    ("serde, serde_json", "serde"),
    ("hyper (HTTP)", "hyper"),
    ("axum, tower (routing, middleware)", "axum"),
    ("axum, tower (routing, middleware)", "tower"),
    ("tracing", "tracing"),
    ("tokio (runtime, timers, I/O readiness)", "tokio"),
]


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    return os.cpu_count(), mem_kb / 1024 / 1024, cpu


def stacks(path):
    """(frames, samples) of each folded line; frames from the root (the process) to the leaf."""
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, count = line.rsplit(" ", 1)
            yield stack.split(";"), int(count)


def program(comm):
    return next((name for name, test in PROGRAMS if test(comm)), "other")


def bare(frame):
    return frame[:-4] if frame.endswith("_[k]") else frame


def pg_activity(frames):
    names = {bare(frame) for frame in frames[1:]}
    for activity, markers in PG_ACTIVITIES:
        if names.intersection(markers):
            return activity
    if frames[-1].endswith("_[k]"):
        return "other kernel work (system calls, page faults, interrupts)"
    return "other"


def rust_part(frames):
    leaf = frames[-1]
    if leaf.endswith("_[k]"):
        return "kernel (system calls, network, scheduling)"
    for part, pattern in RUST_LEAVES:
        if pattern.match(leaf):
            return part
    for frame in reversed(frames[1:]):
        for part, marker in RUST_CRATES:
            if marker in frame:
                return part
    return "other (libc, std, other crates, unresolved)"


def pct(x, total):
    return f"{100 * x / total:.1f} %" if total else "-"


def ms(ns):
    # perf's cpu-clock samples weigh their period, in nanoseconds of CPU time.
    return f"{ns / 1e6:,.0f}"


def top(counter, total, limit):
    return [(k, ms(v), pct(v, total)) for k, v in counter.most_common(limit)]


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def code(name):
    # A function's name in a table cell: backticks, no pipes.
    return "`" + name.replace("|", "/").replace("`", "'") + "`"


def phase_section(out, phase, title):
    path = os.path.join(out, f"{phase}.folded")
    if not os.path.exists(path):
        return f"## {title}\n\nNot recorded.\n"
    by_program = collections.Counter()
    pg_acts = collections.Counter()
    pg_leaves = collections.Counter()
    rust_parts = collections.Counter()
    rust_leaves = collections.Counter()
    total = 0
    for frames, n in stacks(path):
        total += n
        prog = program(frames[0])
        by_program[prog] += n
        if prog == "PostgreSQL":
            pg_acts[pg_activity(frames)] += n
            pg_leaves[bare(frames[-1])] += n
        elif prog == "gdprd":
            rust_parts[rust_part(frames)] += n
            rust_leaves[bare(frames[-1])] += n
    pg, rs = by_program["PostgreSQL"], by_program["gdprd"]
    idle = by_program.pop("idle", 0)
    busy = total - idle
    s = [
        f"## {title}\n",
        f"Flame graph: [{phase}.svg]({phase}.svg). {ms(busy)} ms of CPU time sampled on the "
        f"machine's cores, and {ms(idle)} ms idle (not in the shares below).\n",
    ]
    s.append(table(["program", "CPU ms", "share of the busy time"], top(by_program, busy, 10)) + "\n")
    s.append(f"PostgreSQL's time by what the backend was doing ({ms(pg)} ms):\n")
    s.append(table(["activity", "CPU ms", "share of PostgreSQL's"], top(pg_acts, pg, 14)) + "\n")
    s.append("PostgreSQL's most sampled functions (self time; `[postgres]`: a function the server "
             "binary names in no symbol table, most of them static):\n")
    s.append(table(["function", "CPU ms", "share of PostgreSQL's"],
                   [(code(k), v, p) for k, v, p in top(pg_leaves, pg, 12)]) + "\n")
    if rs:
        s.append(f"gdprd's time by part ({ms(rs)} ms):\n")
        s.append(table(["part", "CPU ms", "share of gdprd's"], top(rust_parts, rs, 12)) + "\n")
        s.append("gdprd's most sampled functions (self time):\n")
        s.append(table(["function", "CPU ms", "share of gdprd's"],
                       [(code(k[:110]), v, p) for k, v, p in top(rust_leaves, rs, 12)]) + "\n")
    return "\n".join(s)


def plan_start(lines):
    """Index of a plan's top node in an auto_explain message's lines (after the query text)."""
    for i, line in enumerate(lines):
        if "(actual " in line or "(never executed)" in line:
            return i
    return len(lines)


def statements(log_path, limit):
    runs = collections.defaultdict(list)  # query text, spaces collapsed -> [(ms, query, plan)]
    if not os.path.exists(log_path):
        return None
    with open(log_path) as f:
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            message = event.get("fields", {}).get("message", "")
            m = re.match(r"duration: ([0-9.]+) ms\s+plan:\n(.*)", message, re.S)
            if not m:
                continue
            lines = m.group(2).split("\n")
            start = plan_start(lines)
            query = "\n".join(lines[:start])
            query = re.sub(r"^Query Text:\s*", "", query)
            key = " ".join(query.split())
            runs[key].append((float(m.group(1)), query, "\n".join(lines[start:]).rstrip()))
    ranked = sorted(runs.items(), key=lambda kv: -sum(ms for ms, _, _ in kv[1]))
    return ranked[:limit], sum(ms for rs in runs.values() for ms, _, _ in rs), len(runs)


def main():
    out, target, people, pg_version, command = sys.argv[1:6]
    cores, mem_gib, cpu = machine()
    # When the profile was recorded: when its seed ended (the report may be written again later).
    seeded = os.path.getmtime(os.path.join(out, "seed.txt"))
    now = datetime.datetime.fromtimestamp(seeded, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    seed_line = open(os.path.join(out, "seed.txt")).read().strip().splitlines()[-1:] or ["?"]
    s = [
        "# Profile\n",
        f"Recorded {now} with `{command}` ({int(people):,} people) on {cores} cores of {cpu}, "
        f"{mem_gib:.1f} GiB, PostgreSQL {pg_version}. The script's header says what it does. "
        "Sampling call stacks slows what it samples, so what this page gives is where the time "
        "goes, as shares of the samples; how fast each phase is, BENCHMARKS.md gives "
        "(`bench/run.sh`, nothing sampled). Each phase samples the whole machine: PostgreSQL's "
        "backends, gdprd, the load client and whatever else runs.\n",
        f"Seeding, sampled: {seed_line[0]}\n",
    ]
    for phase, title in PHASES:
        s.append(phase_section(out, phase, title))

    s.append("## The search statement's plans\n")
    s.append(
        "`EXPLAIN (ANALYZE, BUFFERS)` of the statement of `src/index/store.rs` `search` (without the "
        "caller's confirmation, which is one lookup by primary key), generic plan, the database in the "
        "page cache: the name shared by the most people, then one key of each other search type. The "
        "matches are counted and paged in `subject_identifiers`' primary key alone (an index-only "
        "scan), and only the page's records are fetched.\n"
    )
    explain = open(os.path.join(out, "explain.txt")).read().strip()
    for part in re.split(r"(?m)^### ", explain):
        if not part.strip():
            continue
        heading, _, plan = part.partition("\n")
        s.append(f"### {heading}\n\n```\n{plan.rstrip()}\n```\n")

    found = statements(os.path.join(out, "serve-explained.log"), 10)
    s.append("## The pipeline's statements\n")
    if not found:
        s.append("Not recorded (auto_explain could not be loaded).\n")
    else:
        ranked, total_ms, distinct = found
        result = ""
        path = os.path.join(out, "pipeline-explained.json")
        if os.path.exists(path):
            try:
                r = json.load(open(path))
                result = (f" The batches, explained: {r.get('batch_requests', '?')} requests at once "
                          f"in {r.get('batch_s', 0):.1f} s, then {r.get('erasures_requests', '?')} "
                          f"erasures in {r.get('erasures_s', 0):.1f} s.")
            except ValueError:
                pass
        s.append(
            "The pipeline's batches again, for other people, on a server whose every connection ran "
            "auto_explain (`log_analyze`, `log_buffers`, `log_triggers`, nested statements, generic plans; every "
            "statement of the API, the worker and the services' SQL). Timing every plan node slows "
            f"the statements, so their shares matter more than their times.{result} "
            f"{distinct} distinct statements took {total_ms:,.0f} ms in all; the {len(ranked)} "
            "that took the most (a statement run by a "
            "trigger or a function also counts in the statement that ran it), each with the plan of a run "
            "of its median time:\n"
        )
        rows = []
        for i, (key, rs) in enumerate(ranked, 1):
            t = sum(d for d, _, _ in rs)
            ds = sorted(d for d, _, _ in rs)
            label = code(key[:70] + ("…" if len(key) > 70 else ""))
            rows.append((i, label, len(rs), f"{t:,.0f}", pct(t, total_ms), f"{ds[len(ds) // 2]:.3f}", f"{ds[-1]:.3f}"))
        s.append(table(["#", "statement", "runs", "total ms", "share", "median ms", "slowest ms"], rows) + "\n")
        for i, (_, rs) in enumerate(ranked, 1):
            d, query, plan = sorted(rs, key=lambda r: r[0])[len(rs) // 2]
            s.append(f"### {i}. a run of the median time, {d:.3f} ms\n\n```sql\n{query.strip()}\n```\n\n```\n{plan}\n```\n")
    with open(target, "w") as f:
        f.write("\n".join(s))


if __name__ == "__main__":
    main()
