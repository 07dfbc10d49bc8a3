#!/usr/bin/env python3
"""Write the seed corpora of the libFuzzer targets in tests/fuzz/.

    python3 tests/fuzz/make_seeds.py        (from anywhere; rewrites corpus/)

corpus/fuzz_proto/   client frames: every type of proto.c's command table, and
                     the edges (nesting, long ids, bad UTF-8, duplicate keys...)
corpus/fuzz_token/   JWTs signed (or not) with fuzz_token.c's secret: valid,
                     alg none, expired, bad signature, and claims at the edges;
                     claims_*: JSON claims that fuzz_token.c signs itself
corpus/fuzz_config/  chatd configuration files, valid and invalid

Only the standard library; the output does not depend on the clock, so
rerunning it changes nothing. Files this script does not write (inputs a
fuzzer found, crash reproducers) are left alone.
"""
import base64
import hashlib
import hmac
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

SECRET = b"fuzz-secret-0123456789"   # FUZZ_SECRET in fuzz_token.c
FAR = 4102444800                     # 2100-01-01T00:00:00Z
PAST = 1000000000                    # 2001-09-09
IAT = 1700000000
LLONG_MAX = 2**63 - 1
LLONG_MIN = -2**63


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- frames

def frame(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def proto_seeds():
    w = lambda name, data: write("fuzz_proto", name, data)
    # One valid frame per type of the command table, every field used.
    w("ping", frame({"type": "ping", "id": 1}))
    w("room_create", frame({
        "type": "room:create", "id": "c1", "room": "general", "name": "General",
        "kind": "public", "private": False, "description": "all of us",
        "members": ["alice", "bob.smith", "t:carol-1"]}))
    w("room_join", frame({"type": "room:join", "id": "j1", "room": "general", "since": 41}))
    w("room_leave", frame({"type": "room:leave", "id": 7, "room": "general"}))
    w("session_resume", frame({"type": "session:resume", "id": "r",
                               "rooms": {"general": 41, "random": 0}}))
    w("message_send", frame({
        "type": "message:send", "id": "m1", "room": "general",
        "client_msg_id": "cm-0001", "body": "hello \u00e9\U0001F600 @bob",
        "kind": "text", "reply_to": "1700000000000-0", "mentions": ["bob"],
        "attachments": [{"url": "https://example.com/a.png", "size": 123}]}))
    w("message_history", frame({"type": "message:history", "id": "h", "room": "general",
                                "before": 100, "after": 0, "limit": 50}))
    w("auth_refresh", frame({"type": "auth:refresh", "id": "a",
                             "token": "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"}))
    # The read commands (chat/roomread.c, msgread.c, search.c).
    w("room_list", frame({"type": "room:list", "id": "l"}))
    w("room_info", frame({"type": "room:info", "id": "i", "room": "general"}))
    w("room_members", frame({"type": "room:members", "id": "m", "room": "general",
                             "after": "alice", "limit": 200}))
    w("room_read", frame({"type": "room:read", "id": "r", "room": "general", "seq": 41}))
    w("receipt_delivered", frame({"type": "receipt:delivered", "id": "r", "room": "general",
                                  "seq": 41}))
    w("receipt_read", frame({"type": "receipt:read", "id": "r", "room": "general", "seq": 41}))
    w("message_seen", frame({"type": "message:seen", "id": "r", "room": "general",
                             "msg_id": "m1"}))
    w("message_thread", frame({"type": "message:thread", "id": "t", "room": "general",
                               "msg_id": "m1", "before": 100, "limit": 100}))
    w("message_edits", frame({"type": "message:edits", "id": "e", "room": "general",
                              "msg_id": "m1"}))
    w("mention_list", frame({"type": "mention:list", "id": "n", "before": 9, "limit": 1}))
    w("message_search", frame({"type": "message:search", "id": "s", "q": "\"quick fox\" -slow",
                               "room": "general", "before": "0.0607927:1700000000000:7:general",
                               "limit": 50}))
    w("limit_zero", frame({"type": "room:members", "room": "r", "limit": 0}))
    w("limit_over", frame({"type": "message:search", "q": "x", "limit": 51}))
    w("text_empty", frame({"type": "message:search", "q": ""}))
    w("message_send_extras", frame({
        "type": "message:send", "id": "m2", "room": "general", "client_msg_id": "cm-0002",
        "body": "see attached", "reply_to": "abc", "mentions": ["bob", "bob", "carol"],
        "attachments": [{"kind": "image", "url": "https://cdn.example/a.png", "name": "a.png",
                         "size": 123, "mime": "image/png"},
                        {"kind": "file", "url": "http://h/f.pdf", "name": "f.pdf", "size": 0,
                         "mime": "application/pdf"}]}))
    w("message_delete", frame({"type": "message:delete", "id": "d", "room": "general",
                               "msg_id": "abc"}))
    w("message_react", frame({"type": "message:react", "id": "r", "room": "general",
                              "msg_id": "abc", "emoji": "\U0001F44D", "add": True}))
    w("room_update", frame({"type": "room:update", "id": "u", "room": "general",
                            "name": "General \u00e9", "description": "all of us"}))
    w("member_add", frame({"type": "member:add", "id": "ma", "room": "general", "user": "bob"}))
    w("member_role", frame({"type": "member:role", "id": "mr", "room": "general", "user": "bob",
                            "role": "moderator"}))
    w("member_mute", frame({"type": "member:mute", "id": "mm", "room": "general", "user": "bob",
                            "until": 1900000000000}))
    w("member_ban", frame({"type": "member:ban", "id": "mb", "room": "general", "user": "bob",
                           "reason": "spam \U0001F600"}))
    # Nesting: 32 levels pass, 33 are refused before parsing.
    w("depth_32", '{"type":"message:send","room":"r","client_msg_id":"c","body":"b",'
      '"attachments":' + "[" * 31 + "]" * 31 + "}")
    w("depth_33", '{"type":"ping","x":' + "[" * 32 + "]" * 32 + "}")
    # Brackets and escaped quotes inside strings do not count as nesting.
    w("brackets_in_string", frame({"type": "message:send", "room": "r", "client_msg_id": "c",
                                   "body": "[[[{{\"\\\\\"[[" + "{" * 40}))
    # Ids at and past their limits.
    w("id_64", frame({"type": "room:join", "id": "i" * 64, "room": "R" * 64}))
    w("id_65", frame({"type": "room:join", "id": "i" * 65, "room": "r"}))
    w("room_65", frame({"type": "room:join", "room": "r" * 65}))
    w("id_escapes", '{"type":"nope","id":"' + "\\u0001" * 64 + '"}')
    w("id_int_max", '{"type":"ping","id":9223372036854775807}')
    w("id_int_over", '{"type":"ping","id":9223372036854775808}')
    w("id_real", '{"type":"ping","id":1.5e300}')
    w("id_object", '{"type":"ping","id":{"a":1}}')
    w("seq_negative", frame({"type": "message:history", "room": "r", "limit": -1}))
    w("null_fields", '{"type":"room:create","name":"n","room":null,"members":null,"id":null}')
    # Bad bytes and JSON edge cases.
    w("utf8_invalid", b'{"type":"message:send","room":"r","client_msg_id":"c","body":"\xc3\x28\xff"}')
    w("utf8_overlong", b'{"type":"ping","id":"\xc0\xaf"}')
    w("nul_escape", '{"type":"message:send","room":"r","client_msg_id":"c","body":"a\\u0000b"}')
    w("surrogate_lone", '{"type":"ping","id":"\\ud800"}')
    w("duplicate_keys", '{"type":"ping","type":"room:leave","room":"r"}')
    w("unknown_type", frame({"type": "message:delete", "id": "x"}))
    w("type_not_string", '{"type":1,"id":"t"}')
    w("not_object", '[{"type":"ping"}]')
    w("trailing", '{"type":"ping"} {"type":"ping"}')
    w("empty", b"")
    w("body_too_large", frame({"type": "message:send", "room": "r", "client_msg_id": "c",
                               "body": "x" * 16385}))
    w("members_1001", frame({"type": "room:create", "name": "n",
                             "members": ["u%d" % i for i in range(1001)]}))
    w("mentions_bad", frame({"type": "message:send", "room": "r", "client_msg_id": "c",
                             "body": "b", "mentions": ["ok", "not ok"]}))
    w("resume_101", frame({"type": "session:resume",
                           "rooms": {"r%d" % i: i for i in range(101)}}))


# ---------------------------------------------------------------- tokens

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(header, claims, key=SECRET, sig=None, raw_claims=None):
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    c = b64url(raw_claims.encode() if raw_claims is not None
               else json.dumps(claims, separators=(",", ":")).encode())
    signing = (h + "." + c).encode()
    if sig is None:
        alg = header.get("alg")
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384,
                  "HS512": hashlib.sha512}.get(alg)
        sig = b64url(hmac.new(key, signing, digest).digest()) if digest else ""
    return h + "." + c + "." + sig


