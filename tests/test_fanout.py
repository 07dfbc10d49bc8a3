"""Fan-out of bursts. The events Redis delivers for a room during one loop
turn are framed once into a shared batch, queued by reference to every
subscriber and written with one socket write per connection; a join that
completes while a batch is open gets only the events after its history; a
client that sends many frames at once is read on within the turn.

What a user must see whatever the batching: every seq once, in order, with
the body that was sent, across history and live frames, and after a
room:gap and the re-join it asks for.
"""

import asyncio
import json

from chatd_harness import (Client, Session, as_record, connect_from, connect_on_worker,
                           connect_where, drop_waiters, eventually_async, make_room, run, seqs)

PATTERN = 'ab"c\\dé✓ '


def body_for(tag, i):
    """Bodies of varying length (frames on both sides of the 125/126-byte
    header boundary) with quotes, backslashes and non-ASCII text, so the
    frames packed into one batch differ in size and escaping."""
    return f"{tag} {i} " + (PATTERN * 40)[: i % 280]


def output_figures(server):
    """(deliveries, output.socket_writes, output.bytes) of the whole server."""
    m = server.monitoring()
    return m["deliveries"], m["output"]["socket_writes"], m["output"]["bytes"]


async def pipeline_sends(client, room, items):
    """One message:send per (client_msg_id, body), written back to back on
    the raw WebSocket without waiting for any reply; the request id is the
    client_msg_id."""
    for cmid, body in items:
        await asyncio.wait_for(client.ws.send(json.dumps(
            {"type": "message:send", "id": cmid, "room": room, "client_msg_id": cmid,
             "body": body})), 5)


async def collect_replies(client, ids, timeout):
    """{id: reply} for every request id in ids; other frames stay buffered
    in client.frames, in arrival order."""
    want = set(ids)
    got = {}
    keep = []
    for frame in client.frames:
        if frame.get("id") in want and frame["id"] not in got:
            got[frame["id"]] = frame
        else:
            keep.append(frame)
    client.frames[:] = keep
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < len(want):
        try:
            raw = await asyncio.wait_for(client.ws.recv(), max(deadline - loop.time(), 0))
        except asyncio.TimeoutError:
            raise AssertionError(f"{client}: {len(got)} of {len(want)} replies within "
                                 f"{timeout}s") from None
        frame = json.loads(raw)
        rid = frame.get("id")
        if rid in want:
            assert rid not in got, f"{client}: two replies to {rid}: {got[rid]} and {frame}"
            got[rid] = frame
        else:
            client.frames.append(frame)
    return got


def check_events(who, events, room, user, expected, first, last):
    """events are exactly seqs first..last of room, once each, in order, each
    the message expected[seq] = (msg_id, client_msg_id, body) sent by user."""
    got = seqs(events)
    want = list(range(first, last + 1))
    if got != want:
        dups = sorted({s for s in got if got.count(s) > 1})[:10]
        missing = sorted(set(want) - set(got))
        disorder = [(a, b) for a, b in zip(got, got[1:]) if b <= a][:5]
        raise AssertionError(f"{who}: {len(got)} events, want seqs {first}..{last}; "
                             f"duplicates {dups}; missing {missing[:10]} ({len(missing)}); "
                             f"out of order {disorder}; first {got[:5]} last {got[-5:]}")
    for e in events:
        assert e["type"] == "message:new" and e["room"] == room, f"{who}: {e}"
        assert e["msg"]["seq"] == e["seq"] and e["msg"]["user"] == user, f"{who}: {e}"
    assert as_record(events) == [(s, *expected[s]) for s in want], \
        f"{who}: ids or bodies differ from what was sent"


def record_acks(items, replies):
    """{seq: (msg_id, client_msg_id, body)} from [(cmid, body)] and their acks."""
    bad = [r for r in replies.values() if r.get("type") != "ack"]
    assert not bad, f"{len(bad)} sends not acked, e.g. {bad[:3]}"
    return {replies[cmid]["seq"]: (replies[cmid]["msg_id"], cmid, body) for cmid, body in items}


# ------------------------------------------------------- 1. pipelined burst

async def check_everyone_got(everyone, received, room, expected, n):
    """received[i] are everyone[i]'s message:new frames: seqs 1..n of the
    sender's acked messages, each once, in order, and nothing more after."""
    for client, frames in zip(everyone, received):
        check_events(repr(client), frames, room, "sender", expected, 1, n)
    for client in everyone:
        await client.settle()
        extra = client.buffered("message:new")
        assert extra == [], f"{client}: {len(extra)} more message:new, e.g. {extra[:2]}"


BURST = 1500
SUBSCRIBERS = 20


