"""The monitoring dashboard (/monitoring) in a real browser.

Headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core from
npm (scripts/web, installed by `make`), through tests/browser/dashboard.mjs,
which prints JSON lines. The page may reach nothing but the chatd under test:
every other request is blocked and reported.

- With a chat load running on a 2-worker chatd: the charts show messages/s
  above 0, the worker table has 2 rows, no console error, no page error, no
  request to another host; screenshots at 1280x800 and 390x844.
- chatd stopped (SIGTERM) and started again on the same port: the page shows
  "reconnecting", then live figures from the new workers.

Screenshots: build/test-output/dashboard/*.png.
"""

import asyncio
import json
import queue
import shutil
import subprocess
import threading
import time

import pytest

from chatd_harness import REPO, Client, make_room

NODE = shutil.which("node") or "/usr/bin/node"
CHROMIUM = "/usr/bin/chromium"
SCRIPT = REPO / "tests" / "browser" / "dashboard.mjs"
PLAYWRIGHT = REPO / "scripts" / "web" / "node_modules" / "playwright-core"
OUT = REPO / "build" / "test-output" / "dashboard"
WAIT_S = 40          # each wait of the browser script
RUN_S = 150          # the whole browser script


@pytest.fixture(autouse=True)
def browser_tools():
    missing = [what for what, ok in (
        (f"node ({NODE})", shutil.which(NODE) is not None),
        (f"{CHROMIUM} (scripts/deps.sh installs Debian's chromium)", shutil.which(CHROMIUM) is not None),
        (f"{PLAYWRIGHT} (run make: npm ci --prefix scripts/web)", PLAYWRIGHT.is_dir()),
    ) if not ok]
    if missing:
        pytest.fail("dashboard test needs: " + "; ".join(missing), pytrace=False)


class ChatLoad:
    """A few WebSocket clients in one room, each sending a message every
    0.2 s, in a thread of its own, until stop(). Survives chatd restarting
    (the clients connect again)."""

    def __init__(self, server, tenant, users=3, period=0.2):
        self.server, self.tenant, self.users, self.period = server, tenant, users, period
        self.sent = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(20)
        assert not self._thread.is_alive(), "chat load did not stop"

    async def _session(self):
        clients = [await Client.connect(self.server, f"u{i}", self.tenant)
                   for i in range(self.users)]
        try:
            room = await make_room(clients[0], *clients[1:])
            n = 0
            while not self._stop.is_set():
                for c in clients:
                    await c.say(room, f"load {n}")
                    c.frames.clear()   # deliveries are not what this load checks
                    self.sent += 1
                    n += 1
                await asyncio.sleep(self.period)   # pacing, not synchronisation
        finally:
            for c in clients:
                try:
                    await c.close()
                except Exception:
                    pass

    async def _main(self):
        while not self._stop.is_set():
            try:
                await self._session()
            except Exception as e:  # chatd restarting: connect again
                self.errors.append(repr(e))
                await asyncio.sleep(0.5)


class Browser:
    """tests/browser/dashboard.mjs as a child process; its JSON lines are
    read by a thread so that every wait for one is bounded."""

    def __init__(self, url, mode, out):
        self.lines = queue.Queue()
        self.stderr = []
        self.proc = subprocess.Popen(
            [NODE, str(SCRIPT), "--url", url, "--out", str(out), "--mode", mode,
             "--timeout", str(WAIT_S), "--workers", "2", "--chromium", CHROMIUM],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True).start()
        self.deadline = time.monotonic() + RUN_S

    def _read(self, stream, is_stdout):
        for line in stream:
            if is_stdout:
                try:
                    self.lines.put(json.loads(line))
                except ValueError:
                    self.stderr.append(line)
            else:
                self.stderr.append(line)
        if is_stdout:
            self.lines.put(None)

    def next(self, phase):
        """The next line of the script, which must be `phase` (or its result)."""
        try:
            msg = self.lines.get(timeout=max(self.deadline - time.monotonic(), 0.1))
        except queue.Empty:
            self.kill()
            pytest.fail(f"browser script: no '{phase}' within {RUN_S}s; stderr: "
                        f"{''.join(self.stderr)[-2000:]}", pytrace=False)
        if msg is None:
            pytest.fail(f"browser script ended before '{phase}' (rc {self.proc.wait(5)}): "
                        f"{''.join(self.stderr)[-2000:]}", pytrace=False)
        if msg.get("phase") == "result" and phase != "result":
            pytest.fail(f"browser script failed waiting for '{phase}': {json.dumps(msg, indent=1)[:4000]}",
                        pytrace=False)
        assert msg.get("phase") == phase, msg
        return msg

    def result(self):
        res = self.next("result")
        try:
            self.proc.wait(max(self.deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            self.kill()
        print(f"browser result: {json.dumps(res)[:3000]}")
        assert res["ok"], f"browser script: {json.dumps(res, indent=1)[:4000]}"
        return res

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def nothing_off_loopback(res):
    assert res["blocked"] == [], f"requests to other hosts: {res['blocked']}"
    assert res["page_errors"] == [], res["page_errors"]


def test_dashboard_shows_live_load(make_server, tenant):
    srv = make_server(workers=2)
    out = OUT
    for name in ("desktop.png", "phone.png"):
        (out / name).unlink(missing_ok=True)
    load = ChatLoad(srv, tenant).start()
    try:
        browser = Browser(srv.url, "steady", out)
        res = browser.result()
    finally:
        load.stop()
    nothing_off_loopback(res)
    assert res["console_errors"] == [], res["console_errors"]
    assert res["failed"] == [], f"failed requests: {res['failed']}"
    for view in ("desktop", "phone"):
        s = res[view]
        assert s["msg_rate"] > 0, s
        assert s["worker_rows"] == 2 and len(s["pids"]) == 2, s
        assert s["charts"] >= 6, s
        # Readable on a phone: nothing wider than the screen.
        assert s["scroll_width"] <= s["client_width"] + 1, (view, s)
    assert load.sent > 0
    for name in ("desktop", "phone"):
        path = res["screenshots"][name]
        assert (out / f"{name}.png").stat().st_size > 10_000, path
        print(f"screenshot: {path}")


def test_dashboard_survives_chatd_restart(make_server, tenant):
    first = make_server(workers=2)
    old_pids = set(first.worker_pids().values())
    load = ChatLoad(first, tenant).start()
    try:
        browser = Browser(first.url, "restart", OUT)
        live = browser.next("live")
        assert set(live["pids"]) == old_pids, live
        assert first.stop() == 0            # SIGTERM: a clean stop
        browser.next("reconnecting")
        second = make_server(workers=2, port=first.port)
        load.server = second
        again = browser.next("live-again")
        res = browser.result()
    finally:
        load.stop()
    new_pids = set(second.worker_pids().values())
    assert set(again["pids"]) == new_pids and not new_pids & old_pids, (again, old_pids, new_pids)
    nothing_off_loopback(res)
    assert "reconnecting" in res["during"]["pill"], res["during"]
    # While chatd was down the browser logs the stream's failed connections;
    # nothing else may go wrong.
    others = [e for e in res["console_errors"]
              if "/api/monitoring/" not in e["url"] and "net::ERR_" not in e["text"]]
    assert others == [], res["console_errors"]
    print(f"screenshots: {res['screenshots']}")
