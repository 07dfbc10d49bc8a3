"""Per-user rate limits, "N per W seconds" (rate_send = "10/60", ...).

The bucket's arithmetic is checked on the test Redis itself, by running
src/store/bucket.lua (and rate.lua after it, as chatd loads them) with
EVAL; the limits by a chatd of two workers, with a user's clients on both.
Bad values and the keys they replaced stop `chatd -t` with the key's name.
"""

import subprocess
import time

import pytest

from chatd_harness import (RATE_OPS, REPO, Client, chatd_env, child_env,
                           connect_on_distinct_workers, eventually_async, make_room, make_token,
                           open_hello, pg_messages, run, run_chatd, unique_id, write_config)

STORE = REPO / "src" / "store"


def lua(*names):
    return "".join((STORE / name).read_text() for name in names)


# ------------------------------------------------- the bucket, in Redis

def bucket_level(redis_db, value, now, n, win_ms):
    script = lua("bucket.lua") + "return bucket_level(ARGV[1] ~= '' and ARGV[1], " \
        "tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))"
    return redis_db.eval(script, 0, value or "", now, n, win_ms)


def test_bucket_level_in_units_of_one_window_ms_per_token(redis_db):
    n, win = 10, 60000  # 10 per 60 s: a token is 60000 units, 10 units a ms
    assert bucket_level(redis_db, None, 5000, n, win) == n * win  # no key: full
    assert bucket_level(redis_db, "garbage", 5000, n, win) == n * win
    assert bucket_level(redis_db, "0 1000", 1000, n, win) == 0
    assert bucket_level(redis_db, "0 1000", 6999, n, win) == win - 10  # 1 ms short of a token
    assert bucket_level(redis_db, "0 1000", 7000, n, win) == win  # one token in 6 s
    assert bucket_level(redis_db, "0 1000", 61000, n, win) == n * win  # empty to full in W
    assert bucket_level(redis_db, "0 1000", 10 ** 9, n, win) == n * win  # never above full
    assert bucket_level(redis_db, "500 2000", 1000, n, win) == 500  # clock went back
    # The largest bucket (1000000 per day) is exact: 8.64e13 units.
    assert bucket_level(redis_db, "1 0", 1, 1000000, 86400000) == 1000001
    assert bucket_level(redis_db, None, 0, 1000000, 86400000) == 86400000000000


def test_bucket_put_writes_integers_and_expires_when_full_again(redis_db):
    key = unique_id("chatd:test:rb")
    script = lua("bucket.lua") + "bucket_put(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), " \
        "tonumber(ARGV[3]), tonumber(ARGV[4])) return bucket_get(KEYS[1], tonumber(ARGV[2]), " \
        "tonumber(ARGV[3]), tonumber(ARGV[4]))"
    try:
        assert redis_db.eval(script, 1, key, 86399999999999, 1700000000123, 1000000,
                             86400000) == 86399999999999
        assert redis_db.get(key) == b"86399999999999 1700000000123"
        # From empty, full again after W: the key lives W plus a second.
        assert 86400000 < redis_db.pttl(key) <= 86401000
        redis_db.eval(script, 1, key, 0, 5, 10, 60000)
        assert 60000 < redis_db.pttl(key) <= 61000
    finally:
        redis_db.delete(key)


def take_all(redis_db, key, n, win_ms, times):
    script = lua("bucket.lua", "rate.lua")
    return [redis_db.eval(script, 1, key, n, win_ms) for _ in range(times)]


