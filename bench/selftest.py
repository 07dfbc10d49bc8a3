#!/usr/bin/python3
"""bench/selftest.py: checks build/bench/loadgen's WebSocket client side
against a deliberately awkward fake chatd (stdlib only, no chatd needed).

The fake server answers the upgrade, sends hello split in fragments with a
ping in between, acks room:create/join/message:send, and fans out
message:new frames with 7-, 16- and 64-bit lengths, every third one
fragmented in three. It checks that every client frame is masked and
answers each ping with the same payload. loadgen must then report every
delivery received, nothing lost, and the server must have seen the pongs.

The chatty case (--chatty): the fake also plays docs/protocol.md section 8
(typing:start/stop -> typing:update to the others, typing:true at most once
a second per typist; receipt:read -> receipt:update to everyone, at most one
per user and room per second, the first at once, the latest at the window's
end), counts what it sends, and loadgen must count the same and find the
rates within its bounds. Then once more with a fake that coalesces nothing:
loadgen must report events too close together.

    /usr/bin/python3 bench/selftest.py      (make -f bench/Makefile selftest)
"""

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOADGEN = REPO / "build" / "bench" / "loadgen"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode, payload, fin=True):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


def fragments(opcode, payload, parts):
    step = max(1, len(payload) // parts)
    chunks = [payload[i:i + step] for i in range(0, len(payload), step)] or [b""]
    out = b""
    for i, c in enumerate(chunks):
        out += frame(opcode if i == 0 else 0, c, fin=(i == len(chunks) - 1))
    return out


def token_user(head):
    """The sub claim of the token in the upgrade request's query string."""
    path = head.split(b" ", 2)[1].decode()
    token = path.split("token=", 1)[1].split("&", 1)[0]
    claims = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sub"]


class Fake:
    def __init__(self, coalesce=True):
        self.rooms = {}         # room -> set of writers
        self.users = {}         # writer -> user
        self.problems = []
        self.pongs = 0
        self.pings = 0
        self.seq = 0
        self.coalesce = coalesce
        self.typing = {}        # (room, user) -> when typing:true last went out, or None
        self.receipts = {}      # (room, user) -> [last sent, pending seq or None]
        self.sent_typing = 0    # typing:update frames written
        self.sent_receipt = 0   # receipt:update frames written

    def fan(self, room, ev, skip_user=None):
        out = frame(1, json.dumps(ev, separators=(",", ":")).encode())
        n = 0
        for w in list(self.rooms.get(room, ())):
            if self.users.get(w) != skip_user:
                w.write(out)
                n += 1
        return n

    def typing_event(self, room, user, typing):
        self.sent_typing += self.fan(room, {"type": "typing:update", "room": room,
                                            "user": user, "typing": typing}, skip_user=user)

    def on_typing(self, msg, user):
        key, now = (msg["room"], user), asyncio.get_running_loop().time()
        last = self.typing.get(key)
        if msg["type"] == "typing:stop":
            if key in self.typing:
                del self.typing[key]
                self.typing_event(msg["room"], user, False)
        elif last is None or now - last >= 1.0 or not self.coalesce:
            self.typing[key] = now
            self.typing_event(msg["room"], user, True)

    def receipt_event(self, room, user, seq):
        self.sent_receipt += self.fan(room, {"type": "receipt:update", "room": room,
                                             "user": user, "delivered_seq": seq,
                                             "read_seq": seq})

    def on_read(self, msg, user):
        loop = asyncio.get_running_loop()
        key, now = (msg["room"], user), loop.time()
        st = self.receipts.setdefault(key, [None, None])
        if not self.coalesce or st[0] is None or (now - st[0] >= 1.0 and st[1] is None):
            st[0] = now
            self.receipt_event(msg["room"], user, msg["seq"])
            return
        if st[1] is None:
            loop.call_at(st[0] + 1.0, self.window_end, key)
        st[1] = max(st[1] or 0, msg["seq"])

    def window_end(self, key):
        st = self.receipts[key]
        st[0] = asyncio.get_running_loop().time()
        self.receipt_event(key[0], key[1], st[1])
        st[1] = None

    async def read_frame(self, reader):
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await reader.readexactly(8), "big")
        if not b1 & 0x80:
            self.problems.append("unmasked client frame")
            mask = b"\0\0\0\0"
        else:
            mask = await reader.readexactly(4)
        data = bytearray(await reader.readexactly(n))
        for i in range(n):
            data[i] ^= mask[i & 3]
        return b0 & 0x0F, bool(b0 & 0x80), bytes(data)

    async def handle(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
               if ln.lower().startswith(b"sec-websocket-key:")][0]
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        user = token_user(head)
        self.users[writer] = user
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        hello = json.dumps({"type": "hello", "user": "u", "pad": "p" * 300}).encode()
        # hello in two fragments with a ping between them
        writer.write(frame(1, hello[:100], fin=False) + frame(9, b"ping-1") +
                     frame(0, hello[100:], fin=True))
        self.pings += 1
        await writer.drain()
        room = None
        try:
            while True:
                op, fin, data = await self.read_frame(reader)
                if op == 10:
                    if data != b"ping-1" and not data.startswith(b"p"):
                        self.problems.append(f"pong payload {data!r}")
                    self.pongs += 1
                    continue
                if op == 8:
                    break
                msg = json.loads(data)
                t = msg["type"]
                if t in ("room:create", "room:join"):
                    room = msg["room"]
                    self.rooms.setdefault(room, set()).add(writer)
                    writer.write(frame(1, json.dumps({"type": "ack", "id": msg["id"]}).encode()))
                elif t == "message:send":
                    self.seq += 1
                    writer.write(frame(1, json.dumps({"type": "ack", "id": msg["id"],
                                                      "seq": self.seq}).encode()))
                    ev = json.dumps({"type": "message:new", "room": msg["room"], "seq": self.seq,
                                     "msg": {"id": "x", "user": "u", "kind": "text",
                                             "body": msg["body"], "ts": 1}},
                                    separators=(",", ":")).encode()
                    out = (fragments(1, ev, 3) if self.seq % 3 == 0 else frame(1, ev))
                    ping = self.seq % 5 == 0
                    if ping:
                        out = frame(9, b"p%d" % self.seq) + out
                    for w in list(self.rooms.get(msg["room"], ())):
                        w.write(out)
                        self.pings += ping
                elif t in ("typing:start", "typing:stop"):
                    writer.write(frame(1, json.dumps({"type": "ack", "id": msg["id"],
                                                      "room": msg["room"]}).encode()))
                    self.on_typing(msg, user)
                elif t == "receipt:read":
                    writer.write(frame(1, json.dumps({"type": "ack", "id": msg["id"],
                                                      "room": msg["room"]}).encode()))
                    self.on_read(msg, user)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if room:
                self.rooms.get(room, set()).discard(writer)
            self.users.pop(writer, None)
            writer.close()