def test_pipelined_burst_reaches_every_subscriber_batched(server, tenant):
    async def main():
        workers = server.workers
        sender = await connect_on_worker(server, 0, "sender", tenant)
        subs = [await connect_where(server, lambda w, i=i: w == i % workers, f"sub{i}", tenant)
                for i in range(SUBSCRIBERS)]
        assert {c.worker for c in subs} == set(range(workers)), [c.worker for c in subs]
        room = await make_room(sender, *subs)
        everyone = [sender, *subs]
        for c in everyone:
            await c.settle()
        before = output_figures(server)

        items = [(f"c{i}", body_for("burst", i)) for i in range(BURST)]
        await pipeline_sends(sender, room, items)
        replies = await collect_replies(sender, [cmid for cmid, _ in items], timeout=30)
        expected = record_acks(items, replies)
        assert sorted(expected) == list(range(1, BURST + 1)), "seqs not 1..BURST, distinct"
        # Seq order is send order: one connection's requests run in order.
        assert [replies[cmid]["seq"] for cmid, _ in items] == list(range(1, BURST + 1))

        received = await asyncio.gather(*(c.collect("message:new", BURST, timeout=30)
                                          for c in everyone))
        after = output_figures(server)
        await check_everyone_got(everyone, received, room, expected, BURST)

        deliveries = after[0] - before[0]
        writes = after[1] - before[1]
        out_bytes = after[2] - before[2]
        assert deliveries == len(everyone) * BURST, \
            f"deliveries grew {deliveries}, want {len(everyone)} x {BURST}"
        body_bytes = sum(len(body.encode()) for _, body in items) * len(everyone)
        assert out_bytes > body_bytes, f"output.bytes grew {out_bytes} < {body_bytes} of bodies"
        assert writes > 0, "output.socket_writes did not grow"
        # Batching: far fewer socket writes than frames delivered (one write
        # per frame, or per frame and ack, would make the ratio <= 1).
        assert deliveries / writes > 2, \
            f"{deliveries} deliveries in {writes} socket writes: no batching"
        print(f"burst: {deliveries} deliveries, {writes} socket writes "
              f"({deliveries / writes:.1f} per write), {out_bytes} bytes")
    run(main(), timeout=60)


# ------------------------------- 1b. a room larger than one turn's writes

BIG_ROOM = 300		# per worker more than flush.c's FLUSH_CHUNK (128)
BIG_BURST = 200


def test_room_larger_than_a_write_chunk_gets_everything_in_order(server, tenant):
    """A worker writes at most 128 connections per loop turn and reads on in
    between; what arrives meanwhile joins the queues of the connections not
    yet written. Every subscriber still gets every event once, in seq order,
    and the sender every ack, in order."""
    async def main():
        workers = server.workers
        sender = await connect_on_worker(server, 0, "sender", tenant)
        subs = await asyncio.gather(*(
            connect_where(server, lambda w, i=i: w == i % workers, f"big{i}", tenant)
            for i in range(BIG_ROOM)))
        room = await make_room(sender)
        await asyncio.gather(*(c.ok("room:join", room=room) for c in subs))
        everyone = [sender, *subs]
        for c in everyone:
            await c.settle()

        items = [(f"c{i}", body_for("big", i)) for i in range(BIG_BURST)]
        await pipeline_sends(sender, room, items)
        replies = await collect_replies(sender, [cmid for cmid, _ in items], timeout=30)
        expected = record_acks(items, replies)
        assert [replies[cmid]["seq"] for cmid, _ in items] == list(range(1, BIG_BURST + 1))
        received = await asyncio.gather(*(c.collect("message:new", BIG_BURST, timeout=30)
                                          for c in everyone))
        await check_everyone_got(everyone, received, room, expected, BIG_BURST)
        await asyncio.gather(*(c.close() for c in subs))
    run(main(), timeout=90)


# -------------------------------------------------- 2. joins during a burst

JOIN_AT = (300, 700)		# acks before each round of joins
EXTRA_AFTER_JOINS = 300		# sends after the last join ack
MAX_SENDS = 5000
WINDOW = 200
SINCE_BACK = 100


