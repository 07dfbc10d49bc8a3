#!/usr/bin/python3
"""bench/run.py: chatd's benchmark driver (bench/README.md).

Starts the bench services (scripts/services.sh start bench: Redis 6392,
PostgreSQL 5442), migrates, and runs the scenarios of issue 5 against a fresh
build/chatd for every run, configured by bench/bench.conf, pinned to core 0,
with build/bench/loadgen pinned to core 1:

  S1     1 room x 1,000 connections, 1 sender, a sweep of rates
  S1sse  S1 with its 999 readers on the room event stream (GET /api/events,
         Server-Sent Events) and its sender on a WebSocket, beside S1 at
         the same rate
  light  S1 at 100 msgs/s
  S2     10,000 connections in 1,000 rooms of 10, 1,000 senders, 10,000 msgs/s
  S3     19,000 idle connections, each joined to a room (rooms of 10)
  S3x2   S3 at 38,000 connections: two workers (both on core 0), two loadgens
  chatty 1 room x 1,000 connections: 10 senders at S1's rate, 100 people typing
         and reading (docs/protocol.md section 8), beside S1 at that rate

Each run appends one JSON line to bench/results.jsonl; the end prints a
Markdown table. A session starts by emptying the bench Redis (its own set;
nothing else is flushed). Every wait is bounded; a run never takes more than
its loadgen's own cap plus a minute. Standard library only.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "bench" / "bench.conf"
LOADGEN = REPO / "build" / "bench" / "loadgen"
CHATD = REPO / "build" / "chatd"        # --chatd replaces it (A/B runs)
BUILT_CHATD = CHATD
RESULTS = REPO / "bench" / "results.jsonl"
LOG_DIR = REPO / "build" / "bench"
SERVICES_SET = "bench"
SERVER_CPU = "0"
LOADGEN_CPU = "1"
SRC_IPS = "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4"
# A process may open 20,000 files here: a loadgen process holds at most this
# many connections (plus its epoll descriptor and stdio).
MAX_CONNS_PER_PROC = 19000
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Environment variables that would override bench.conf (docs/configuration.md).
CHATD_OVERRIDES = ("CHATD_PORT", "CHATD_LISTEN", "CHATD_WORKERS", "CHATD_INSTANCE",
                   "REDIS_URL", "DATABASE_URL", "CHATD_JWT_SECRET", "CHATD_ASSETS",
                   "CHATD_LOG_LEVEL", "CHATD_DURABILITY", "CHATD_ALLOWED_ORIGINS",
                   "CHATD_JWT_PUBLIC_KEY_FILE")
# The bench services' URLs for chatd when they run on other ports than
# bench.conf's (--redis-port, --pg-port: another checkout's bench set holds
# 6392 and 5442); empty otherwise.
SERVICES_ENV = {}
# chatd's log level when not bench.conf's warn (--chatd-log-level info: a
# line per slow consumer and stream ended, for a diagnosis; its cost counts).
CHATD_LOG_LEVEL = None

# The targets of issue 5.
# Before each run: CPU seconds per second other processes may use (both
# cores together) without the run waiting for them to finish.
QUIET_MAX = 0.3

TARGET_S1_DELIVERIES = 5_000_000
TARGET_S1_P99_MS = 50
TARGET_S2_P99_MS = 5
TARGET_S3_KIB = 1.0
TARGET_S3_HANDSHAKES = 45_000
TARGET_LIGHT_P50_MS = 1
TARGET_LIGHT_P99_MS = 3
# The chatty room: its deliveries "keep their S1 latency" when its p99 is
# at most S1's at the same rate times this, plus this slack (the runs'
# spread at a few ms: bench/README.md).
CHATTY_P99_RATIO = 1.25
CHATTY_P99_SLACK_MS = 1.0


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    sys.exit(1)


# ------------------------------------------------------------------ helpers

def conf_values(path):
    """The `key = value;` lines of a libconfig file (enough for bench.conf)."""
    values = {}
    for line in path.read_text().splitlines():
        m = re.match(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*[=:]\s*("(?:[^"\\]|\\.)*"|[^;#]+?)\s*;', line)
        if m:
            v = m.group(2)
            values[m.group(1)] = v[1:-1] if v.startswith('"') else int(v)
    return values


def git_commit():
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "src"))
    return commit, dirty


def http_json(port, path, timeout=2):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read())


def proc_children(pid):
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            kids += [int(x) for x in text.split()]
    except OSError:
        pass
    return kids


def proc_rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_s(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_oncpu_ns(pid):
    """Nanoseconds a process has been on a CPU, all its threads
    (/proc/PID/task/TID/schedstat, first field: ns resolution, where
    /proc/PID/stat counts clock ticks). Exact for a process that is
    asleep; a running one's current slice may be missing."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return total


def cores_ticks():
    """{cpuN: [user, nice, system, idle, iowait, irq, softirq, steal]} ticks."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f and re.fullmatch(r"cpu\d+", f[0]):
            out[f[0]] = [int(x) for x in f[1:9]]
    return out


def cores_delta(a, b):
    """Seconds each core spent per kind between two cores_ticks()."""
    out = {}
    for cpu in sorted(b):
        d = [(y - x) / CLK_TCK for x, y in zip(a.get(cpu, b[cpu]), b[cpu])]
        out[cpu] = {"user": round(d[0] + d[1], 2), "system": round(d[2], 2),
                    "softirq": round(d[5] + d[6], 2), "steal": round(d[7], 2),
                    "idle": round(d[3] + d[4], 2)}
    return out


def service_pids():
    """The bench Redis and PostgreSQL processes (all of the postmaster's)."""
    run = REPO / ".run" / SERVICES_SET
    pids = {"redis": [], "postgres": []}
    try:
        pids["redis"] = [int((run / "redis.pid").read_text().split()[0])]
    except (OSError, ValueError, IndexError):
        pass
    try:
        pm = int((run / "pg" / "postmaster.pid").read_text().split()[0])
        pids["postgres"] = [pm] + proc_children(pm)
    except (OSError, ValueError, IndexError):
        pass
    return pids


class CpuSnap:
    """CPU seconds of chatd, Redis, PostgreSQL, the loadgens (reaped
    children) and each core, at one moment."""

    def __init__(self, chatd):
        self.t = time.monotonic()
        self.chatd = chatd.cpu_s()
        self.services = {k: sum(proc_cpu_s(p) for p in v) for k, v in service_pids().items()}
        self.kids = children_cpu_s()
        self.cores = cores_ticks()

    def since(self, a):
        return {"wall_s": round(self.t - a.t, 2), "chatd_s": round(self.chatd - a.chatd, 2),
                **{f"{k}_s": round(self.services[k] - a.services.get(k, 0), 2)
                   for k in self.services},
                "cores": cores_delta(a.cores, self.cores)}


def redis_port():
    env_file = REPO / ".run" / SERVICES_SET / "env"
    try:
        return re.search(r"^REDIS_PORT=(\d+)$", env_file.read_text(), re.M).group(1)
    except (OSError, AttributeError):
        return None


def redis_cli(*cmd):
    port = redis_port()
    if port is None:
        return None
    try:
        return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, *cmd],
                              capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def redis_cmdstats():
    """Redis' calls and CPU microseconds per command since the last
    CONFIG RESETSTAT: where Redis' time goes during a run."""
    out = redis_cli("INFO", "commandstats") or ""
    stats = {}
    for m in re.finditer(r"^cmdstat_([^:]+):calls=(\d+),usec=(\d+)", out, re.M):
        stats[m.group(1)] = {"calls": int(m.group(2)), "usec": int(m.group(3))}
    return stats


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# The histogram of lg_hist.c: 64 linear sub-buckets per power of two (ns).
HIST_SUB_BITS = 6
HIST_SUB = 1 << HIST_SUB_BITS


