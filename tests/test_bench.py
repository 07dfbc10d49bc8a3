"""The benchmark's load generator (build/bench/loadgen, what `make bench`
runs for S1-S3) against a real chatd, Redis and PostgreSQL: it must set up,
send, and count what it receives correctly, or the benchmark's figures mean
nothing. Small and slow on purpose: this checks behaviour, not speed
(that is `make bench`, bench/README.md)."""

import json
import subprocess

from chatd_harness import REPO, SECRET, eventually

LOADGEN = REPO / "build" / "bench" / "loadgen"


def loadgen(server, tenant, *args, timeout=60):
    assert LOADGEN.exists(), f"{LOADGEN} missing: make test builds it (make -f bench/Makefile loadgen)"
    proc = subprocess.run(
        [str(LOADGEN), "--json", "--port", str(server.port), "--secret", SECRET,
         "--tenant", tenant, "--id-prefix", tenant + "-", "--create-rooms", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"loadgen exit {proc.returncode}:\n{proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_fanout_run_counts_every_delivery(server, tenant, db):
    # S1's shape, small: 2 rooms of 20, one sender each, 40 msgs/s in.
    r = loadgen(server, tenant, "--conns", 40, "--rooms", 2, "--senders", 2, "--rate", 40,
                "--warmup", 0.5, "--duration", 2, "--drain", 2)
    assert r["errors"] == {}, r["errors"]
    assert r["setup"]["joined"] == 40 and r["setup"]["failed"] == 0
    assert r["sent"] > 0 and r["acked"] == r["sent"]
    # Every member of a room, the sender included, gets each message once.
    assert r["expected"] == r["sent"] * 20
    assert r["received"] == r["expected"] and r["lost"] == 0 and r["gaps"] == 0
    assert r["latency_us"]["count"] == r["received"] and 0 < r["latency_us"]["p50"] < 2_000_000
    # The messages went through the whole pipeline: PostgreSQL gets them all.
    def stored():
        with db.cursor() as cur:
            cur.execute("SELECT count(*) FROM messages WHERE tenant = %s", (tenant,))
            n = cur.fetchone()[0]
        assert n == r["sent"] + r["sent_warmup"], n
    eventually(stored, timeout=15, what="every message synced to PostgreSQL")

def test_idle_run_holds_joined_connections(server, tenant):
    # S3's shape, small: connections that only join and stay.
    r = loadgen(server, tenant, "--conns", 60, "--rooms", 6, "--idle",
                "--warmup", 0, "--duration", 1, "--drain", 0)
    assert r["errors"] == {}, r["errors"]
    assert r["setup"]["hellos"] == 60 and r["setup"]["joined"] == 60
    assert r["setup"]["handshake_us"]["count"] == 60
    assert r["lost_conns"] == 0 and r["sent"] == 0