def quiet_resets(loop, context):
    """loadgen closes its sockets with a reset: a read of the fake's that
    the reset fails is expected, not worth a traceback."""
    if not isinstance(context.get("exception"), ConnectionResetError):
        loop.default_exception_handler(context)


async def run_case(body_bytes, conns=12, rooms=3, senders=3, rate=60):
    asyncio.get_running_loop().set_exception_handler(quiet_resets)
    fake = Fake()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        str(LOADGEN), "--port", str(port), "--secret", "selftest-secret", "--json",
        "--conns", str(conns), "--rooms", str(rooms), "--senders", str(senders),
        "--rate", str(rate), "--warmup", "0.3", "--duration", "1.5", "--drain", "2",
        "--create-rooms", "--body-bytes", str(body_bytes), "--id-prefix", f"st{body_bytes}-",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    server.close()
    r = json.loads(out.decode().strip().splitlines()[-1])
    bad = list(fake.problems)
    if r["setup"]["joined"] != conns:
        bad.append(f"joined {r['setup']['joined']} of {conns}: {r['setup']['errors']}")
    if r["sent"] == 0 or r["lost"] != 0 or r["received"] != r["expected"]:
        bad.append(f"sent {r['sent']} expected {r['expected']} received {r['received']}")
    if r["acked"] != r["sent"]:
        bad.append(f"acked {r['acked']} of {r['sent']}")
    if r["errors"] or r["lost_conns"]:
        bad.append(f"errors {r['errors']} lost conns {r['lost_conns']}")
    if fake.pongs != fake.pings:
        bad.append(f"pongs {fake.pongs} for {fake.pings} pings")
    print(f"selftest body {body_bytes} B: sent {r['sent']}, received {r['received']}/"
          f"{r['expected']}, pongs {fake.pongs}/{fake.pings}: {'FAIL ' + '; '.join(bad) if bad else 'ok'}")
    return not bad


