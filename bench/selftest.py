#!/usr/bin/python3
"""bench/selftest.py: checks build/bench/loadgen's WebSocket client side
against a deliberately awkward fake chatd (stdlib only, no chatd needed).

The fake server answers the upgrade, sends hello split in fragments with a
ping in between, acks room:create/join/message:send, and fans out
message:new frames with 7-, 16- and 64-bit lengths, every third one
fragmented in three. It checks that every client frame is masked and
answers each ping with the same payload. loadgen must then report every
delivery received, nothing lost, and the server must have seen the pongs.

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


class Fake:
    def __init__(self):
        self.rooms = {}         # room -> set of writers
        self.problems = []
        self.pongs = 0
        self.pings = 0
        self.seq = 0

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
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if room:
                self.rooms.get(room, set()).discard(writer)
            writer.close()


async def run_case(body_bytes, conns=12, rooms=3, senders=3, rate=60):
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


def main():
    if not os.access(LOADGEN, os.X_OK):
        sys.exit("no build/bench/loadgen: make -f bench/Makefile loadgen")
    ok = True
    for body in (40, 300, 70000):     # 7-, 16- and 64-bit frame lengths
        ok &= asyncio.run(run_case(body))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