def token_seeds():
    w = lambda name, data: write("fuzz_token", name, data)
    hs = {"alg": "HS256", "typ": "JWT"}
    good = {"sub": "alice", "tenant": "acme", "iat": IAT, "exp": FAR}
    valid = jwt(hs, good)
    w("valid_hs256", valid)
    w("valid_admin_default_tenant", jwt(hs, {"sub": "root", "role": "admin", "exp": FAR}))
    w("valid_nbf_past_iss_aud", jwt(hs, dict(good, nbf=IAT, iss="https://id.example",
                                              aud=["chatd", "other"])))
    w("alg_none", jwt({"alg": "none", "typ": "JWT"}, good, sig=""))
    w("alg_none_with_sig", jwt({"alg": "none"}, good, sig=valid.split(".")[2]))
    w("alg_hs512", jwt({"alg": "HS512", "typ": "JWT"}, good))
    w("alg_rs256_hmac", jwt({"alg": "RS256", "typ": "JWT"}, good,
                            sig=b64url(hmac.new(SECRET, b"x", hashlib.sha256).digest())))
    w("expired", jwt(hs, dict(good, exp=PAST)))
    w("no_exp", jwt(hs, {"sub": "alice", "tenant": "acme"}))
    w("exp_string", jwt(hs, dict(good, exp=str(FAR))))
    w("nbf_future", jwt(hs, dict(good, nbf=FAR)))
    h, c, s = valid.split(".")
    w("bad_signature", h + "." + c + "." + ("A" if s[0] != "A" else "B") + s[1:])
    w("other_secret", jwt(hs, good, key=b"another-secret-0123456789"))
    w("sub_invalid", jwt(hs, dict(good, sub="alice smith")))
    w("sub_65", jwt(hs, dict(good, sub="a" * 65)))
    w("sub_number", jwt(hs, dict(good, sub=42)))
    w("tenant_invalid", jwt(hs, dict(good, tenant="acme/evil")))
    w("claims_not_json", jwt(hs, None, raw_claims='{"sub":"alice",'))
    w("claims_array", jwt(hs, None, raw_claims='["sub","alice"]'))
    w("two_parts", h + "." + c)
    w("four_parts", valid + ".x")
    w("garbage", "not.a.token")
    w("empty", b"")
    # Claims for fuzz_token.c to sign itself (inputs starting with '{').
    c = lambda obj: json.dumps(obj, separators=(",", ":"))
    w("claims_valid", c(good))
    w("claims_admin_nbf", c({"sub": "root", "role": "admin", "exp": FAR, "nbf": IAT}))
    w("claims_iss_aud", c(dict(good, iss="https://id.example", aud="chatd")))
    w("claims_expired", c(dict(good, exp=PAST)))
    w("claims_types", c({"sub": ["alice"], "tenant": 7, "exp": 1.5e9, "nbf": "0",
                         "role": None}))
    # exp/nbf at the ends of the integer range, validly signed, so that they
    # reach auth_verify's date arithmetic (see crashes/README.md).
    w("exp_llong_max", jwt(hs, {"sub": "alice", "exp": LLONG_MAX}))
    w("nbf_llong_min", jwt(hs, {"sub": "alice", "exp": FAR, "nbf": LLONG_MIN}))
    w("exp_llong_min", jwt(hs, {"sub": "alice", "exp": LLONG_MIN}))