@pytest.mark.parametrize("n,window_s", [(10, 60), (3, 1), (1, 3600), (7, 86400)])
def test_rate_script_allows_n_then_names_the_refill_of_one_token(redis_db, n, window_s):
    key = unique_id("chatd:test:rb")
    try:
        start = time.monotonic()
        got = take_all(redis_db, key, n, window_s * 1000, n + 2)
        elapsed_ms = (time.monotonic() - start) * 1000
        # One token refills in W/N: ceil(W * 1000 / N) ms, less what refilled
        # while the test ran.
        token_ms = -(-window_s * 1000 // n)
        assert got[:n] == [0] * n, got
        for retry in got[n:]:
            assert token_ms - elapsed_ms - 5 <= retry <= token_ms, (got, elapsed_ms)
    finally:
        redis_db.delete(key)


# ------------------------------------------------------------- configuration

@pytest.mark.parametrize("value", ["10", "0/60", "10/0", "x/y", "10/60/1", "-1/60", "10/-60",
                                   "1/86401", "1000001/60", " 10/60", "10/60 ", "+10/60", "",
                                   "/60", "10/", 10])
def test_bad_rate_stops_the_start_naming_the_key(env, tmp_path, value):
    proc = run_chatd("-t", "-c", write_config(tmp_path / "bad.conf", port=8080,
                                              rate_react=value))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "configuration error" in out and "rate_react" in out and "N/W" in out, out
    assert '"60/60"' in out, out  # the default, as an example


@pytest.mark.parametrize("old,new", [("rate_send_per_s", "rate_send"),
                                     ("rate_send_burst", "rate_send"),
                                     ("rate_join_per_s", "rate_join"),
                                     ("rate_join_burst", "rate_join")])
def test_an_old_rate_key_names_the_new_one(env, tmp_path, old, new):
    proc = run_chatd("-t", "-c", write_config(tmp_path / "old.conf", port=8080, **{old: 10}))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"{old} is no longer a key: use {new} = \"N/W\"" in out, out


def test_every_rate_key_and_its_environment_override(env, tmp_path):
    conf = write_config(tmp_path / "good.conf", port=8080,
                        **{f"rate_{op}": f"{i + 1}/{60 * (i + 1)}" for i, op in enumerate(RATE_OPS)})
    proc = run_chatd("-t", "-c", conf)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for op in RATE_OPS:
        var = f"CHATD_RATE_{op.upper()}"
        bad = subprocess.run([chatd_env()["CHATD_BIN"], "-t", "-c", str(conf)],
                             env={**child_env(), var: "5/0"}, cwd=REPO, capture_output=True,
                             text=True, timeout=10)
        assert bad.returncode == 1, bad.stderr
        assert f"environment {var}: rate_{op} must be \"N/W\"" in bad.stderr, bad.stderr


def test_hello_reports_every_rate(make_server):
    srv = make_server(workers=1, rate_search="7/30", rate_presence="2/3600")

    async def main():
        ws, hello = await open_hello(srv, make_token("alice", unique_id("t")))
        await ws.close()
        rates = hello["limits"]["rates"]
        assert list(rates) == list(RATE_OPS), rates
        assert rates["search"] == [7, 30] and rates["presence"] == [2, 3600], rates
        assert rates["send"] == [1000000, 1], rates  # the harness' own
    run(main())


# ------------------------------------------------------------------ chatd

def test_ten_sends_per_minute_across_two_workers(make_server):
    """rate_send = "10/60": ten sends, from two workers, then rate_limited
    with the time one token takes to refill (6 s), less what has refilled."""
    srv = make_server(workers=2, rate_send="10/60")
    tenant = unique_id("t")

    async def main():
        a, b = await connect_on_distinct_workers(srv, 2, tenant, users=["ten", "ten"])
        assert a.worker != b.worker
        # Another user makes the room and seeds its counter: the first send
        # of a new room costs its sender two tokens (test_security.py).
        owner = await Client.connect(srv, "owner", tenant)
        room = await make_room(owner, a, b)
        await owner.say(room, "seed")
        start = time.monotonic()
        for i in range(10):
            await (a if i % 2 else b).say(room, f"m{i}", client_msg_id=f"cm{i}")
        for c in (a, b):
            limited = await c.error("message:send", "rate_limited", room=room, body="over",
                                    client_msg_id=unique_id("m"))
            elapsed_ms = (time.monotonic() - start) * 1000
            assert 6000 - elapsed_ms - 50 <= limited["retry_after_ms"] <= 6000, \
                (limited, elapsed_ms)
        # A repeat of an acked client_msg_id is answered without a token.
        await a.ok("message:send", room=room, body="m1", client_msg_id="cm1")
        # Another user has a bucket of their own.
        await owner.say(room, "still chatting")
    run(main(), timeout=60)


def test_joins_per_window_across_two_workers(make_server):
    srv = make_server(workers=2, rate_join="3/60")
    tenant = unique_id("t")

    async def main():
        a, b = await connect_on_distinct_workers(srv, 2, tenant, users=["joiner", "joiner"])
        owner = await Client.connect(srv, "owner", tenant)
        rooms = [unique_id("room") for _ in range(4)]
        for room in rooms:
            await owner.ok("room:create", room=room, name=room)
        start = time.monotonic()
        await a.ok("room:join", room=rooms[0])
        await b.ok("room:join", room=rooms[1])
        await a.ok("room:join", room=rooms[2])
        for c in (b, a):
            limited = await c.error("room:join", "rate_limited", room=rooms[3])
            elapsed_ms = (time.monotonic() - start) * 1000
            # 3 per 60 s: a token every 20 s.
            assert 20000 - elapsed_ms - 50 <= limited["retry_after_ms"] <= 20000, \
                (limited, elapsed_ms)
        # The owner's joins are the owner's: not limited by the joiner's.
        await owner.ok("room:join", room=rooms[3])
    run(main(), timeout=60)


def test_edits_per_window_are_limited_apart_from_sends(make_server):
    srv = make_server(workers=2, rate_edit="2/60")
    tenant = unique_id("t")

    async def main():
        a, b = await connect_on_distinct_workers(srv, 2, tenant, users=["ed", "ed"])
        room = await make_room(a, b)
        ack = await a.say(room, "first")

        def stored():
            assert [r[1] for r in pg_messages(tenant, room)] == [ack["msg_id"]]
        await eventually_async(stored, timeout=10, what="the message in PostgreSQL")
        start = time.monotonic()
        await a.ok("message:edit", room=room, msg_id=ack["msg_id"], body="v1")
        await b.ok("message:edit", room=room, msg_id=ack["msg_id"], body="v2")
        for c in (a, b):
            limited = await c.error("message:edit", "rate_limited", room=room,
                                    msg_id=ack["msg_id"], body="v3")
            elapsed_ms = (time.monotonic() - start) * 1000
            assert 30000 - elapsed_ms - 50 <= limited["retry_after_ms"] <= 30000, \
                (limited, elapsed_ms)
        # The edit limit is not the send limit: sending goes on.
        await a.say(room, "a new message")
        await b.say(room, "and another")
    run(main(), timeout=60)
