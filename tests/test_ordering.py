"""One room, four concurrent senders on both workers, 1,000 messages: every
subscriber sees the same gap-free sequence."""

import asyncio

from chatd_harness import Client, connect_on_distinct_workers, make_room, run, seqs

SENDERS = 4
PER_SENDER = 250
TOTAL = SENDERS * PER_SENDER


def test_concurrent_senders_one_order(server, tenant):
    async def main():
        users = [f"sender{i}" for i in range(SENDERS)]
        senders = await connect_on_distinct_workers(server, 2, tenant, users[:2])
        senders += [await Client.connect(server, u, tenant) for u in users[2:]]
        listeners = [await Client.connect(server, f"listener{i}", tenant) for i in range(2)]
        assert len({c.worker for c in senders}) >= 2
        everyone = senders + listeners
        room = await make_room(senders[0], *everyone[1:])

        async def send_all(client):
            acks = []
            for i in range(PER_SENDER):
                body = f"{client.user}:{i}"
                acks.append((await client.say(room, body, f"{client.user}-{i}"), body))
            return acks

        async def listen(client):
            return await client.collect("message:new", TOTAL, timeout=50)

        results = await asyncio.gather(*(send_all(c) for c in senders),
                                       *(listen(c) for c in listeners))
        sent = {ack["seq"]: body for acks in results[:SENDERS] for ack, body in acks}
        assert sorted(sent) == list(range(1, TOTAL + 1))
        received = list(results[SENDERS:])
        received += [await listen(c) for c in senders]
        for client, frames in zip(listeners + senders, received):
            assert seqs(frames) == list(range(1, TOTAL + 1)), f"{client}: out of order or gaps"
            assert all(f["msg"]["body"] == sent[f["seq"]] for f in frames), client
            await client.settle()
            assert client.buffered("message:new") == [], f"{client}: duplicates"
    run(main(), timeout=60)