def bucket_mid_ns(i):
    if i < HIST_SUB:
        return i
    e = (i - HIST_SUB) // HIST_SUB + HIST_SUB_BITS
    m = (i - HIST_SUB) % HIST_SUB + HIST_SUB
    width = 1 << (e - HIST_SUB_BITS)
    return m * width + width // 2


def merged_quantiles(bucket_lists, maxima):
    """p50..p99.9 in microseconds of several loadgens' histograms together."""
    counts = {}
    for buckets in bucket_lists:
        for i, c in buckets:
            counts[i] = counts.get(i, 0) + c
    total = sum(counts.values())
    out = {"count": total}
    mx = max(maxima) if maxima else 0
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
        if total == 0:
            out[name] = 0.0
            continue
        rank = max(1, min(total, int(q * total + 0.999999)))
        seen = 0
        for i in sorted(counts):
            seen += counts[i]
            if seen >= rank:
                out[name] = round(min(bucket_mid_ns(i), mx * 1000) / 1000, 1)
                break
    out["max"] = mx
    return out


# ------------------------------------------------------------------- chatd

class Chatd:
    """build/chatd -c bench/bench.conf, pinned, in its own process group."""

    def __init__(self, port, tag, workers=None):
        self.port = port
        self.workers = workers      # None: bench.conf's
        self.log_path = LOG_DIR / f"chatd-{tag}.log"
        self.proc = None

    def start(self, timeout=20):
        env = {k: v for k, v in os.environ.items() if k not in CHATD_OVERRIDES}
        env["CHATD_PORT"] = str(self.port)
        env.update(SERVICES_ENV)
        if CHATD_LOG_LEVEL:
            env["CHATD_LOG_LEVEL"] = CHATD_LOG_LEVEL
        if self.workers:
            env["CHATD_WORKERS"] = str(self.workers)
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(
                ["taskset", "-c", SERVER_CPU, str(CHATD), "-c", str(CONF)],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chatd exited with {self.proc.returncode}:\n"
                                   + self.log_path.read_text(errors="replace")[-2000:])
            try:
                if http_json(self.port, "/ready", timeout=1).get("ready", True) is not False:
                    m = self.monitoring()
                    if (m["workers_live"] >= (self.workers or 1) and
                            all(w["pid"] for w in m["workers"])):
                        return self
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"chatd not ready within {timeout}s (log {self.log_path})")
            time.sleep(0.1)

    def monitoring(self, timeout=2):
        return http_json(self.port, "/api/monitoring/websocket", timeout=timeout)

    def monitoring_patient(self, within=30):
        """The figures after a run, when the worker may still be busy (closing
        19,000 connections takes a while); None if it never answers."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                return self.monitoring(timeout=10)
            except (OSError, ValueError):
                time.sleep(0.5)
        log("monitoring did not answer after the run")
        return None

    def pids(self):
        """The parent and every process below it."""
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += proc_children(pid)
        return out

    def rss_kib(self):
        return sum(proc_rss_kib(p) for p in self.pids())

    def cpu_s(self):
        return sum(proc_cpu_s(p) for p in self.pids())

    def worker_pids(self):
        """The workers' pids (monitoring), or every process if it does not say."""
        try:
            pids = [w["pid"] for w in self.monitoring()["workers"] if w.get("pid")]
        except (OSError, ValueError, KeyError, TypeError):
            pids = []
        return pids or self.pids()

    def wait_sync(self, timeout=20):
        """Until the PostgreSQL sync has caught up with this run's messages,
        so that the next run does not inherit a backlog. Returns the wait."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                s = self.monitoring()["sync"]
                if not s.get("lag") and not s.get("pending"):
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        return round(time.monotonic() - t0, 2)

    def stop(self, timeout=15):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log("chatd did not stop after SIGTERM; killing it")
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if self.log_path.exists() and self.log_path.stat().st_size == 0:
            self.log_path.unlink()      # keep only logs that say something


# -------------------------------------------------------------------- perf

class Perf:
    """perf record of chatd's processes until finish(), which gives the top
    symbols (and leaves build/bench/perf-TAG.data for perf report)."""

    def __init__(self, chatd, tag, callgraph="fp"):
        self.data = LOG_DIR / f"perf-{tag}.data"
        pids = ",".join(str(p) for p in chatd.pids())
        self.proc = subprocess.Popen(
            ["perf", "record", "-F", "499", "--call-graph", callgraph, "-p", pids,
             "-o", str(self.data)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def finish(self, top=15):
        try:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(60)
            rep = subprocess.run(["perf", "report", "-i", str(self.data), "--no-children",
                                  "--sort", "dso,sym", "--stdio", "-g", "none"],
                                 capture_output=True, text=True, timeout=120).stdout
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            return None
        rows = []
        for line in rep.splitlines():
            m = re.match(r"\s+([0-9.]+)%\s+(\S+)\s+\[.\]\s+(.*)", line)
            if m:
                rows.append([float(m.group(1)), m.group(2), m.group(3).strip()])
        return rows[:top]


# ----------------------------------------------------------------- loadgen

class Viewers:
    """n dashboard viewers: n Server-Sent Events clients on
    /api/monitoring/stream (what each open /monitoring page holds), read by
    one thread until close(). Counts the events they received."""

    def __init__(self, port, n):
        import selectors
        import socket
        self.events = 0
        self.bytes = 0
        self.socks = []
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        req = (f"GET /api/monitoring/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               "Accept: text/event-stream\r\n\r\n").encode()
        for _ in range(n):
            sk = socket.create_connection(("127.0.0.1", port), timeout=5)
            sk.sendall(req)
            sk.setblocking(False)
            self._sel.register(sk, selectors.EVENT_READ)
            self.socks.append(sk)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        while not self._stop.is_set():
            for key, _ in self._sel.select(0.5):
                try:
                    data = key.fileobj.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._sel.unregister(key.fileobj)
                    continue
                self.bytes += len(data)
                self.events += data.count(b"event: monitoring")

    def close(self):
        self._stop.set()
        self._thread.join(5)
        for sk in self.socks:
            sk.close()
        self._sel.close()
        return {"viewers": len(self.socks), "viewer_events": self.events,
                "viewer_bytes": self.bytes}


class Loadgens:
    """Several loadgen processes for one run; connections split between
    them (each its own rooms and id prefix)."""

    def __init__(self, port, secret, prefix, spec):
        self.procs, self.outputs, self.setup_lines, self.hello_lines = [], [], [], []
        self.lock = threading.Lock()
        self.all_setup = threading.Event()
        self.all_hellos = threading.Event()     # spec["pause_at_hellos"]
        conns = spec["conns"]
        nproc = max(1, -(-conns // MAX_CONNS_PER_PROC))
        if nproc > 1 and spec.get("senders"):
            raise ValueError("several loadgen processes are only for idle runs")
        self.nproc = nproc
        rooms_per_conn = spec["rooms"] / conns
        for k in range(nproc):
            n = conns // nproc + (1 if k < conns % nproc else 0)
            args = ["taskset", "-c", LOADGEN_CPU, str(LOADGEN), "--json",
                    "--port", str(port), "--secret", secret, "--tenant", "bench",
                    "--id-prefix", f"{prefix}p{k}-", "--conns", str(n),
                    "--rooms", str(max(1, round(n * rooms_per_conn))),
                    "--src-ips", SRC_IPS, "--create-rooms"]
            for key in ("senders", "rate", "warmup", "duration", "drain", "body_bytes",
                        "setup_timeout", "max_pending", "max_joins", "chatty"):
                if spec.get(key) is not None:
                    args += ["--" + key.replace("_", "-"), str(spec[key])]
            if spec.get("idle"):
                args.append("--idle")
            if spec.get("sse"):
                args.append("--sse")
            if spec.get("pause_at_hellos"):
                args.append("--pause-at-hellos")
            if nproc > 1:
                args.append("--start-on-signal")
            self.cap = (spec.get("setup_timeout", 60) + spec.get("warmup", 1) +
                        spec.get("duration", 5) + spec.get("drain", 3) + 60)
            p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, text=True, cwd=REPO)
            self.procs.append(p)
            threading.Thread(target=self._stderr, args=(p,), daemon=True).start()

    def _stderr(self, p):
        for line in p.stderr:
            line = line.rstrip()
            if "setup done" in line:
                with self.lock:
                    self.setup_lines.append(line)
                    if len(self.setup_lines) == self.nproc:
                        self.all_setup.set()
            elif "hellos done" in line:
                with self.lock:
                    self.hello_lines.append(line)
                    if len(self.hello_lines) == self.nproc:
                        self.all_hellos.set()
            else:
                log(f"loadgen: {line}")

    def wait(self):
        deadline = time.monotonic() + self.cap
        for p in self.procs:
            try:
                out, _ = p.communicate(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
                log("loadgen exceeded its time cap and was killed")
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if p.returncode != 0 or not lines:
                raise RuntimeError(f"loadgen failed (exit {p.returncode}): {out[-500:]}")
            self.outputs.append(json.loads(lines[-1]))
        return self.outputs

    def join(self):
        """--pause-at-hellos: every loadgen has its hellos and waits; the
        joins may start (each loadgen's first SIGUSR1)."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGUSR1)

    def go(self):
        """Several loadgens wait after their set-up (--start-on-signal) until
        all are set up, so that they hold their connections at one time."""
        if self.nproc > 1:
            for p in self.procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGUSR1)

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()