def test_join_during_burst_gets_every_seq_once(server, tenant):
    async def main():
        workers = server.workers
        sender = await Session.open(server, "sender", tenant, keep_events=False)
        witness = await Client.connect(server, "witness", tenant)
        room = await make_room(witness)
        await sender.ok("room:join", room=room)
        # Per round, on every worker: one join without since, one with since.
        rounds = []
        for r in range(len(JOIN_AT)):
            rounds.append([(await connect_on_worker(server, w, f"j{r}-{w}-{mode}", tenant), mode)
                           for w in range(workers) for mode in ("latest", "since")])

        acks, bodies = {}, {}
        go = [asyncio.Event() for _ in JOIN_AT]
        joins_done = asyncio.Event()

        async def pump():
            """Pipelined sends, WINDOW in flight, until the joins are done and
            EXTRA_AFTER_JOINS more were sent."""
            inflight = {}
            i, stop_at = 0, None
            try:
                while True:
                    if stop_at is None and joins_done.is_set():
                        stop_at = i + EXTRA_AFTER_JOINS
                    limit = MAX_SENDS if stop_at is None else min(stop_at, MAX_SENDS)
                    while i < limit and len(inflight) < WINDOW:
                        cmid, body = f"c{i}", body_for("join", i)
                        bodies[cmid] = body
                        fut = await sender.start("message:send", room=room, body=body,
                                                 client_msg_id=cmid)
                        inflight[fut] = cmid
                        i += 1
                    if not inflight:
                        break
                    done, _ = await asyncio.wait(inflight, timeout=15,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    assert done, f"no reply to message:send within 15s ({len(inflight)} " \
                                 f"in flight, {len(acks)} acked)"
                    for fut in done:
                        cmid = inflight.pop(fut)
                        reply = fut.result()
                        assert reply.get("type") == "ack", (cmid, reply)
                        acks[cmid] = reply
                    for n, ev in zip(JOIN_AT, go):
                        if len(acks) >= n:
                            ev.set()
            finally:
                drop_waiters(inflight)
            assert joins_done.is_set(), f"the joins did not finish within {MAX_SENDS} sends"

        async def join(client, mode, since):
            fields = {"room": room} if mode == "latest" else {"room": room, "since": since}
            ack = await client.ok("room:join", timeout=10, **fields)
            early = client.buffered("message:new")
            assert not early, f"{client}: message:new before its join ack: {seqs(early)[:5]}"
            return ack

        async def join_round(r):
            await go[r].wait()
            since = max(a["seq"] for a in acks.values()) - SINCE_BACK
            return since, await asyncio.gather(*(join(c, mode, since) for c, mode in rounds[r]))

        async def joins():
            try:
                return await asyncio.gather(*(join_round(r) for r in range(len(JOIN_AT))))
            finally:
                joins_done.set()

        _, joined = await asyncio.gather(pump(), joins())
        total = len(acks)
        expected = {a["seq"]: (a["msg_id"], cmid, bodies[cmid]) for cmid, a in acks.items()}
        assert sorted(expected) == list(range(1, total + 1)), "acked seqs not 1..total, distinct"

        frames = await witness.collect("message:new", total, timeout=30)
        check_events("witness", frames, room, "sender", expected, 1, total)

        history = witness.hello["limits"]["history_on_join"]
        lasts = []
        for (since, acks_of_round), clients in zip(joined, rounds):
            for ack, (client, mode) in zip(acks_of_round, clients):
                who = f"{client} ({mode}{'' if mode == 'latest' else f' {since}'})"
                last = ack["last_seq"]
                lasts.append(last)
                assert ack["room"] == room and ack["role"] == "member", f"{who}: {ack}"
                assert ack["recovered"] is True, f"{who}: recovered {ack['recovered']}"
                # Nobody types or marks anything; those present are online.
                assert (ack["typing"], ack["receipts"]) == ([], []), who
                assert all(p["status"] == "online" for p in ack["presence"]), who
                assert "sender" in {p["user"] for p in ack["presence"]}, who
                # The join completed during the burst: live events followed.
                assert since + SINCE_BACK <= last < total, f"{who}: last_seq {last}"
                first = last - history + 1 if mode == "latest" else since + 1
                check_events(f"{who} join ack", ack["events"], room, "sender", expected,
                             first, last)
                live = await client.collect("message:new", total - last, timeout=30)
                check_events(f"{who} history + live", ack["events"] + live, room, "sender",
                             expected, first, total)
        for client in [witness] + [c for clients in rounds for c, _ in clients]:
            await client.settle()
            extra = client.buffered("message:new")
            assert extra == [], f"{client}: {len(extra)} more message:new: {seqs(extra)[:10]}"
        print(f"joins during a burst of {total}: last_seq at the joins {lasts}")
    run(main(), timeout=60)


# ------------------------------------------- 3. overflow caused by a batch

OVERFLOW_BURST = 200
MAX_FRAMES = 16			# outbound_max_frames' minimum
LIVE_AFTER = 10			# fewer than MAX_FRAMES: these cannot overflow


async def open_small_window(server, user, tenant, timeout=5):
    """A Client whose reads back-pressure the server at once: a 4 KiB kernel
    receive buffer and websockets' own buffering cut to one frame."""
    return await connect_from(server, user, tenant, rcvbuf=4096, timeout=timeout,
                              max_queue=1, read_limit=4096)


async def recv_frame(client, timeout=10):
    try:
        return json.loads(await asyncio.wait_for(client.ws.recv(), timeout))
    except asyncio.TimeoutError:
        raise AssertionError(f"{client}: nothing within {timeout}s") from None


async def nothing_before_pong(client):
    """A ping round trip on the raw socket: the pong must be the next frame."""
    await client.send({"type": "ping", "id": "probe"})
    frame = await recv_frame(client)
    assert frame.get("type") == "pong" and frame.get("id") == "probe", \
        f"{client}: {frame} before the pong"


def test_overflow_of_a_batch_gaps_and_rejoin_recovers(make_server, tenant):
    # Two chatd instances on the one Redis. The slow subscriber's has
    # outbound_max_frames at its minimum, far below one loop turn's batch of
    # a pipelined burst, a small kernel send buffer (the stall reaches
    # chatd's queue soon) and no stall close. The publisher and the witness
    # use an instance with the defaults: with 16 frames, a client's own acks
    # and events of one turn, or a prompt reader's next two batches while
    # lws still holds part of a 100 KB one, overflow as well.
    pub_srv = make_server(workers=1)
    srv = make_server(workers=1, outbound_max_frames=MAX_FRAMES, socket_sndbuf=16384,
                      stall_timeout_ms=60000)

    async def main():
        pub = await Client.connect(pub_srv, "pub", tenant)
        witness = await Client.connect(pub_srv, "witness", tenant)
        slow = await open_small_window(srv, "slow", tenant)
        room = await make_room(pub, witness, slow)
        gaps0 = srv.monitoring()["slow_consumers"]["gaps"]
        expected = {}

        async def burst(tag, n, big=True):
            """n sends written back to back; returns once every one is acked
            and the witness has them all."""
            items = [(f"{tag}{i}", body_for(tag, i) + ("y" * 400 if big else ""))
                     for i in range(n)]
            first = len(expected) + 1
            await pipeline_sends(pub, room, items)
            expected.update(record_acks(items, await collect_replies(
                pub, [c for c, _ in items], timeout=20)))
            assert sorted(expected) == list(range(1, len(expected) + 1))
            frames = await witness.collect("message:new", n, timeout=20)
            check_events(f"witness, burst {tag}", frames, room, "pub", expected, first,
                         len(expected))

        # The slow client reads nothing during three bursts: the first stalls
        # its socket, a later batch finds its queue taken and overflows.
        for tag in ("a", "b", "c"):
            await burst(tag, OVERFLOW_BURST)
        total = len(expected)

        def one_gap():
            gaps = srv.monitoring()["slow_consumers"]["gaps"] - gaps0
            assert gaps >= 1, "no room:gap counted"
            return gaps
        await eventually_async(one_gap, timeout=5, what="a room:gap for the stalled client")

        # It reads again: seqs 1..k in order, then room:gap {after_seq: k},
        # then nothing more of the room.
        before_gap = []
        while True:
            frame = await recv_frame(slow)
            if frame.get("type") != "message:new":
                break
            before_gap.append(frame)
        assert frame == {"type": "room:gap", "room": room, "after_seq": len(before_gap)}, \
            f"after {len(before_gap)} message:new (seqs {seqs(before_gap)[-3:]}): {frame}"
        k = frame["after_seq"]
        check_events("slow, before the gap", before_gap, room, "pub", expected, 1, k)
        assert k < total, k
        await nothing_before_pong(slow)
        assert srv.monitoring()["slow_consumers"]["gaps"] - gaps0 == 1, \
            "more than one room:gap for one room of one connection"

        # The re-join from after_seq returns every missed event, once.
        await slow.send({"type": "room:join", "id": "rejoin", "room": room, "since": k})
        ack = await recv_frame(slow)
        assert ack.get("type") == "ack" and ack.get("id") == "rejoin", \
            f"expected the re-join ack, got {str(ack)[:300]}"
        assert ack["recovered"] is True and ack["last_seq"] == total, \
            {key: v for key, v in ack.items() if key != "events"}
        check_events("slow, re-join ack", ack["events"], room, "pub", expected, k + 1, total)
        await nothing_before_pong(slow)

        # Live again: the next messages once each, in order, and no gap.
        reader = asyncio.ensure_future(slow.collect("message:new", LIVE_AFTER, timeout=20))
        try:
            await burst("d", LIVE_AFTER, big=False)
            live = await reader
        finally:
            reader.cancel()
        check_events("slow, live after the re-join", live, room, "pub", expected, total + 1,
                     total + LIVE_AFTER)
        assert slow.frames == [], f"slow: other frames {slow.frames[:3]}"
        await nothing_before_pong(slow)
        record = before_gap + ack["events"] + live
        check_events("slow, everything", record, room, "pub", expected, 1, total + LIVE_AFTER)
        assert srv.monitoring()["slow_consumers"]["gaps"] - gaps0 == 1
        print(f"overflow: room:gap after_seq {k} of {total}; the re-join returned "
              f"{len(ack['events'])} events")
    run(main(), timeout=60)
