"""Fixtures: chatd servers, unique tenants, PostgreSQL and Redis handles.

Run with `make test`, or by hand once the test services run:
    scripts/services.sh start test && /usr/bin/python3 -m pytest tests/
"""

import pytest

from chatd_harness import Server, chatd_env, pg_connect, redis_client, sanitizer_reports, unique_id


def shut_down(servers):
    """Stop every server still running; fail on a hang or a sanitizer report."""
    problems = []
    for srv in servers:
        if srv.proc is None:
            continue
        try:
            srv.stop(timeout=15)
        except AssertionError as e:
            problems.append(f"port {srv.port}: {e}")
        reports = sanitizer_reports(srv.log())
        if reports:
            problems.append(f"port {srv.port}: crash or sanitizer report in {srv.log_path}:\n"
                            + "\n".join(reports[:10]))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def env():
    try:
        return chatd_env()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    """One chatd with 2 workers, shared by the tests of a module."""
    srv = Server(tmp_path_factory.mktemp("chatd")).start()
    yield srv
    shut_down([srv])


@pytest.fixture
def make_server(env, tmp_path):
    """Factory for tests that kill, restart or misconfigure chatd:
    make_server(wait=True, **conf) -> started Server."""
    servers = []

    def make(wait=True, **conf):
        srv = Server(tmp_path / f"chatd{len(servers)}", **conf)
        servers.append(srv)
        return srv.start(wait=wait)

    yield make
    shut_down(servers)


@pytest.fixture
def tenant():
    """A tenant of its own: a test sees no other test's rooms."""
    return unique_id("t")


@pytest.fixture
def db(env):
    conn = pg_connect()
    yield conn
    conn.close()


@pytest.fixture
def redis_db(env):
    client = redis_client()
    yield client
    client.close()