def merge_outputs(outs):
    """One result from several loadgens: counters summed, histograms merged."""
    if len(outs) == 1:
        r = dict(outs[0])
        r.pop("buckets", None)
        return r
    r = {}
    for key in ("conns", "rooms", "senders", "senders_active", "sent", "sent_warmup",
                "send_skipped", "acked", "expected", "received", "lost", "received_warmup",
                "received_other", "gaps", "lost_conns", "pings", "frames_in", "bytes_in",
                "msgs_per_s", "deliveries_per_s", "seq_disorder", "seq_holes", "seq_unknown"):
        r[key] = sum(o.get(key, 0) for o in outs)
    for key in ("rate", "warmup_s", "duration_s", "drain_s", "body_bytes", "idle"):
        r[key] = outs[0][key]
    errors, setup_errors = {}, {}
    for o in outs:
        for k, v in o["errors"].items():
            errors[k] = errors.get(k, 0) + v
        for k, v in o["setup"]["errors"].items():
            setup_errors[k] = setup_errors.get(k, 0) + v
    r["errors"] = errors
    hello_s = max(o["setup"]["hello_seconds"] for o in outs)
    hellos = sum(o["setup"]["hellos"] for o in outs)
    r["setup"] = {
        "hellos": hellos, "joined": sum(o["setup"]["joined"] for o in outs),
        "failed": sum(o["setup"]["failed"] for o in outs),
        "join_retries": sum(o["setup"]["join_retries"] for o in outs),
        "seconds": max(o["setup"]["seconds"] for o in outs), "hello_seconds": hello_s,
        # The processes connect at the same time: all hellos over the longest.
        "hellos_per_s": round(hellos / hello_s, 1) if hello_s else 0,
        "joins_per_s": round(sum(o["setup"]["joins_per_s"] for o in outs), 1),
        "errors": setup_errors,
        "handshake_us": merged_quantiles([o["buckets"]["handshake"] for o in outs],
                                         [o["setup"]["handshake_us"]["max"] for o in outs]),
    }
    r["latency_us"] = merged_quantiles([o["buckets"]["latency"] for o in outs],
                                       [o["latency_us"]["max"] for o in outs])
    for key in ("ack_us", "send_lag_us", "latency_app_us"):
        r[key] = max((o[key] for o in outs), key=lambda h: h["p99"])
    return r


# ------------------------------------------------------------------- a run