async def run_chatty(coalesce, conns=40, senders=3, people=12, rate=40):
    """One room: senders, people who type and read, the rest listening."""
    asyncio.get_running_loop().set_exception_handler(quiet_resets)
    fake = Fake(coalesce)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        str(LOADGEN), "--port", str(port), "--secret", "selftest-secret", "--json",
        "--conns", str(conns), "--rooms", "1", "--senders", str(senders),
        "--chatty", str(people), "--rate", str(rate), "--warmup", "0.5",
        "--duration", "4", "--drain", "2", "--create-rooms",
        "--id-prefix", f"stc{int(coalesce)}-",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    server.close()
    r = json.loads(out.decode().strip().splitlines()[-1])
    c = r.get("chatty") or {}
    bad = list(fake.problems)
    if r["setup"]["joined"] != conns or r["lost"] != 0 or r["errors"]:
        bad.append(f"joined {r['setup']['joined']}, lost {r['lost']}, errors {r['errors']}")
    if c.get("typers") != people or not c.get("starts") or not c.get("stops") or not c.get("reads"):
        bad.append(f"people {c.get('typers')}: starts {c.get('starts')} stops "
                   f"{c.get('stops')} reads {c.get('reads')}")
    requests = c.get("starts", 0) + c.get("stops", 0) + c.get("reads", 0)
    if c.get("acks_typing", 0) + c.get("acks_receipt", 0) != requests:
        bad.append(f"acks {c.get('acks_typing')} + {c.get('acks_receipt')} for "
                   f"{requests} requests")
    got_typing = c.get("typing_true", 0) + c.get("typing_false", 0)
    if got_typing != fake.sent_typing or c.get("receipt") != fake.sent_receipt:
        bad.append(f"typing:update {got_typing} of {fake.sent_typing}, receipt:update "
                   f"{c.get('receipt')} of {fake.sent_receipt}")
    within = (c.get("typing_per_s", 0) <= c.get("typing_bound_per_s", 0) and
              c.get("receipt_per_s", 0) <= c.get("receipt_bound_per_s", 0))
    close = c.get("typing_true_too_close", 0) + c.get("receipt_too_close", 0)
    if coalesce and (not within or close):
        bad.append(f"coalescing fake: typing {c.get('typing_per_s')}/s bound "
                   f"{c.get('typing_bound_per_s')}, receipt {c.get('receipt_per_s')}/s bound "
                   f"{c.get('receipt_bound_per_s')}, too close {close}")
    if not coalesce and (within or not c.get("typing_true_too_close") or
                         not c.get("receipt_too_close")):
        bad.append(f"non-coalescing fake not caught: within bounds {within}, too close "
                   f"{c.get('typing_true_too_close')} / {c.get('receipt_too_close')}")
    print(f"selftest chatty, {'coalescing' if coalesce else 'not coalescing'}: "
          f"typing:update {c.get('typing_per_s')}/s (bound {c.get('typing_bound_per_s')}), "
          f"receipt:update {c.get('receipt_per_s')}/s (bound {c.get('receipt_bound_per_s')}), "
          f"too close {close}: {'FAIL ' + '; '.join(bad) if bad else 'ok'}")
    return not bad


def main():
    if not os.access(LOADGEN, os.X_OK):
        sys.exit("no build/bench/loadgen: make -f bench/Makefile loadgen")
    ok = True
    for body in (40, 300, 70000):     # 7-, 16- and 64-bit frame lengths
        ok &= asyncio.run(run_case(body))
    for coalesce in (True, False):
        ok &= asyncio.run(run_chatty(coalesce))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