# ---------------------------------------------------------------- configs

def config_seeds():
    w = lambda name, data: write("fuzz_config", name, data)
    with open(os.path.join(HERE, "..", "..", "chatd.conf"), "rb") as f:
        w("chatd.conf", f.read())
    minimal = 'jwt_secret = "0123456789";\n'
    w("minimal", minimal)
    w("edges_ok", minimal + 'port = 65535;\nworkers = 64;\ninstance = "i-1";\n'
      'redis_url = "redis://h";\ndurability = "postgres";\nlog_level = "debug";\n'
      'jwt_leeway_s = 3600;\nmax_frame_bytes = 67108864;\n')
    w("rates_ok", minimal + 'rate_send = "1000000/86400";\nrate_typing = "1/1";\n'
      'rate_receipt = "007/060";\n')
    w("rates_bad", minimal + 'rate_send = "10/60/1";\n')
    w("rate_as_int", minimal + 'rate_join = 10;\n')
    w("rate_old_key", minimal + 'rate_send_per_s = 10;\n')
    w("hex_int64", minimal + "port = 0x1F90;\nworkers = 2L;\n")
    w("port_0", minimal + "port = 0;\n")
    w("port_65536", minimal + "port = 65536;\n")
    w("workers_65", minimal + "workers = 65;\n")
    w("int_huge", minimal + "port = 99999999999999999999;\nworkers = 9223372036854775807L;\n")
    w("int_as_string", minimal + 'port = "8080";\n')
    w("string_as_int", "jwt_secret = 12345678;\n")
    w("float", minimal + "port = 8080.0;\n")
    w("unknown_key", minimal + 'portt = 8080;\n')
    w("duplicate_key", minimal + "port = 1;\nport = 2;\n")
    w("listen_too_long", minimal + 'listen = "' + "a" * 64 + '";\n')
    w("secret_short", 'jwt_secret = "short";\n')
    w("no_secret", "port = 8080;\n")
    w("redis_urls", minimal + 'redis_url = "redis://h/0:1";\n')
    w("redis_empty_host", minimal + 'redis_url = "redis://:6379/0";\n')
    w("redis_port_bad", minimal + 'redis_url = "redis://h:99999/0";\n')
    w("redis_db_bad", minimal + 'redis_url = "redis://h:1/1024";\n')
    w("redis_long_host", minimal + 'redis_url = "redis://' + "h" * 300 + ':1/0";\n')
    w("alg_rs256_nokey", minimal + 'jwt_alg = "RS256";\n')
    w("alg_es256_missing_file", minimal + 'jwt_alg = "ES256";\n'
      'jwt_public_key_file = "/nonexistent/chatd-fuzz.pem";\n')
    w("alg_none", minimal + 'jwt_alg = "none";\n')
    w("bad_values", minimal + 'log_level = "loud";\ndefault_tenant = "a b";\n')
    w("groups_lists", minimal + 'extra = { a = 1; b = [1, 2]; c = ("x", 2.5); };\n')
    w("syntax_error", 'port = ;\n')
    w("comments_strings", '// c++\n/* block */ jwt_secret = "a" "b\\"c\\x41\\n0123456"; # tail\n')
    w("include_missing", '@include "/nonexistent/chatd-fuzz.conf"\n' + minimal)
    w("utf8_invalid", b'jwt_secret = "\xc3\x28\xff\xfe01234567";\n')
    w("empty", b"")


def cursor_seeds():
    w = lambda name, data: write("fuzz_cursor", name, data)
    w("one", b"general")
    w("two_with_cursor", b"general,random\0general=12,random=0")
    w("cursor_other_rooms", b"a,b\0c=5,a=7")
    w("bad_seq", b"a\0a=x")
    w("dup_room", b"a,a")
    w("empty_part", b"a,,b\0a=1")
    w("seq_huge", b"a\0a=4611686018427387905")
    w("id_65", b"r" * 65)


def main():
    proto_seeds()
    cursor_seeds()
    token_seeds()
    config_seeds()


if __name__ == "__main__":
    main()
