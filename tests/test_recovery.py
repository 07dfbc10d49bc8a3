"""Backends come and go: a Redis restart, a PostgreSQL outage, a flushed
Redis. Chat recovers by itself and no acked message is lost.

These tests stop and start the shared test services; each restores them in a
finally block (scripts/services.sh start-* is idempotent)."""

import asyncio
import json
import time

from chatd_harness import (Session, as_record, describe_difference, eventually, eventually_async,
                           http_get, make_room, message_events, pg_messages, record, redis_client,
                           run, seqs, services)


def ready_status(srv):
    status, _, body = http_get(srv.port, "/ready", timeout=2)
    return status, json.loads(body)


def wait_ready_status(srv, want, timeout, what):
    """Poll /ready until `want` answers several times in a row (each request
    may land on another worker)."""
    streak = [0]

    def check():
        status, body = ready_status(srv)
        if status != want:
            streak[0] = 0
            raise AssertionError(f"/ready answered {status} {body}")
        streak[0] += 1
        assert streak[0] >= 4, "not yet four in a row"
        return body
    return eventually_async(check, timeout=timeout, interval=0.05, what=what)


def sync_group():
    """(pending, lag) of the sync group as Redis itself reports them (lag may
    be None when Redis cannot tell)."""
    with redis_client() as r:
        groups = [g for g in r.xinfo_groups("chatd:sync") if g["name"] == b"chatd"]
        pending = r.xpending("chatd:sync", "chatd")
    return pending, (groups[0].get("lag") if groups else None)


def wait_sync_idle(srv, timeout=20):
    """Nothing waits in the sync stream: monitoring's lag and pending are 0,
    and so are Redis' own figures (monitoring is refreshed once a second, so
    a new server reports 0 before it has measured anything)."""
    def idle():
        sync = srv.monitoring()["sync"]
        pending, lag = sync_group()
        assert sync["lag"] == 0 and sync["pending"] == 0 and pending["pending"] == 0 and \
            lag in (0, None), f"monitoring {sync}; Redis: lag {lag}, pending {pending}"
        return sync
    return eventually(idle, timeout=timeout, interval=0.2, what="sync backlog drained")


