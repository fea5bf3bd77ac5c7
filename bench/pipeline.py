"""Request pipeline load: a batch of GDPR_DELETE and GDPR_EXPORT requests submitted at once,
then sequential single erasures timed from submit to COMPLETED.

Usage: pipeline.py BASE_URL TOKEN EMAILS_FILE BATCH SINGLES TIMEOUT_SECS [WARMUP]
EMAILS_FILE holds one email address per line, each of a distinct person. With WARMUP, the first
WARMUP go to erasures and the next WARMUP to exports of an unmeasured warm-up batch (a server
just started has yet to prepare the statements of the pipeline on its connections, as the
search load's warm-up does for searches). Then the next BATCH go to erasures, the next BATCH to
exports, the next SINGLES to the sequential erasures. Completion of a batch is read from the
database (psql, DATABASE_URL) so that polling does not load the API. Prints one JSON object.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

base, token, emails_file = sys.argv[1], sys.argv[2], sys.argv[3]
batch, singles, timeout = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
warmup = int(sys.argv[7]) if len(sys.argv) > 7 else 0
emails = [line.strip() for line in open(emails_file) if line.strip()]
warm, emails = emails[:2 * warmup], emails[2 * warmup:]
HEADERS = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers=HEADERS)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


def submit(kind, email):
    path = "/api/v2/gdpr/requests" + ("?deleteConfirmed=true" if kind == "GDPR_DELETE" else "")
    try:
        status, body = call("POST", path, {"requestType": kind, "subject": {"emailAddresses": [email]}})
        return status, body.get("id")
    except urllib.error.HTTPError as e:
        return e.code, None


def psql(sql):
    out = subprocess.run(["psql", "-XAtq", "-F", "|", "-d", os.environ["DATABASE_URL"], "-c", sql],
                         check=True, capture_output=True, text=True).stdout.strip()
    return out


def active_ms():
    """PostgreSQL's busy time in this database (ms) and its committed transactions."""
    t, c = psql("SELECT active_time, xact_commit FROM pg_stat_database "
                "WHERE datname = current_database()").split("|")
    return float(t), int(c)


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


# A connection that goes idle within a second of its last statistics flush flushes again only
# after 10 seconds of idleness: PostgreSQL's figures are read once every connection's are in.
STATS_FLUSH_S = 11


def run_batch(work):
    """Submits `work` at once; returns the ids accepted and the other statuses."""
    with ThreadPoolExecutor(max_workers=32) as pool:
        submitted = list(pool.map(lambda w: submit(*w), work))
    return [i for (s, i) in submitted if s in (200, 202) and i], submitted


def finished(ids):
    """How many of `ids` are COMPLETED or ERROR, and how many ERROR."""
    row = psql("SELECT count(*) FILTER (WHERE status IN ('COMPLETED', 'ERROR')), "
               "count(*) FILTER (WHERE status = 'ERROR') FROM gdpr_requests WHERE id IN (%s)"
               % ",".join("'%s'" % i for i in ids))
    return tuple(int(x) for x in row.split("|"))


result = {"warmup_requests": len(warm)}
if warm:
    warm_ids, _ = run_batch([("GDPR_DELETE", e) for e in warm[:warmup]]
                            + [("GDPR_EXPORT", e) for e in warm[warmup:]])
    t0 = time.perf_counter()
    while warm_ids and finished(warm_ids)[0] < len(warm_ids) and time.perf_counter() - t0 < timeout:
        time.sleep(0.05)
    time.sleep(STATS_FLUSH_S)

work = [("GDPR_DELETE", e) for e in emails[:batch]] + [("GDPR_EXPORT", e) for e in emails[batch:2 * batch]]
db_before = active_ms()
start = time.perf_counter()
ids, submitted = run_batch(work)
submit_s = time.perf_counter() - start
result["batch_requests"] = len(work)
result["batch_accepted"] = len(ids)
result["batch_rejected_statuses"] = sorted({s for (s, i) in submitted if s not in (200, 202)})
result["batch_submit_s"] = submit_s
idlist = ",".join("'%s'" % i for i in ids)
done = 0
while True:
    done, errors = finished(ids)
    elapsed = time.perf_counter() - start
    if done >= len(ids) or elapsed > timeout:
        break
    time.sleep(0.05)
time.sleep(STATS_FLUSH_S)
db_after = active_ms()
result["batch_wall_s"] = elapsed
result["batch_done"] = done
result["batch_errors"] = errors
result["batch_timed_out"] = done < len(ids)
span = psql("SELECT extract(epoch FROM max(completed_at) - min(created_at)) FROM gdpr_requests "
            "WHERE id IN (%s)" % idlist)
result["batch_db_span_s"] = float(span) if span else None
result["batch_completed_per_s"] = done / elapsed if elapsed > 0 else None
result["batch_db_active_ms_per_request"] = (db_after[0] - db_before[0]) / max(done, 1)
result["batch_commits_per_request"] = (db_after[1] - db_before[1]) / max(done, 1)
jobs = psql("SELECT count(*), extract(epoch FROM avg(completed_at - created_at)) FROM gdpr_jobs "
            "WHERE request_id IN (%s)" % idlist).split("|")
result["batch_jobs"] = int(jobs[0])

latencies = []
server_ms = []
db_before = active_ms()
for email in emails[2 * batch:2 * batch + singles]:
    t0 = time.perf_counter()
    status, rid = submit("GDPR_DELETE", email)
    if not rid:
        continue
    while True:
        _, body = call("GET", "/api/v2/gdpr/requests/" + rid)
        if body.get("status") in ("COMPLETED", "ERROR"):
            break
        if time.perf_counter() - t0 > 30:
            break
        time.sleep(0.01)
    latencies.append((time.perf_counter() - t0) * 1000)
    server_ms.append(float(psql("SELECT extract(epoch FROM completed_at - created_at) * 1000 "
                                "FROM gdpr_requests WHERE id = '%s'" % rid) or "nan"))
time.sleep(STATS_FLUSH_S)
db_after = active_ms()
result["single_n"] = len(latencies)
result["single_p50_ms"] = percentile(latencies, 50)
result["single_p99_ms"] = percentile(latencies, 99)
result["single_server_p50_ms"] = percentile(server_ms, 50)
result["single_db_active_ms_per_request"] = (db_after[0] - db_before[0]) / max(len(latencies), 1)
print(json.dumps(result))
