"""Tokens at the handshake, and garbage frames on an open connection."""

import json
import time

import pytest

from chatd_harness import (Client, make_room, make_token, run, run_chatd, token_claims,
                           unique_id, ws_handshake_status)

now = int(time.time())
BAD_TOKENS = {
    "missing": None,
    "malformed": "not-a-jwt",
    "bad-signature": make_token("alice", secret="wrong-secret"),
    "expired": make_token("alice", exp=now - 3600),
    "no-exp": make_token("alice", ttl=None),
    "alg-none": make_token("alice", alg="none"),
}


@pytest.mark.parametrize("token", list(BAD_TOKENS.values()), ids=list(BAD_TOKENS))
def test_bad_token_is_refused_with_401(server, token):
    path = "/ws" + (f"?token={token}" if token else "")
    assert ws_handshake_status(server.port, path) == 401


def test_good_token_upgrades(server):
    token = make_token("alice")
    assert ws_handshake_status(server.port, f"/ws?token={token}") == 101
    assert ws_handshake_status(server.port, "/ws",
                               {"Authorization": f"Bearer {token}"}) == 101


def test_bearer_header_session(server, tenant):
    async def main():
        client = await Client.connect(server, "carol", tenant, bearer=True)
        assert (client.hello["user"], client.hello["tenant"]) == ("carol", tenant)
        assert (await client.request("ping"))["type"] == "pong"
    run(main())


def test_chatd_token_command(server):
    proc = run_chatd("token", "--user", "alice", "--tenant", "acme", "-c", server.conf_path)
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    claims = token_claims(token)
    assert (claims["sub"], claims["tenant"]) == ("alice", "acme")
    assert claims["exp"] > time.time()

    async def main():
        client = await Client.connect(server, token=token)
        assert (client.hello["user"], client.hello["tenant"]) == ("alice", "acme")
    run(main())


GARBAGE = {
    "not-json": "this is not json",
    "truncated-json": '{"type": "ping"',
    "array": "[1, 2, 3]",
    "string": '"ping"',
    "no-type": "{}",
    "type-not-string": '{"type": 42}',
    "unknown-type": '{"type": "nope"}',
    "id-too-long": json.dumps({"type": "ping", "id": "x" * 65}),
    "id-not-scalar": '{"type": "ping", "id": {"a": 1}}',
}


@pytest.mark.parametrize("text", list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_frame_gets_bad_request(server, tenant, text):
    async def main():
        client = await Client.connect(server, "alice", tenant)
        await client.send_raw(text)
        error = await client.next_event("error")
        assert error["code"] == "bad_request", error
        if "nope" in text:
            assert "nope" in error["message"], error
        assert (await client.request("ping"))["type"] == "pong"
        await Client.connect(server, "fresh", tenant)
    run(main())


BAD_REQUESTS = {
    "send-no-body": ("message:send", {"client_msg_id": "cm-1"}),
    "send-no-client-msg-id": ("message:send", {"body": "hi"}),
    "send-body-not-string": ("message:send", {"client_msg_id": "cm-1", "body": 42}),
    "send-no-room": ("message:send", {"room": None, "client_msg_id": "cm-1", "body": "hi"}),
    "send-bad-client-msg-id": ("message:send", {"client_msg_id": "a b", "body": "hi"}),
    "send-room-with-space": ("message:send", {"room": "a b", "client_msg_id": "c", "body": "hi"}),
    "join-room-with-star": ("room:join", {"room": "room*"}),
    "join-room-with-space": ("room:join", {"room": "my room"}),
    "join-room-empty": ("room:join", {"room": ""}),
    "join-room-too-long": ("room:join", {"room": "r" * 65}),
    "unknown-type-with-id": ("nope", {}),
}


@pytest.mark.parametrize("type,fields", list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
def test_ill_formed_request_gets_bad_request(server, tenant, type, fields):
    async def main():
        client = await Client.connect(server, "alice", tenant)
        room = await make_room(client)  # joined: membership is not the problem
        frame = {"room": room, **fields}
        frame = {k: v for k, v in frame.items() if v is not None}
        await client.error(type, "bad_request", **frame)  # the reply carries our id
        assert (await client.request("ping"))["type"] == "pong"
        await Client.connect(server, "fresh", tenant)
    run(main())


def test_error_without_id_for_request_without_id(server, tenant):
    async def main():
        client = await Client.connect(server, "alice", tenant)
        await client.send_raw(json.dumps({"type": "room:join", "room": unique_id("nosuch")}))
        error = await client.next_event("error")
        assert error["code"] == "not_found" and "id" not in error, error
    run(main())