class SteadySender:
    """Sends one message every `pace` seconds, retrying an `unavailable` one
    with the same client_msg_id (as a client would) until it is acked.
    Records every reply with the phase at send and reply time."""

    def __init__(self, session, room, pace=0.02):
        self.session = session
        self.room = room
        self.pace = pace
        self.phase = "before"
        self.acks = {}            # client_msg_id -> ack
        self.ack_phase = {}       # client_msg_id -> phase when the acked request was sent
        self.bodies = {}
        self.replies = []         # (client_msg_id, phase at send, phase at reply, reply)
        self.stopping = False
        self.changed = asyncio.Event()
        self.task = None

    def start(self):
        self.task = asyncio.ensure_future(self._run())
        return self

    async def _run(self):
        i = 0
        while not self.stopping:
            i += 1
            cmid, body = f"s-{i}", f"steady {i}"
            self.bodies[cmid] = body
            while True:
                sent_phase = self.phase
                reply = await self.session.request("message:send", timeout=8, room=self.room,
                                                   body=body, client_msg_id=cmid)
                self.replies.append((cmid, sent_phase, self.phase, reply))
                self.changed.set()
                if reply.get("type") == "ack":
                    self.acks[cmid] = reply
                    self.ack_phase[cmid] = sent_phase
                    break
                assert reply.get("code") == "unavailable", f"{cmid}: {reply}"
                await asyncio.sleep(self.pace * 5)
            await asyncio.sleep(self.pace)

    def count(self, pred):
        return sum(1 for r in self.replies if pred(*r))

    async def until(self, pred, n, timeout, what):
        """Until n recorded replies satisfy pred(cmid, sent_phase, reply_phase, reply).
        A sender that failed (say a send never answered) fails this wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.count(pred) < n:
            if self.task.done():
                self.task.result()
                raise AssertionError(f"sender stopped before {what}")
            self.changed.clear()
            changed = asyncio.ensure_future(self.changed.wait())
            await asyncio.wait([changed, self.task], timeout=max(deadline - loop.time(), 0),
                               return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            if not self.changed.is_set() and not self.task.done():
                raise AssertionError(f"{what}: {self.count(pred)} of {n} within {timeout}s; "
                                     f"last replies {[r[3] for r in self.replies[-3:]]}")

    async def stop(self):
        self.stopping = True
        await asyncio.wait_for(self.task, 30)


def is_ack(cmid, sent, replied, reply):
    return reply.get("type") == "ack"


# -------------------------------------------------------- 2. Redis restart

def test_redis_restart_mid_stream(make_server, tenant):
    srv = make_server()

    async def main():
        alice = await Session.open(srv, "alice", tenant, keep_events=False)
        bob = await Session.open(srv, "bob", tenant)
        room = await make_room(alice, bob)
        sender = SteadySender(alice, room).start()
        await sender.until(is_ack, 20, 10, "acks before the outage")

        await asyncio.to_thread(services, "stop-redis")
        sender.phase = "down"
        body = await wait_ready_status(srv, 503, 10, "/ready 503 while Redis is down")
        assert body["redis"] is False, body
        await sender.until(lambda c, s, r, reply: s == r == "down", 5, 10,
                           "replies to sends made while Redis is down")
        sender.phase = "starting"
        await asyncio.to_thread(services, "start-redis")
        sender.phase = "up"
        await wait_ready_status(srv, 200, 15, "/ready 200 after Redis is back")
        await sender.until(lambda c, s, r, reply: s == "up" and is_ack(c, s, r, reply), 20, 15,
                           "acks after the restart")
        await sender.stop()

        # While Redis was down, nothing was acked: only `unavailable`.
        during = [reply for c, s, r, reply in sender.replies if s == r == "down"]
        assert during and all(reply.get("code") == "unavailable" for reply in during), \
            [x for x in during if x.get("code") != "unavailable"][:3]
        acks = sender.acks
        expected = record(acks, sender.bodies)
        # No acked message lost, no seq reused or skipped (unacked resends
        # answer the first ack).
        acked_seqs = [e[0] for e in expected]
        assert acked_seqs == list(range(1, len(expected) + 1)), \
            f"acked seqs skip {sorted(set(range(1, acked_seqs[-1] + 1)) - set(acked_seqs))}"

        # A fresh reader sees every acked message.
        carol = await Session.open(srv, "carol", tenant)
        joined = await carol.ok("room:join", room=room, since=0, timeout=15)
        got = as_record(joined["events"])
        assert got == expected, "room:join since 0: " + describe_difference(got, expected)
        paged, after = [], 0
        for _ in range(20):
            page = await carol.ok("message:history", room=room, after=after, limit=100)
            paged += page["events"]
            if not page["has_more"] or not page["events"]:
                break
            after = page["events"][-1]["seq"]
        assert as_record(paged) == expected, "history: " + describe_difference(as_record(paged),
                                                                               expected)
        # Bob stayed connected: he has every message, in order, once, and
        # certainly those sent after the restart.
        assert not bob.lost, "bob's connection was closed"
        last = expected[-1][0]
        await bob.wait_event(lambda f: f.get("seq") == last, 10, f"message {last}")
        await bob.settle()
        gaps = [f for f in bob.events if f.get("type") == "room:gap"]
        seen = as_record(message_events(bob.events, room))
        after_restart = [e for e in expected if sender.ack_phase[e[2]] == "up"]
        missing = [e[0] for e in after_restart if e not in seen]
        assert not missing, f"bob missed {len(missing)} messages sent after the restart: " \
            f"{missing[:10]}; " + describe_difference(seen, expected)
        assert seen == expected, "bob: " + describe_difference(seen, expected) + \
            f"; room:gap frames {gaps}"
        return room, expected, gaps

    try:
        room, expected, gaps = run(main(), timeout=90)
    finally:
        services("start-redis")

    def in_postgres():
        rows = pg_messages(tenant, room)
        assert rows == expected, describe_difference(rows, expected)
    eventually(in_postgres, timeout=15, what="every acked message in PostgreSQL")
    # Every worker's sync consumer is back: nothing stays pending (a batch
    # read just before the restart is written again and acknowledged).
    wait_sync_idle(srv, timeout=20)
    # Nothing was sent while Redis was down: bob missed nothing, so there is
    # no gap to report (checked last: the checks above say more).
    assert not gaps, f"bob got {gaps} though he missed nothing (outage without messages)"


# ---------------------------------------------------- 3. PostgreSQL outage

OUTAGE_S = 10


def test_postgres_outage_chat_goes_on(make_server, tenant):
    srv = make_server()

    async def main():
        alice = await Session.open(srv, "alice", tenant, keep_events=False)
        bob = await Session.open(srv, "bob", tenant)
        carol = await Session.open(srv, "carol", tenant)
        room = await make_room(alice, bob)  # joins need PostgreSQL
        sender = SteadySender(alice, room).start()
        await sender.until(is_ack, 20, 10, "acks before the outage")
        try:
            await asyncio.to_thread(wait_sync_idle, srv)
        except AssertionError as e:
            raise AssertionError(f"a sync backlog from before this test: {e}") from None

        await asyncio.to_thread(services, "stop-pg")
        stopped = time.monotonic()
        sender.phase = "down"
        await wait_ready_status(srv, 503, 8, "/ready 503 while PostgreSQL is down")

        def backlog():
            sync = srv.monitoring()["sync"]
            assert sync["lag"] > 0 or sync["pending"] > 0, sync
        await eventually_async(backlog, timeout=8, interval=0.2, what="sync lag above 0")
        acked_before = sender.count(is_ack)
        n_bob = len(bob.events)
        # A join needs PostgreSQL: it is refused at once, retryable.
        reply = await carol.request("room:join", 5, room=room)
        assert reply.get("type") == "error" and reply.get("code") == "unavailable", reply
        # The outage lasts OUTAGE_S: its length is the point, not a wait for an event.
        await asyncio.sleep(max(OUTAGE_S - (time.monotonic() - stopped), 0))
        assert sender.count(is_ack) - acked_before >= 50, "chat stalled during the outage"
        assert len(bob.events) - n_bob >= 50, "bob received nothing during the outage"
        sender.phase = "starting"
        await asyncio.to_thread(services, "start-pg")
        sender.phase = "up"
        await wait_ready_status(srv, 200, 15, "/ready 200 after PostgreSQL is back")
        await sender.until(lambda c, s, r, reply: s == "up" and is_ack(c, s, r, reply), 20, 15,
                           "acks after the restart")
        joined = await carol.ok("room:join", room=room)
        assert joined["role"] == "member", joined
        await sender.stop()

        failed = [(c, reply) for c, s, r, reply in sender.replies if reply.get("type") != "ack"]
        assert not failed, f"{len(failed)} sends failed, e.g. {failed[:3]}"
        expected = record(sender.acks, sender.bodies)
        assert [e[0] for e in expected] == list(range(1, len(expected) + 1))
        last = expected[-1][0]
        await bob.wait_event(lambda f: f.get("seq") == last, 10, f"message {last}")
        await bob.settle()
        seen = as_record(message_events(bob.events, room))
        assert seen == expected, "bob: " + describe_difference(seen, expected)
        return room, expected

    try:
        room, expected = run(main(), timeout=90)
    finally:
        services("start-pg")

    # The backlog drains (lag counts the whole sync group, shared with any
    # other chatd on this Redis).
    wait_sync_idle(srv, timeout=30)

    def in_postgres():
        rows = pg_messages(tenant, room)
        assert rows == expected, describe_difference(rows, expected)
    eventually(in_postgres, timeout=15, what="every acked message in PostgreSQL")


# ------------------------------------------------------------ 4. FLUSHALL

def test_flushall_seq_continues_from_postgres(make_server, tenant):
    srv = make_server()

    async def main():
        alice = await Session.open(srv, "alice", tenant, keep_events=False)
        bob = await Session.open(srv, "bob", tenant)
        room_a = await make_room(alice, bob)
        room_b = await make_room(alice)
        acks = {}
        for room in (room_a, room_b):
            for i in range(1, 6):
                acks[(room, i)] = await alice.ok("message:send", room=room, body=f"{room} {i}",
                                                 client_msg_id=f"c-{i}")

        def synced():
            for room in (room_a, room_b):
                assert [r[0] for r in pg_messages(tenant, room)] == [1, 2, 3, 4, 5], room
        await eventually_async(synced, timeout=15, what="both rooms synced")
        # FLUSHALL drops the whole sync stream: let other rooms' events reach
        # PostgreSQL first (best effort; a backlog that never drains is the
        # business of the test that left it).
        try:
            await asyncio.to_thread(wait_sync_idle, srv, 10)
        except AssertionError:
            pass
        await asyncio.to_thread(lambda: redis_client().flushall())

        # Room A: the next send on the existing connection continues at 6.
        ack = await alice.ok("message:send", room=room_a, body="after flush", client_msg_id="c-6")
        assert ack["seq"] == 6, ack
        frame = await bob.wait_event(lambda f: f.get("seq") == 6, 5, "message 6")
        assert frame["msg"]["id"] == ack["msg_id"], frame

        # Room B: a reader first (history from PostgreSQL), then a send.
        carol = await Session.open(srv, "carol", tenant)
        joined = await carol.ok("room:join", room=room_b, since=0)
        assert joined["last_seq"] == 5 and seqs(joined["events"]) == [1, 2, 3, 4, 5], joined
        ack_b = await alice.ok("message:send", room=room_b, body="after flush",
                               client_msg_id="c-6")
        assert ack_b["seq"] == 6, ack_b
        frame = await carol.wait_event(lambda f: f.get("type") == "message:new", 5, "message 6")
        assert frame["seq"] == 6 and frame["msg"]["id"] == ack_b["msg_id"], frame

        # Both rooms read back whole, and keep going.
        dave = await Session.open(srv, "dave", tenant)
        joined = await dave.ok("room:join", room=room_a, since=0)
        assert seqs(joined["events"]) == [1, 2, 3, 4, 5, 6], joined
        assert joined["events"][0]["msg"]["id"] == acks[(room_a, 1)]["msg_id"]
        ack = await alice.ok("message:send", room=room_a, body="seven", client_msg_id="c-7")
        assert ack["seq"] == 7, ack
        return room_a, room_b

    room_a, room_b = run(main(), timeout=60)

    def in_postgres():
        assert [r[0] for r in pg_messages(tenant, room_a)] == [1, 2, 3, 4, 5, 6, 7]
        assert [r[0] for r in pg_messages(tenant, room_b)] == [1, 2, 3, 4, 5, 6]
    eventually(in_postgres, timeout=15, what="the new messages in PostgreSQL")
