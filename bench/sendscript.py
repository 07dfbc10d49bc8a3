#!/usr/bin/python3
"""What the send script costs Redis per message, apart from chatd.

Starts a scratch redis-server (no persistence, a free port, pinned to core
0; this process on core 1), loads the send script as chatd does
(src/store/bucket.lua + send.lua), and calls it the way
src/store/send_batch.c does, in four shapes:

  1x1    one room, one message per call (the shape of S2 before a call took
         several rooms)
  10x1   ten rooms, one message each, per call
  50x1   fifty rooms, one message each, per call (S2's calls hold ~50-80)
  1x20   one room, twenty messages per call (a fast sender's burst)

Every message is from its own user (its own bucket) to one of 1,000 rooms,
with a 64-byte body. Printed per shape and repeat: Redis' CPU time per
message (INFO cpu, user + sys, around the calls) and the script's own time
per message (INFO commandstats, wall clock inside EVALSHA).

    make -f bench/Makefile sendscript      (or bench/sendscript.py --help)
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time

import redis

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {"1x1": (1, 1), "10x1": (10, 1), "50x1": (50, 1), "1x20": (1, 20)}


def send_script():
    """The send script as chatd loads it: src/store/bucket.lua then
    src/store/send.lua (src/store/redis_lua.S embeds the two so)."""
    text = b""
    for name in ("bucket.lua", "send.lua"):
        with open(os.path.join(REPO, "src", "store", name), "rb") as f:
            text += f.read()
    return text


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call_args(tag, first, rooms, per_room):
    """KEYS and ARGV of one call as send_batch.c builds them (the layout
    redis.c documents):
    per room its keys and header, its items' keys and fields after it."""
    # maxlen, stream ttl, rate_send "1000000/1" (n, win_ms), rooms
    keys, argv = ["chatd:sync"], ["1000", "86400", "1000000", "1000", str(rooms)]
    for r in range(rooms):
        room = f"{tag}-r{(first + r) % 1000}"
        keys += [f"chatd:{{bench/{room}}}:seq", f"chatd:{{bench/{room}}}:stream"]
        argv += [f"chatd:ev:{{bench/{room}}}", "0", "bench", room, str(per_room)]
        for i in range(per_room):
            n = first + r * per_room + i
            user, msg_id = f"{tag}-u{n}", f"m{tag}{n:016d}"
            keys += [f"chatd:{{bench/{room}}}:idem:{user}/c{n}",
                     f"chatd:rb:{{bench/{user}}}:send"]
            argv += [f'{{"type":"message:new","room":"{room}","seq":', "",
                     f',"msg":{{"id":"{msg_id}","seq":1,"user":"{user}","kind":"text",'
                     f'"body":"{"x" * 64}","ts":1700000000000,"client_msg_id":"c{n}"}}}}',
                     msg_id, "1700000000000", "86400"]
    return keys, argv


def measure(r, sha, shape, n_msgs, tag):
    rooms, per_room = SHAPES[shape]
    per_call = rooms * per_room
    r.config_resetstat()
    cpu0 = r.info("cpu")
    pipe = r.pipeline(transaction=False)
    for first in range(0, n_msgs, per_call):
        keys, argv = call_args(tag, first, rooms, per_room)
        pipe.evalsha(sha, len(keys), *keys, *argv)
        if len(pipe) * per_call >= 2000:
            check(pipe.execute(), rooms)
            pipe = r.pipeline(transaction=False)
    check(pipe.execute(), rooms)
    cpu1 = r.info("cpu")
    used = sum(cpu1[k] - cpu0[k] for k in ("used_cpu_user", "used_cpu_sys"))
    st = r.info("commandstats")["cmdstat_evalsha"]
    return 1e6 * used / n_msgs, st["usec"] / n_msgs, st["calls"]


def check(results, rooms):
    for res in results:
        if len(res) != rooms or any(part[0] != 1 for part in res):
            sys.exit(f"sendscript: unexpected answer {res[:2]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20000, help="per shape and repeat")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--shapes", default=",".join(SHAPES), help="comma list of " + ",".join(SHAPES))
    a = p.parse_args()
    if not shutil.which("redis-server"):
        sys.exit("sendscript: redis-server not found (scripts/deps.sh installs it)")
    port = free_port()
    server = subprocess.Popen(["taskset", "-c", "0", "redis-server", "--port", str(port),
                               "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.sched_setaffinity(0, {1})
    except OSError:
        pass
    try:
        r = redis.Redis(port=port, socket_timeout=30)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        sha = r.script_load(send_script())
        print(f"send script {sha} (src/store/bucket.lua + send.lua) on a scratch Redis "
              f"(port {port}, core 0), {a.messages} messages per shape and repeat, "
              f"1,000 rooms, 64-byte bodies")
        print(f"{'shape':>6} {'msgs/call':>9} {'redis cpu us/msg':>17} {'script us/msg':>14}")
        for rep in range(a.repeat):
            for shape in a.shapes.split(","):
                tag = f"s{rep}{shape.replace('x', '_')}{time.time_ns() % 10**6}"
                cpu, script, calls = measure(r, sha, shape, a.messages, tag)
                print(f"{shape:>6} {a.messages // calls:>9} {cpu:>17.1f} {script:>14.1f}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
