"""A smoke run of the optimised build under valgrind: a short chat session,
bad input, a drain; valgrind must report no invalid access and no leak in
the parent or the worker."""

import re
import shutil

import pytest

from chatd_harness import REPO, Client, make_room, run

VALGRIND_OPTS = ["--leak-check=full", "--show-leak-kinds=definite,indirect",
                 "--errors-for-leak-kinds=definite,indirect", "--track-fds=no"]


def test_no_leak_or_invalid_access_under_valgrind(make_server, tenant, tmp_path):
    valgrind = shutil.which("valgrind")
    binary = REPO / "build" / "chatd"
    if valgrind is None or not binary.exists():
        pytest.fail("valgrind and build/chatd are needed (make test installs and builds them)")
    logs = tmp_path / "valgrind"
    logs.mkdir()
    srv = make_server(wait=False, workers=1, binary=str(binary),
                      prefix=[valgrind, *VALGRIND_OPTS, f"--log-file={logs}/vg.%p.log"])
    srv.wait_ready(timeout=90)

    async def session():
        alice = await Client.connect(srv, "alice", tenant, timeout=30)
        bob = await Client.connect(srv, "bob", tenant, timeout=30)
        room = await make_room(alice, bob)
        ack = await alice.ok("message:send", timeout=30, room=room, client_msg_id="vg-1",
                             body="under valgrind")
        frame = await bob.take(lambda f: f.get("type") == "message:new", 30, "message:new")
        assert frame["seq"] == ack["seq"]
        await alice.send_raw("not json")
        error = await alice.take(lambda f: f.get("type") == "error", 30, "error")
        assert error["code"] == "bad_request"
        page = await bob.ok("message:history", timeout=30, room=room)
        assert [e["seq"] for e in page["events"]] == [ack["seq"]]
        await bob.close()

    run(session(), timeout=150)
    assert srv.stop(timeout=60) == 0
    reports = sorted(logs.glob("vg.*.log"))
    assert len(reports) >= 2, f"expected the parent's and the worker's reports: {reports}"
    for report in reports:
        text = report.read_text(errors="replace")
        assert "ERROR SUMMARY: 0 errors" in text, f"{report}:\n{text[-4000:]}"
        for kind in ("definitely", "indirectly"):
            lost = re.search(rf"{kind} lost: ([\d,]+) bytes", text)
            assert lost is None or lost.group(1) == "0", f"{report}:\n{text[-4000:]}"