class Bench:
    def __init__(self, args):
        self.args = args
        self.port = args.port
        conf = conf_values(CONF)
        self.secret = conf["jwt_secret"]
        self.workers = conf.get("workers")
        self.commit, self.dirty = git_commit()
        # Another binary than build/chatd (--chatd): which one, so an A/B
        # run can be told apart from the commit's own in results.jsonl.
        # build/chatd's sha1 too: another checkout's `make` may replace it
        # between the runs of an A/B series.
        self.binary = {}
        if CHATD != BUILT_CHATD:
            self.binary["chatd_bin"] = str(CHATD)
        self.binary["chatd_sha1"] = hashlib.sha1(CHATD.read_bytes()).hexdigest()
        if args.note:
            self.binary["note"] = args.note
        self.session = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
        self.records = []
        self.seq = 0
        self.quiet_budget = args.wait_quiet

    def run(self, scenario, label, spec, measure_idle=False):
        """One fresh chatd, one set of loadgens, one JSON line."""
        self.seq += 1
        tag = f"{self.session}-{self.seq:02d}"
        prefix = f"b{self.session[4:8]}{self.session[9:]}n{self.seq}"
        log(f"{label}: starting ({spec['conns']} connections)")
        workers = spec.get("workers") or self.workers
        chatd = Chatd(self.port, tag, spec.get("workers")).start()
        lg = None
        viewers = None
        viewed = {}
        try:
            if self.args.viewers:
                viewers = Viewers(self.port, self.args.viewers)
            # Let the worker settle before the baseline; meanwhile, see whether
            # something else keeps the machine busy (it would skew the run).
            # Waits (1 s at a time, at most quiet_budget seconds per session)
            # while others use more than QUIET_MAX CPU seconds per second.
            while True:
                quiet0 = CpuSnap(chatd)
                time.sleep(1.0)
                quiet = CpuSnap(chatd).since(quiet0)
                busy_before = round(sum(v["user"] + v["system"] + v["softirq"] + v["steal"]
                                        for v in quiet["cores"].values()) - quiet["chatd_s"], 2)
                if busy_before <= QUIET_MAX or self.quiet_budget <= 0:
                    break
                if self.quiet_budget == self.args.wait_quiet:
                    log(f"waiting up to {self.quiet_budget:.0f} s (this session) for the "
                        f"machine to be quiet: {busy_before:.2f} CPU s/s used by others")
                self.quiet_budget -= 1
            if busy_before > QUIET_MAX:
                log(f"{label}: warning: {busy_before:.2f} CPU seconds per second used by "
                    "other processes before the run")
            rss0 = chatd.rss_kib()
            mon0 = chatd.monitoring()
            profile = bool(self.args.perf) and scenario in self.args.perf
            perf = Perf(chatd, tag, self.args.perf_callgraph) if profile and measure_idle else None
            wpids = chatd.worker_pids()
            snap0 = CpuSnap(chatd)
            oncpu0 = sum(proc_oncpu_ns(p) for p in wpids)
            lg = Loadgens(self.port, self.secret, prefix, spec)
            rss1 = None
            hello_cpu = None
            if spec.get("pause_at_hellos"):
                # The loadgens stop once every connection has its hello, so
                # the workers' CPU time of the handshakes alone (upgrade,
                # token, hello) is read while they sleep, before any join.
                if not lg.all_hellos.wait(lg.cap):
                    raise RuntimeError("the loadgens did not report their hellos")
                oncpu_h = sum(proc_oncpu_ns(p) for p in wpids)
                hello_cpu = CpuSnap(chatd).since(snap0)
                hello_cpu["workers_oncpu_s"] = round((oncpu_h - oncpu0) / 1e9, 4)
                lg.join()
            # Set-up (handshakes, joins) and the run proper are measured apart;
            # an idle run is profiled during its set-up, the others after it.
            if not lg.all_setup.wait(lg.cap):
                raise RuntimeError("the loadgens did not finish their set-up")
            snap1 = CpuSnap(chatd)
            redis_cli("CONFIG", "RESETSTAT")
            mon_s = chatd.monitoring_patient()
            perf_top = perf.finish() if perf else None
            perf = Perf(chatd, tag, self.args.perf_callgraph) if profile and not measure_idle else None
            heap1 = None
            if measure_idle:
                time.sleep(1.0)   # the last joins' buffers settle
                rss1 = chatd.rss_kib()
                heap1 = chatd.monitoring_patient()["process"]
            lg.go()               # several loadgens: all set up, now go on together
            outs = lg.wait()
            snap2 = CpuSnap(chatd)
            redis_cmds = redis_cmdstats()
            perf_top = perf.finish() if perf else perf_top
            mon1 = chatd.monitoring_patient()
            sync_wait = chatd.wait_sync()
        finally:
            if lg is not None:
                lg.kill()
            if viewers is not None:
                viewed = viewers.close()
            chatd.stop()
        r = merge_outputs(outs)
        setup_cpu, run_cpu = snap1.since(snap0), snap2.since(snap1)
        lg_cpu = snap2.kids - snap0.kids
        rec = {
            "session": self.session, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "commit": self.commit, "src_dirty": self.dirty, "quick": self.args.quick,
            **self.binary,
            "scenario": scenario, "label": label, "workers": workers,
            # Dashboard viewers open during the run (--viewers), and what they got.
            "viewers": self.args.viewers, **{k: v for k, v in viewed.items() if k != "viewers"},
            "loadgens": len(outs), **r,
            "server": {
                # Busy share of its core after set-up (sending and draining).
                "cpu_util": round(run_cpu["chatd_s"] / max(run_cpu["wall_s"], 0.01), 2),
                "rss_kib_before": rss0, "rss_kib_idle": rss1,
                "sync_wait_s": sync_wait,
            },
            # CPU seconds of each part, during set-up and after it, and of
            # each core (softirq: loopback TCP; steal: the hypervisor).
            "cpu": {"setup": setup_cpu, "run": run_cpu, "loadgen_total_s": round(lg_cpu, 2),
                    **({"hellos": hello_cpu} if hello_cpu else {})},
            # Redis' commands after set-up: calls and CPU microseconds each.
            "redis_cmds": redis_cmds,
            "wall_s": round(snap2.t - snap0.t, 1),
            "loadavg_before": self.loadavg0,
            # The bench services' URLs when not bench.conf's (--redis-port, --pg-port).
            **({"services": dict(SERVICES_ENV)} if SERVICES_ENV else {}),
            **({"chatd_log_level": CHATD_LOG_LEVEL} if CHATD_LOG_LEVEL else {}),
            # chatd's log, when it said something (empty ones are removed).
            **({"chatd_log": str(chatd.log_path.relative_to(REPO))}
               if chatd.log_path.exists() else {}),
            # CPU seconds per second used by other processes just before.
            "busy_before": busy_before,
        }
        if mon1 is not None and mon_s is not None:
            # chatd's own counters (monitoring) from the end of set-up on.
            rec["server"].update({
                "deliveries": mon1["deliveries"] - mon_s["deliveries"],
                "deliveries_per_s": round((mon1["deliveries"] - mon_s["deliveries"]) /
                                          max(run_cpu["wall_s"], 0.01)),
                "messages": mon1["messages"]["sent"] - mon_s["messages"]["sent"],
                "slow_consumer_gaps": (mon1["slow_consumers"]["gaps"] -
                                       mon0["slow_consumers"]["gaps"]),
                "slow_consumer_closed": (mon1["slow_consumers"]["closed"] -
                                         mon0["slow_consumers"]["closed"]),
            })
            if "output" in mon1 and "output" in mon_s:
                # Socket writes to clients: frames per write is the batching.
                w = mon1["output"]["socket_writes"] - mon_s["output"]["socket_writes"]
                rec["server"]["socket_writes"] = w
                rec["server"]["deliveries_per_write"] = round(
                    rec["server"]["deliveries"] / w, 2) if w else None
        if hello_cpu and r["setup"]["hellos"]:
            # The workers' CPU (all threads, schedstat) from the loadgens'
            # start to their last hello, per hello: connection set-up alone.
            rec["server"]["setup_cpu_us_per_conn"] = round(
                hello_cpu["workers_oncpu_s"] * 1e6 / r["setup"]["hellos"], 1)
        if perf_top:
            rec["perf_top"] = perf_top
        if rss1 is not None and r["setup"]["joined"]:
            rec["server"]["kib_per_conn"] = round((rss1 - rss0) / r["setup"]["joined"], 2)
            # The worker's heap (glibc mallinfo2): allocated and free-but-mapped,
            # per connection, so the report can split RSS into parts.
            heap0 = mon0.get("process", {}) if workers == 1 else {}  # one worker's heap
            for k in ("answering_worker_heap_used_kb", "answering_worker_heap_free_kb",
                      "conn_heap_kb"):
                a, b = heap0.get(k), (heap1 or {}).get(k)
                if a is not None and b is not None:
                    rec["server"][k.replace("answering_worker_", "").replace(
                        "_kb", "_kib_per_conn")] = round(
                        (b - a) / r["setup"]["joined"], 3)
        rec["ok"] = self.ok(rec)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.records.append(rec)
        log(f"{label}: {summary_line(rec)}")
        return rec

    @staticmethod
    def ok(rec):
        """S1's criterion: p99 under 50 ms, nothing lost, nothing failed, every
        reader's messages in seq order; the chatty room's typing and receipt
        events within their bounds too; a stream reader's message:new with
        its seq in the stream's cursor (id:)."""
        if rec.get("idle"):
            return rec["setup"]["failed"] == 0
        return (rec["setup"]["failed"] == 0 and rec["lost"] == 0 and rec["lost_conns"] == 0 and
                rec["gaps"] == 0 and not rec["errors"] and rec["sent"] > 0 and
                rec["latency_us"]["p99"] < TARGET_S1_P99_MS * 1000 and
                not rec.get("seq_disorder") and not rec.get("seq_holes") and
                not rec.get("sse", {}).get("id_mismatch") and
                ("chatty" not in rec or chatty_bounded(rec["chatty"])))

    def main(self):
        a = self.args
        self.loadavg0 = os.getloadavg()[0]
        if self.loadavg0 > 0.7:
            log(f"warning: load average {self.loadavg0:.2f} before the benchmark: something "
                "else is running, the figures will suffer")
        quick = a.quick
        w, d, drain = (1, 3, 3) if quick else (2, 5, 3)
        s1 = {"conns": 1000, "rooms": 1, "senders": 1, "warmup": w, "duration": d,
              "drain": drain}
        only = (set(a.only.split(",")) if a.only else
                {"S1", "S1sse", "light", "S2", "chatty", "S3"} | (set() if quick else {"S3x2"}))
        if "S1" in only:
            overloaded = False
            for rate in a.s1_rates:
                # Past a rate where every run was overloaded (loss, or p99
                # over a second), one run per rate says enough.
                runs = [self.run("S1", f"S1 {rate} msgs/s", {**s1, "rate": rate})
                        for _ in range(1 if overloaded else a.repeat)]
                overloaded = all(r["lost"] > 0 or r["latency_us"]["p99"] > 1e6 for r in runs)
        if "S1sse" in only:
            # S1's shape with its readers on the event stream, at S1's rates
            # (or --sse-rates), one run per rate past an overloaded one as
            # S1's; S1 at the same rate alternated with it unless this
            # session's sweep has it, so that both are of the same hour.
            overloaded = False
            for rate in a.sse_rates:
                ref = not any(r["scenario"] == "S1" and r["rate"] == rate for r in self.records)
                runs = []
                for _ in range(1 if overloaded else a.repeat):
                    if ref:
                        self.run("S1", f"S1 {rate} msgs/s", {**s1, "rate": rate})
                    runs.append(self.run("S1sse", f"S1sse {rate} msgs/s",
                                         {**s1, "rate": rate, "sse": True}))
                overloaded = all(r["lost"] > 0 or r["latency_us"]["p99"] > 1e6 for r in runs)
        if "light" in only:
            for _ in range(a.repeat):
                self.run("light", "light 100 msgs/s",
                         {**s1, "rate": 100, "duration": 5 if quick else 10})
        if "S2" in only:
            for _ in range(a.repeat):
                self.run("S2", "S2 10000 msgs/s",
                         {"conns": 10000, "rooms": 1000, "senders": 1000, "rate": 10000,
                          "warmup": w, "duration": d, "drain": drain})

        def idle(n, **more):
            """S3's spec: n idle connections in rooms of 10, held 4 s."""
            return {"conns": n, "rooms": max(1, n // 10), "idle": True, "warmup": 0,
                    "duration": 4, "drain": 0, "setup_timeout": 120, "max_pending": 1024,
                    "pause_at_hellos": True, **more}

        if "chatty" in only:
            # S1 at the same rate in the same hour, alternated with the chatty
            # runs, unless this session's S1 sweep had it.
            # --chatty-control: the same room without people too, so that
            # what the typing and receipts cost is told from what ten
            # senders instead of one do.
            rate = a.chatty_rate
            ref = not any(r["scenario"] == "S1" and r["rate"] == rate for r in self.records)
            room = {**s1, "senders": a.chatty_senders, "rate": rate,
                    "duration": 5 if quick else 10}
            for _ in range(a.repeat):
                if ref:
                    self.run("S1", f"S1 {rate} msgs/s", {**s1, "rate": rate})
                if a.chatty_control:
                    self.run("chatty", f"chatty {rate} msgs/s, no people", {**room, "chatty": 0})
                self.run("chatty", f"chatty {rate} msgs/s, {a.chatty_people} typing",
                         {**room, "chatty": a.chatty_people})
        if "S3" in only:
            self.run("S3", f"S3 {a.s3_conns} idle", idle(a.s3_conns), measure_idle=True)
        if "S3x2" in only:
            # Issue 5's 38,000 "where the file limit allows": one process may
            # open 20,000 files, so two workers (the kernel spreads the
            # connections over them, ~19,000 each) and two loadgens.
            self.run("S3x2", f"S3 {a.s3x2_conns} idle, 2 workers",
                     idle(a.s3x2_conns, workers=2), measure_idle=True)
        print(markdown(self.records))


# ------------------------------------------------------------------ report

def cpu_line(c):
    cores = ", ".join(f"{k} steal {v['steal']:.1f} s softirq {v['softirq']:.1f} s idle "
                      f"{v['idle']:.1f} s" for k, v in c["cores"].items())
    return (f"{c['wall_s']:.1f} s: chatd {c['chatd_s']:.1f} s, redis {c.get('redis_s', 0):.1f} s, "
            f"postgres {c.get('postgres_s', 0):.1f} s; {cores}")


def summary_line(r):
    log(f"  cpu during set-up {cpu_line(r['cpu']['setup'])}")
    log(f"  cpu after set-up  {cpu_line(r['cpu']['run'])}")
    if r.get("idle"):
        s = r["setup"]
        if r["cpu"].get("hellos"):
            log(f"  cpu until the last hello {cpu_line(r['cpu']['hellos'])}; workers on CPU "
                f"{r['cpu']['hellos']['workers_oncpu_s']:.3f} s")
        return (f"{s['joined']} joined, {s['hellos_per_s']:.0f} handshakes/s, "
                f"set-up {r['server'].get('setup_cpu_us_per_conn', '-')} us CPU/conn, "
                f"{r['server'].get('kib_per_conn')} KiB/conn, errors {s['errors']}")
    lat = r["latency_us"]
    if r.get("chatty"):
        c = r["chatty"]
        log(f"  chatty: {c['typers']} people: typing:update {c['typing_per_s']:.0f}/s (bound "
            f"{c['typing_bound_per_s']:.0f}), receipt:update {c['receipt_per_s']:.0f}/s "
            f"(bound {c['receipt_bound_per_s']:.0f}), closest of one person "
            f"{c['typing_true_min_gap_ms']} / {c['receipt_min_gap_ms']} ms, too close "
            f"{c['typing_true_too_close'] + c['receipt_too_close']}")
    if r.get("sse"):
        e = r["sse"]
        log(f"  event stream: {e['readers']} readers, {e['events']} events, {e['received']} "
            f"measured deliveries, {e['id_mismatch']} message:new without its seq in id:; "
            f"seq order: {r['seq_disorder']} reordered, {r['seq_holes']} holes")
    return (f"{r['msgs_per_s']:.0f} msgs/s, {r['deliveries_per_s']:.0f} deliveries/s, "
            f"p50 {lat['p50'] / 1000:.2f} ms p99 {lat['p99'] / 1000:.2f} ms, "
            f"lost {r['lost']}, conns lost {r['lost_conns']}, gaps {r['gaps']}, "
            f"server cpu {r['server']['cpu_util']:.0%}, "
            f"deliveries/write {r['server'].get('deliveries_per_write')}")


def ms(us):
    if us != us:
        return "-"      # nothing received: no latency
    return f"{us / 1000:.2f}" if us < 100_000 else f"{us / 1000:.0f}"


def median_run(rs):
    """Of several repeats, the one with the median p99 (or handshake rate);
    a run that received nothing counts as the slowest, not as p99 0."""
    key = ((lambda r: r["setup"]["hellos_per_s"]) if rs[0].get("idle")
           else (lambda r: r["latency_us"]["p99"] if r["received"] else float("inf")))
    rs = sorted(rs, key=key)
    return rs[(len(rs) - 1) // 2]


def groups(records):
    """{label: [runs]} in the order the labels first ran, but an S1sse
    point right after S1's at its rate."""
    out = {}
    for r in records:
        out.setdefault(r["label"], []).append(r)
    order = [k for k in out if not k.startswith("S1sse ")]
    for k in (k for k in out if k.startswith("S1sse ")):
        ws = "S1 " + k[len("S1sse "):]
        order.insert(order.index(ws) + 1 if ws in order else len(order), k)
    return {k: out[k] for k in order}


def core_busy(r, core):
    """Share of the run (after set-up) a core was not idle."""
    c = r["cpu"]["run"]
    idle = c["cores"].get(f"cpu{core}", {}).get("idle")
    return "-" if idle is None else f"{1 - idle / max(c['wall_s'], 0.01):.0%}"


def sse_table(records):
    """S1sse next to S1 at the same rate: the readers on the event stream
    against the readers on WebSockets."""
    sse = groups([r for r in records if r["scenario"] == "S1sse"])
    if not sse:
        return []
    out = ["", "Event stream readers (S1sse: 999 readers on GET /api/events, the sender on a "
           "WebSocket) next to WebSocket readers (S1) at the same rate, the same session; the "
           "run with the median p99 of each. seq: messages a reader got out of order or with "
           "a hole before them; id: message:new whose event's id: cursor had not its seq. "
           "chatd's gaps / closed: its own slow-consumer counters (a stream that overflows "
           "gets room:gap and is ended). Cores: busy share after set-up (chatd on core " +
           SERVER_CPU + ", loadgen on core " + LOADGEN_CPU + ").", "",
           "| msgs/s | readers | deliveries/s | chatd's deliveries/s | p50 ms | p99 ms | p99.9 ms | "
           "lost | gaps | conns lost | chatd's gaps / closed | seq / id | errors | server CPU | "
           "core 0 / core 1 busy | ok |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, rs in sse.items():
        rate = label[len("S1sse "):]
        ws = [r for r in records if r["label"] == f"S1 {rate}"]
        for kind, runs in (("WebSocket", ws), ("event stream", rs)):
            if not runs:
                out.append(f"| {rate} | {kind} | (no run this session) |" + " |" * 13)
                continue
            r = median_run(runs)
            lat = r["latency_us"]
            if not r["received"]:
                lat = {k: float("nan") for k in ("p50", "p99", "p999")}
            errs = ", ".join(f"{k} {v}" for k, v in {**r["errors"], **r["setup"]["errors"]}.items())
            ids = r.get("sse", {}).get("id_mismatch", "-")
            out.append(f"| {rate} | {kind} | {r['deliveries_per_s']:,.0f} | "
                       f"{r['server'].get('deliveries_per_s', 0):,.0f} | {ms(lat['p50'])} | "
                       f"{ms(lat['p99'])} | {ms(lat['p999'])} | {r['lost']:,} | {r['gaps']} | "
                       f"{r['lost_conns']} | {r['server'].get('slow_consumer_gaps', '-')} / "
                       f"{r['server'].get('slow_consumer_closed', '-')} | "
                       f"{r.get('seq_disorder', '-')}+"
                       f"{r.get('seq_holes', '-')} / {ids} | {errs or '-'} | "
                       f"{r['server']['cpu_util']:.0%} | {core_busy(r, SERVER_CPU)} / "
                       f"{core_busy(r, LOADGEN_CPU)} | {sum(x['ok'] for x in runs)}/{len(runs)} |")
    return out


def at_read(r):
    app = r.get("latency_app_us")
    if not app or not r["received"]:
        return "-"
    return f"{ms(app['p50'])} / {ms(app['p99'])}"


def pick(records, scenario, label=None):
    rs = [r for r in records if r["scenario"] == scenario and (label is None or r["label"] == label)]
    return median_run(rs) if rs else None


def mostly_ok(rs):
    return sum(r["ok"] for r in rs) * 2 > len(rs)


def chatty_bounded(c):
    """The chatty room's events within the coalescing rules: some arrived,
    typing:update/s and receipt:update/s at most their bounds, no two of one
    person closer than 0.8 s at any receiver (lg_chatty.c)."""
    return (c["typers"] > 0 and c["typing_per_s"] > 0 and c["receipt_per_s"] > 0 and
            c["typing_per_s"] <= c["typing_bound_per_s"] and
            c["receipt_per_s"] <= c["receipt_bound_per_s"] and
            not c["typing_true_too_close"] and not c["receipt_too_close"])


def chatty_ref(records, r):
    """S1's run (median p99) at the chatty run's rate, if the session has one."""
    return pick(records, "S1", f"S1 {r['rate']:g} msgs/s")


def chatty_keeps(r, ref):
    """The chatty room's deliveries keep S1's latency at that rate."""
    limit = ref["latency_us"]["p99"] * CHATTY_P99_RATIO + CHATTY_P99_SLACK_MS * 1000
    return (r["lost"] == 0 and r["received"] > 0 and r["setup"]["failed"] == 0 and
            ref["received"] > 0 and r["latency_us"]["p99"] <= limit)


def gap_ms(v):
    return "-" if v is None else f"{v:,.0f}"


def chatty_table(records):
    rows = groups([r for r in records if r["scenario"] == "chatty"])
    if not rows:
        return []
    out = ["", "Chatty room: the senders send at the rate given (together); the next "
           "connections are people who type (typing:start every 300 ms for 2-5 s, then "
           "typing:stop, pauses of 1-3 s) and read (receipt:read with the latest seq received, every 200 ms when it moved); "
           "every connection counts what reaches it. Bounds (docs/protocol.md section 8, over "
           "the measured window of D s): typing:update/s <= (people x (D + 1) / D + "
           "typing:stop/s) x (N - 1), receipt:update/s <= people x (D + 1) / D x N. Closest: "
           "the shortest time between two typing:true (no typing:false between) or two "
           "receipt:update of one person at one receiver (too close: < 800 ms).", "",
           "| run | conns | senders, people | msgs/s in | deliveries/s | p50 ms | p99 ms | "
           "S1 at this rate p50 / p99 ms | typing:update/s (bound) | receipt:update/s (bound) | "
           "peak second typing / receipt | closest typing:true / receipt:update ms | "
           "people's typing:start, typing:stop, receipt:read /s | ack p99 typing / receipt ms | "
           "errors | ok |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, rs in rows.items():
        r = median_run(rs)
        lat = r["latency_us"]
        ref = chatty_ref(records, r)
        s1 = f"{ms(ref['latency_us']['p50'])} / {ms(ref['latency_us']['p99'])}" if ref else "-"
        errs = ", ".join(f"{k} {v}" for k, v in {**r["errors"], **r["setup"]["errors"]}.items())
        out.append(f"| {label} | {r['setup']['joined']} | {r['senders']}, "
                   f"{r.get('chatty', {}).get('typers', 0)} | {r['msgs_per_s']:,.0f} | "
                   f"{r['deliveries_per_s']:,.0f} | {ms(lat['p50'])} | {ms(lat['p99'])} | {s1} | "
                   f"{' | '.join(chatty_cells(r.get('chatty')))} | {errs or '-'} | "
                   f"{sum(x['ok'] for x in rs)}/{len(rs)} |")
    return out


def chatty_cells(c):
    """The event columns of the chatty table; '-' for a run without people
    (--chatty-control)."""
    if not c:
        return ["-"] * 6
    return [f"{c['typing_per_s']:,.0f} ({c['typing_bound_per_s']:,.0f})",
            f"{c['receipt_per_s']:,.0f} ({c['receipt_bound_per_s']:,.0f})",
            f"{c['typing_max_1s']:,} / {c['receipt_max_1s']:,}",
            f"{gap_ms(c['typing_true_min_gap_ms'])} / {gap_ms(c['receipt_min_gap_ms'])}",
            f"{c['starts_per_s']:,.0f}, {c['stops_per_s']:,.1f}, {c['reads_per_s']:,.0f}",
            f"{ms(c['ack_typing_us']['p99'])} / {ms(c['ack_receipt_us']['p99'])}"]


def chatty_targets(records):
    out = []
    for label, rs in groups([r for r in records if r["scenario"] == "chatty"]).items():
        r = median_run(rs)
        c, ref = r.get("chatty"), chatty_ref(records, r)
        if not c:
            continue        # the control (--chatty-control): in the table only
        if ref:
            out.append(f"| chatty room at {r['rate']:,.0f} msgs/s: deliveries keep S1's latency "
                       f"(p99 <= S1's x {CHATTY_P99_RATIO:g} + {CHATTY_P99_SLACK_MS:g} ms, "
                       f"0 lost) | p50 {ms(r['latency_us']['p50'])}, p99 "
                       f"{ms(r['latency_us']['p99'])} ms against S1's "
                       f"{ms(ref['latency_us']['p50'])}, {ms(ref['latency_us']['p99'])} ms; "
                       f"lost {r['lost']:,} | {'yes' if chatty_keeps(r, ref) else 'no'} |")
        out.append(f"| chatty room: typing and receipt events within the coalescing bounds | "
                   f"typing:update {c['typing_per_s']:,.0f}/s <= {c['typing_bound_per_s']:,.0f}, "
                   f"receipt:update {c['receipt_per_s']:,.0f}/s <= "
                   f"{c['receipt_bound_per_s']:,.0f}; closer than 800 ms: "
                   f"{c['typing_true_too_close'] + c['receipt_too_close']:,} | "
                   f"{'yes' if chatty_bounded(c) else 'no'} |")
    return out


def markdown(records):
    if not records:
        return "(no runs)"
    first = records[0]
    out = [f"chatd benchmark, {first['date'][:10]}, commit {first['commit']}"
           f"{' (src/ modified)' if first['src_dirty'] else ''}"
           f"{', quick' if first['quick'] else ''}; workers = {first['workers']}, "
           f"server on core {SERVER_CPU}, loadgen on core {LOADGEN_CPU}", ""]
    out += ["Several runs of one point: the run with the median p99 is shown; "
            "ok = runs with p99 < 50 ms, nothing lost, no error.", ""]
    out += ["deliveries/s: measured messages received by the loadgen, over the measured "
            "window or until the last of them arrived if later; chatd's: its own delivery "
            "counter over everything after set-up (warm-up and drain included).", ""]
    out += ["Latency: from a message's due time to the kernel's receive time of its "
            "bytes at the client socket; *at read*: to when the loadgen read it.", ""]
    out += ["| run | conns | msgs/s in | deliveries/s | chatd's deliveries/s | p50 ms | p90 ms | "
            "p99 ms | p99.9 ms | max ms | at read p50/p99 ms | lost | conns lost | gaps | errors | "
            "server CPU | deliveries per write | ok |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, rs in groups(records).items():
        if rs[0].get("idle"):
            continue
        r = median_run(rs)
        lat = r["latency_us"]
        if not r["received"]:
            lat = {k: float("nan") for k in ("p50", "p90", "p99", "p999", "max")}
        errs = ", ".join(f"{k} {v}" for k, v in {**r["errors"], **r["setup"]["errors"]}.items())
        out.append(f"| {r['label']} | {r['setup']['joined']} | {r['msgs_per_s']:,.0f} | "
                   f"{r['deliveries_per_s']:,.0f} | "
                   f"{r['server'].get('deliveries_per_s', 0):,.0f} | {ms(lat['p50'])} | {ms(lat['p90'])} | "
                   f"{ms(lat['p99'])} | {ms(lat['p999'])} | {ms(lat['max'])} | "
                   f"{at_read(r)} | {r['lost']:,} | "
                   f"{r['lost_conns']} | {r['gaps']} | {errs or '-'} | "
                   f"{r['server']['cpu_util']:.0%} | "
                   f"{r['server'].get('deliveries_per_write') or '-'} | "
                   f"{sum(x['ok'] for x in rs)}/{len(rs)} |")
    idle = [r for r in records if r.get("idle")]
    if idle:
        out += ["", "Set-up CPU: chatd's workers' CPU time from the loadgens' start to the "
                "last hello (upgrade, token, hello; no joins), per connection.", "",
                "| run | joined | handshakes/s | handshake p50 ms | p99 ms | set-up CPU us/conn | "
                "joins/s | RSS before KiB | RSS held KiB | KiB/conn | setup errors |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in idle:
            s, sv = r["setup"], r["server"]
            errs = ", ".join(f"{k} {v}" for k, v in s["errors"].items())
            out.append(f"| {r['label']} | {s['joined']} | {s['hellos_per_s']:,.0f} | "
                       f"{ms(s['handshake_us']['p50'])} | {ms(s['handshake_us']['p99'])} | "
                       f"{sv.get('setup_cpu_us_per_conn', '-')} | "
                       f"{s['joins_per_s']:,.0f} | {sv['rss_kib_before']:,} | "
                       f"{(sv['rss_kib_idle'] or 0):,} | {sv.get('kib_per_conn')} | {errs or '-'} |")
    out += sse_table(records)
    out += chatty_table(records)
    busy = [f"{r['label']} ({r['busy_before']:.2f})" for r in records
            if r.get("busy_before", 0) > QUIET_MAX]
    if busy:
        out += ["", "Runs that started while other processes used CPU (CPU s/s): " +
                ", ".join(busy) + "."]
    out += ["", "| target (issue 5) | measured | met |", "|---|---|---|"]
    s1 = {label: rs for label, rs in groups(records).items()
          if rs[0]["scenario"] in ("S1", "light")}     # light is S1 at 100 msgs/s
    if s1:
        good = [median_run(rs) for rs in s1.values() if mostly_ok(rs)]
        best = max(good, key=lambda r: r["rate"]) if good else None
        sus = best["rate"] * best["setup"]["joined"] if best else 0
        measured = (f"{sus:,.0f} deliveries/s ({best['rate']:,.0f} msgs/s)" if best
                    else "none of the rates tried")
        out.append(f"| S1 sustainable >= {TARGET_S1_DELIVERIES:,} deliveries/s "
                   f"(p99 < {TARGET_S1_P99_MS} ms, 0 lost) | {measured} | "
                   f"{'yes' if sus >= TARGET_S1_DELIVERIES else 'no'} |")
        top = pick(records, "S1", f"S1 {TARGET_S1_DELIVERIES // 1000} msgs/s")
        if top:
            p99 = (f"p99 {ms(top['latency_us']['p99'])} ms" if top["received"]
                   else "no measured message received")
            out.append(f"| S1 at 5,000 msgs/s: p99 < {TARGET_S1_P99_MS} ms, 0 lost | {p99}, "
                       f"{top['deliveries_per_s']:,.0f} deliveries/s received "
                       f"(chatd: {top['server'].get('deliveries_per_s', 0):,.0f}), "
                       f"lost {top['lost']:,} of {top['expected']:,} | "
                       f"{'yes' if top['ok'] else 'no'} |")
    s2 = pick(records, "S2")
    if s2:
        p99 = s2["latency_us"]["p99"] / 1000
        met = p99 < TARGET_S2_P99_MS and s2["lost"] == 0 and s2["msgs_per_s"] >= 9900
        out.append(f"| S2 p99 < {TARGET_S2_P99_MS} ms at 10,000 msgs/s | p99 {p99:.2f} ms at "
                   f"{s2['msgs_per_s']:,.0f} msgs/s, lost {s2['lost']:,} | {'yes' if met else 'no'} |")
    s3 = pick(records, "S3")
    if s3:
        kib = s3["server"].get("kib_per_conn")
        hs = s3["setup"]["hellos_per_s"]
        out.append(f"| S3 < {TARGET_S3_KIB:g} KiB per idle connection | {kib} KiB "
                   f"({s3['setup']['joined']:,} connections) | "
                   f"{'yes' if kib is not None and kib < TARGET_S3_KIB else 'no'} |")
        out.append(f"| S3 >= {TARGET_S3_HANDSHAKES:,} handshakes/s | {hs:,.0f} | "
                   f"{'yes' if hs >= TARGET_S3_HANDSHAKES else 'no'} |")
    s3x2 = pick(records, "S3x2")
    if s3x2:
        kib = s3x2["server"].get("kib_per_conn")
        out.append(f"| S3 at {s3x2['conns']:,} (2 workers, {s3x2['loadgens']} loadgens): "
                   f"< {TARGET_S3_KIB:g} KiB per idle connection | {kib} KiB "
                   f"({s3x2['setup']['joined']:,} connections), "
                   f"{s3x2['setup']['hellos_per_s']:,.0f} handshakes/s | "
                   f"{'yes' if kib is not None and kib < TARGET_S3_KIB else 'no'} |")
    out += chatty_targets(records)
    light = pick(records, "light")
    if light:
        p50, p99 = light["latency_us"]["p50"] / 1000, light["latency_us"]["p99"] / 1000
        met = p50 < TARGET_LIGHT_P50_MS and p99 < TARGET_LIGHT_P99_MS and light["lost"] == 0
        out.append(f"| light load (100 msgs/s into S1): p50 < {TARGET_LIGHT_P50_MS} ms, "
                   f"p99 < {TARGET_LIGHT_P99_MS} ms | p50 {p50:.2f} ms, p99 {p99:.2f} ms | "
                   f"{'yes' if met else 'no'} |")
    return "\n".join(out)


# -------------------------------------------------------------------- main

def prepare(args):
    for path, what in ((CHATD, "make"), (LOADGEN, "make -f bench/Makefile loadgen")):
        if not os.access(path, os.X_OK):
            die(f"no {path.relative_to(REPO)}: run `{what}` (or `make bench`)")
    newer = [p.name for p in (REPO / "src").glob("*.[ch]")
             if p.stat().st_mtime > CHATD.stat().st_mtime]
    if newer and CHATD == BUILT_CHATD:
        log(f"warning: build/chatd is older than src/ ({', '.join(sorted(newer)[:5])}): "
            "run `make` (make bench does)")
    env = dict(os.environ)
    if args.redis_port:
        env["CHATD_REDIS_PORT"] = str(args.redis_port)
    if args.pg_port:
        env["CHATD_PG_PORT"] = str(args.pg_port)
    rc = subprocess.run(["scripts/services.sh", "start", SERVICES_SET], cwd=REPO, timeout=180,
                        env=env)
    if rc.returncode != 0:
        die(f"scripts/services.sh start {SERVICES_SET} failed")
    env_file = REPO / ".run" / SERVICES_SET / "env"
    url = re.search(r"^DATABASE_URL=(.*)$", env_file.read_text(), re.M).group(1)
    redis_url = re.search(r"^REDIS_URL=(.*)$", env_file.read_text(), re.M).group(1)
    if subprocess.run(["scripts/migrate.sh", url], cwd=REPO, timeout=120).returncode != 0:
        die("migration failed")
    conf = conf_values(CONF)
    if args.redis_port or args.pg_port:
        SERVICES_ENV.update({"REDIS_URL": redis_url, "DATABASE_URL": url})
        log(f"bench services on {redis_url} and {url}, given to chatd instead of bench.conf's")
    elif str(conf.get("database_url", "")) != url or str(conf.get("redis_url", "")) != redis_url:
        die(f"bench.conf's database_url and redis_url are not the bench services' {url} and "
            f"{redis_url} (started with other ports? then give --redis-port and --pg-port)")
    # Every session starts from an empty bench Redis (its own set, port
    # 6392; nothing else uses it): otherwise the idempotency keys of earlier
    # sessions (24 h TTL) pile up to hundreds of MB and AOF rewrites of that
    # size fork in the middle of runs. The bench database's tables are
    # emptied too: a session's 5-10 million rows made every later session's
    # sync insert ~1.5 times as costly (deeper indexes), which drifted the
    # figures from session to session.
    port = redis_port()
    for cmd in (["FLUSHDB"], ["BGREWRITEAOF"]):
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, *cmd], cwd=REPO,
                       timeout=60, stdout=subprocess.DEVNULL, check=True)
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c",
                    "TRUNCATE room_events, messages, room_members, rooms"],
                   cwd=REPO, timeout=120, stdout=subprocess.DEVNULL, check=True)
    time.sleep(1)
    LOG_DIR.mkdir(parents=True, exist_ok=True)


def parse_args():
    p = argparse.ArgumentParser(description="chatd benchmark (bench/README.md)")
    p.add_argument("--quick", action="store_true", help="a 1-2 minute version")
    p.add_argument("--only", help="comma list of S1,S1sse,light,S2,chatty,S3,S3x2 (S3x2: "
                                  "not in --quick)")
    p.add_argument("--s1-rates", help="comma list of S1 rates, msgs/s")
    p.add_argument("--sse-rates", help="comma list of S1sse rates, msgs/s (S1's); S1 runs "
                                       "beside at each unless the S1 sweep had it")
    p.add_argument("--chatty-rate", type=int, default=1000,
                   help="msgs/s of the chatty room's senders (1000); S1 runs at it beside")
    p.add_argument("--chatty-people", type=int, default=100,
                   help="connections of the chatty room who type and read (100)")
    p.add_argument("--chatty-senders", type=int, default=10,
                   help="connections of the chatty room who send (10)")
    p.add_argument("--chatty-control", action="store_true",
                   help="run the chatty room without people too (its senders alone)")
    p.add_argument("--s3-conns", type=int, help="idle connections for S3")
    p.add_argument("--s3x2-conns", type=int, default=38000,
                   help="idle connections for S3x2 (two workers, two loadgens)")
    p.add_argument("--repeat", type=int, default=None,
                   help="runs of each S1/light/S2/chatty point (3; --quick: 1)")
    p.add_argument("--port", type=int, default=None, help="chatd's port (bench.conf's)")
    p.add_argument("--redis-port", type=int, default=None,
                   help="run the bench Redis on this port instead of 6392 (another checkout's "
                        "bench set holds it); chatd is given its URL")
    p.add_argument("--pg-port", type=int, default=None,
                   help="the same for the bench PostgreSQL (5442)")
    p.add_argument("--wait-quiet", type=float, default=60,
                   help="seconds (per session) to wait for other processes to calm down")
    p.add_argument("--perf", default="",
                   help="comma list of scenarios to profile with perf record (-g)")
    p.add_argument("--perf-callgraph", default="fp", metavar="MODE",
                   help="perf record's --call-graph: fp (default), or dwarf to see "
                        "callers through libc and the libraries (larger data)")
    p.add_argument("--chatd", metavar="PATH",
                   help="run this chatd binary instead of build/chatd (A/B runs; recorded "
                        "with its sha1 in results.jsonl)")
    p.add_argument("--note", help="a note stored with each run of the session (e.g. ab-old)")
    p.add_argument("--chatd-log-level", choices=("debug", "info", "warn", "error"),
                   help="chatd's log level instead of bench.conf's warn (info: a line per slow "
                        "consumer and per event stream ended; build/bench/chatd-*.log)")
    p.add_argument("--viewers", type=int, default=0, metavar="N",
                   help="keep N dashboard viewers (SSE clients of /api/monitoring/stream) "
                        "open during every run; recorded as `viewers` in results.jsonl")
    p.add_argument("--report", nargs="?", const="last", metavar="SESSION",
                   help="print the table of a session in bench/results.jsonl (the last)")
    a = p.parse_args()
    a.perf = set(a.perf.split(",")) if a.perf else set()
    if a.s1_rates:
        a.s1_rates = [int(x) for x in a.s1_rates.split(",")]
    else:
        a.s1_rates = [1000, 5000] if a.quick else [250, 500, 1000, 2000, 5000]
    a.sse_rates = [int(x) for x in a.sse_rates.split(",")] if a.sse_rates else a.s1_rates
    if a.repeat is None:
        a.repeat = 1 if a.quick else 3
    if a.s3_conns is None:
        a.s3_conns = 5000 if a.quick else 19000
    if a.port is None:
        a.port = conf_values(CONF)["port"]
    return a


def report(session):
    lines = [json.loads(x) for x in RESULTS.read_text().splitlines() if x.strip()]
    if not lines:
        die("bench/results.jsonl is empty")
    if session == "last":
        session = lines[-1]["session"]
    runs = [r for r in lines if r.get("session") == session]
    if not runs:
        die(f"no session {session} in bench/results.jsonl")
    print(markdown(runs))


def main():
    global CHATD, CHATD_LOG_LEVEL
    args = parse_args()
    CHATD_LOG_LEVEL = args.chatd_log_level
    if args.chatd:
        CHATD = Path(args.chatd).resolve()
    if args.report:
        report(args.report)
        return
    prepare(args)
    t0 = time.monotonic()
    Bench(args).main()
    log(f"done in {time.monotonic() - t0:.0f} s; results appended to "
        f"{RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
