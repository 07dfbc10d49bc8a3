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


def test_pause_at_hellos_waits_for_sigusr1_before_joining(server, tenant):
    # S3's pause (bench/run.py reads chatd's CPU there): every hello first,
    # a line on stderr, no join until SIGUSR1.
    import signal
    import time
    proc = subprocess.Popen(
        [str(LOADGEN), "--json", "--port", str(server.port), "--secret", SECRET,
         "--tenant", tenant, "--id-prefix", tenant + "-", "--create-rooms",
         "--conns", "30", "--rooms", "3", "--idle", "--warmup", "0", "--duration", "0.5",
         "--drain", "0", "--setup-timeout", "30", "--pause-at-hellos"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "hellos done: 30 of 30" in line, line
        time.sleep(0.5)
        assert proc.poll() is None, "loadgen went on without the signal"
        proc.send_signal(signal.SIGUSR1)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "setup done" in err and "hellos done" not in err, err
    r = json.loads(out.strip().splitlines()[-1])
    assert r["setup"]["hellos"] == 30 and r["setup"]["joined"] == 30
    assert r["errors"] == {} and r["setup"]["errors"] == {}, r
