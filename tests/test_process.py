"""The process model: a worker dies, the server drains, the shared counters."""

import asyncio
import os
import signal
import time

from chatd_harness import (Client, connect_on_distinct_workers, connect_on_worker,
                           eventually_async, make_room, run)


def parent_of(pid):
    assert isinstance(pid, int) and pid > 1, pid  # never kill(0) or kill(-1)
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_killed_worker_is_replaced_and_others_do_not_notice(make_server, tenant):
    srv = make_server(workers=2)

    async def main():
        victim, talker = await connect_on_distinct_workers(srv, 2, tenant, ["victim", "talker"])
        listener = await connect_on_worker(srv, talker.worker, "listener", tenant)
        room = await make_room(talker, listener, victim)
        old_pid = srv.worker_pids()[victim.worker]
        assert parent_of(old_pid) == srv.pid, f"worker pid {old_pid} is not chatd's child"

        os.kill(old_pid, signal.SIGKILL)
        await victim.wait_closed(10)
        ack = await talker.say(room, "after the kill")
        for client in (talker, listener):
            frame = await client.next_event("message:new")
            assert frame["seq"] == ack["seq"] and frame["msg"]["body"] == "after the kill"
            assert client.ws.open and client.buffered("error") == [], client

        def replaced():
            pid = srv.check_workers_ready()[victim.worker]
            assert pid != old_pid, f"worker {victim.worker} still has pid {pid}"
        await eventually_async(replaced, timeout=10, what="a new worker, ready")

        newcomer = await connect_on_worker(srv, victim.worker, "newcomer", tenant)
        joined = await newcomer.ok("room:join", room=room)
        assert joined["last_seq"] == ack["seq"]
        ack = await talker.say(room, "welcome back")
        assert (await newcomer.next_event("message:new"))["seq"] == ack["seq"]
    run(main())


def test_sigterm_drains_all_clients_with_1001(make_server, tenant):
    drain_s = 5
    srv = make_server(workers=2, drain_timeout_ms=drain_s * 1000)

    async def main():
        clients = []
        for batch in range(4):
            clients += await asyncio.gather(*(Client.connect(srv, f"u{batch}-{i}", tenant)
                                              for i in range(25)))
        assert len({c.worker for c in clients}) == 2
        started = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(c.wait_closed(drain_s + 5) for c in clients))
        assert codes == [1001] * len(clients)
        return started

    started = run(main())
    rc = srv.wait(max(started + drain_s + 5 - time.monotonic(), 0))
    assert rc == 0, f"exit code {rc} (None: still running) after SIGTERM"


def test_monitoring_counts_connections_across_workers(make_server, tenant):
    srv = make_server(workers=2)

    def active_connections(n):
        def check():
            stats = srv.monitoring()
            per_worker = sum(w["connections"] for w in stats["workers"])
            assert (stats["connections"]["active"], per_worker) == (n, n), stats
            return stats
        return check

    async def main():
        clients = await connect_on_distinct_workers(srv, 2, tenant)
        clients += [await Client.connect(srv, f"user{i}", tenant) for i in range(2, 10)]
        room = await make_room(clients[0])
        await clients[0].say(room, "counted")
        await eventually_async(active_connections(10), what="10 active connections")
        for client in clients:
            await client.close()
        return await eventually_async(active_connections(0), what="no active connections")

    stats = run(main())
    assert any(stats.get(k, -1) >= 0 for k in ("uptime", "uptime_s")), stats
    assert stats["connections"]["total"] >= 10
    workers = sorted(stats["workers"], key=lambda w: w["index"])
    assert [w["index"] for w in workers] == [0, 1]
    assert all(w["pid"] > 0 and w["pid"] != srv.pid for w in workers), workers
    for key in ("rooms", "deliveries"):
        assert key in stats, key
    assert stats["messages"]["sent"] >= 1
    assert set(stats["redis"]) >= {"connected", "last_ping_ms", "errors", "reconnects"}
    assert stats["redis"]["connected"] is True
    assert set(stats["sync"]) >= {"synced", "failed", "lag"}


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_file_descriptors_pauses_accepting_and_recovers(make_server, tenant):
    # 100 open files per process (soft and hard, so chatd cannot raise it):
    # the worker runs out after some tens of connections.
    srv = make_server(workers=1, prefix=["prlimit", "--nofile=100:100", "--"])
    assert "open files limited to 100 per process" in srv.log()
    worker = srv.worker_pids()[0]

    async def main():
        clients, waiting = [], None
        for i in range(100):
            attempt = asyncio.ensure_future(Client.connect(srv, f"u{i}", tenant, timeout=20))
            done, _ = await asyncio.wait({attempt}, timeout=2)
            if not done:
                waiting = attempt      # in the listen backlog: no descriptor for it
                break
            clients.append(attempt.result())
        assert waiting is not None, "100 connections with 100 open files"
        assert len(clients) >= 20, f"only {len(clients)} connections before the limit"

        # Waiting for a descriptor must not spin: the listening socket stays
        # readable, and accepting again at once would fail again at once.
        cpu0 = cpu_seconds(worker)
        await asyncio.sleep(1.0)
        used = cpu_seconds(worker) - cpu0
        assert used < 0.3, f"the worker used {used:.2f} CPU s in 1 s at the file limit"
        warnings = [line for line in srv.log().splitlines() if "accept: Too many open files" in line]
        assert 1 <= len(warnings) <= 2, warnings

        # A descriptor comes free: the waiting connection gets its hello,
        # and the ones before it were not disturbed.
        await clients.pop().close()
        late = await asyncio.wait_for(waiting, 10)
        room = await make_room(clients[0], late)
        ack = await late.say(room, "made it")
        assert (await clients[0].next_event("message:new"))["seq"] == ack["seq"]
        await late.close()
        for client in clients:
            await client.close()

    run(main(), timeout=60)
    assert srv.monitoring()["connections"]["accept_paused"] >= 1
