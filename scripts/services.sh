#!/usr/bin/env bash
# Private Redis and PostgreSQL for chatd, one independent pair per SET.
#
#   scripts/services.sh start|stop|status SET
#   scripts/services.sh start-redis|stop-redis|restart-redis SET
#   scripts/services.sh start-pg|stop-pg SET
#
# SET is dev (Redis 6390, PostgreSQL 5440), test (6391, 5441) or bench (6392,
# 5442, used by bench/run.py); the ports can
# be changed with CHATD_REDIS_PORT / CHATD_PG_PORT. Once started, a set keeps
# the ports recorded in .run/SET/env until a full `stop`, so the single-service
# commands work without repeating the override. Everything lives under
# <repo>/.run/SET/ and listens on 127.0.0.1 only.
#
# `start` is idempotent, waits until both services answer and writes
# .run/SET/env (REDIS_URL, DATABASE_URL, REDIS_PORT, PG_PORT, RUN_DIR).
# `status` exits 0 when both services answer, 3 otherwise.
#
# The settings common to every set are in conf/redis.conf and
# conf/postgresql.conf; this script adds only what differs per set (ports,
# directories, pidfile, logs). redis-server is started with conf/redis.conf
# plus --port/--dir/--pidfile/--logfile; each cluster's own postgresql.conf
# ends with an `include` of conf/postgresql.conf (added on every start), and
# pg_ctl passes the port and socket directory. Redis' maxmemory is
# conf/redis.conf's (256mb) for dev and test, and 1gb for bench (a full
# `make bench` session keeps ~280 bytes of dedupe key per message sent, a few
# hundred thousand messages); CHATD_REDIS_MAXMEMORY (e.g. 512mb) overrides it
# for any set.
#
# As root, PostgreSQL runs as the `postgres` system user (initdb and pg_ctl
# refuse root): its data, socket and log are chowned to postgres, and the
# directories above .run/SET get search permission for it if they lack it.
set -euo pipefail
umask 022

PROG=services
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
TIMEOUT=${CHATD_SERVICES_TIMEOUT:-30}

usage() {
    cat >&2 <<EOF
usage: $0 COMMAND SET
  COMMAND: start stop status restart-redis stop-redis start-redis stop-pg start-pg
  SET:     dev (redis 6390, pg 5440), test (redis 6391, pg 5441) or
           bench (redis 6392, pg 5442; used by bench/run.py)
  env:     CHATD_REDIS_PORT, CHATD_PG_PORT override the ports;
           CHATD_REDIS_MAXMEMORY (e.g. 512mb) Redis' maxmemory
EOF
    exit 2
}

die() {
    echo "$PROG: $*" >&2
    exit 1
}

# die_log LOG MESSAGE...: one-line error, then the end of the service's log.
die_log() {
    local log=$1
    shift
    echo "$PROG: $*" >&2
    if [[ -s $log ]]; then
        echo "$PROG: last lines of $log:" >&2
        tail -n 15 "$log" | sed 's/^/    /' >&2
    fi
    exit 1
}

# wait_until SECONDS COMMAND...: retry COMMAND every 0.1 s until it succeeds.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

valid_port() {
    [[ $1 =~ ^[0-9]{1,5}$ ]] && ((10#$1 > 0 && 10#$1 < 65536))
}

(($# == 2)) || usage
CMD=$1
SET=$2
# default_redis_maxmemory: "" keeps conf/redis.conf's maxmemory.
case $SET in
    dev) default_redis_port=6390 default_pg_port=5440 default_redis_maxmemory= ;;
    test) default_redis_port=6391 default_pg_port=5441 default_redis_maxmemory= ;;
    bench) default_redis_port=6392 default_pg_port=5442 default_redis_maxmemory=1gb ;;
    *) usage ;;
esac

RUN_DIR=$ROOT/.run/$SET
ENV_FILE=$RUN_DIR/env
# The paths go into a generated config file and a pg_ctl -o string.
[[ $RUN_DIR != *[[:space:]\'\"\\]* ]] ||
    die "the repository path must not contain spaces or quotes: $ROOT"

recorded() {
    [[ -f $ENV_FILE ]] && sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1
    return 0
}
REDIS_PORT=${CHATD_REDIS_PORT:-$(recorded REDIS_PORT)}
REDIS_PORT=${REDIS_PORT:-$default_redis_port}
PG_PORT=${CHATD_PG_PORT:-$(recorded PG_PORT)}
PG_PORT=${PG_PORT:-$default_pg_port}
valid_port "$REDIS_PORT" || die "bad Redis port '$REDIS_PORT'"
valid_port "$PG_PORT" || die "bad PostgreSQL port '$PG_PORT'"
[[ $REDIS_PORT != "$PG_PORT" ]] || die "Redis and PostgreSQL ports are both $PG_PORT"
REDIS_MAXMEMORY=${CHATD_REDIS_MAXMEMORY:-$default_redis_maxmemory}
[[ -z $REDIS_MAXMEMORY || $REDIS_MAXMEMORY =~ ^[0-9]+([kKmMgG][bB]?)?$ ]] ||
    die "bad CHATD_REDIS_MAXMEMORY '$REDIS_MAXMEMORY' (e.g. 256mb, 1gb)"

# The settings shared by every set (docs/configuration.md, "conf/").
REDIS_CONF=$ROOT/conf/redis.conf
PG_CONF=$ROOT/conf/postgresql.conf

REDIS_DIR=$RUN_DIR/redis
REDIS_PIDFILE=$RUN_DIR/redis.pid
REDIS_LOG=$RUN_DIR/redis.log

PG_DATA=$RUN_DIR/pg
PG_LOG=$RUN_DIR/pg.log
PG_SOCK=$RUN_DIR/pg-sock
# A Unix socket path is limited to 107 bytes (".s.PGSQL.NNNNN.lock" included);
# a deeply nested checkout gets a short socket directory under /tmp instead.
if ((${#PG_SOCK} + 21 > 107)); then
    PG_SOCK=/tmp/chatd-pgsock-$(printf '%s' "$RUN_DIR" | md5sum | cut -c1-12)
fi

IS_ROOT=0
((EUID != 0)) || IS_ROOT=1

# ---------------------------------------------------------------- Redis

# Print the pid of this set's redis-server if it is running.
redis_pid() {
    local pid
    pid=$(cat "$REDIS_PIDFILE" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    # Guard against a stale pidfile whose pid was reused.
    [[ $(ps -o comm= -p "$pid" 2>/dev/null) == redis-server* ]] || return 1
    echo "$pid"
}

redis_ping() {
    [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

redis_up() {
    redis_pid >/dev/null && redis_ping
}

start_redis() {
    local pid
    command -v redis-server >/dev/null || die "redis-server not found (run scripts/deps.sh)"
    [[ -r $REDIS_CONF ]] || die "cannot read $REDIS_CONF"
    mkdir -p "$REDIS_DIR"
    if pid=$(redis_pid); then
        [[ $(ps -o args= -p "$pid") == *:"$REDIS_PORT"* ]] ||
            die "redis ($SET): already running as pid $pid on another port ($(ps -o args= -p "$pid")); stop it first"
        wait_until "$TIMEOUT" redis_ping ||
            die_log "$REDIS_LOG" "redis ($SET): pid $pid does not answer on 127.0.0.1:$REDIS_PORT"
        echo "redis ($SET): already running on 127.0.0.1:$REDIS_PORT (pid $pid)"
        return 0
    fi
    # .run/SET/redis.conf was generated here before conf/redis.conf existed.
    rm -f "$REDIS_PIDFILE" "$RUN_DIR/redis.conf"
    # conf/redis.conf, then this set's options: the command line wins.
    local args=(--port "$REDIS_PORT" --dir "$REDIS_DIR"
                --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG")
    [[ -z $REDIS_MAXMEMORY ]] || args+=(--maxmemory "$REDIS_MAXMEMORY")
    redis-server "$REDIS_CONF" "${args[@]}" 9>&- ||
        die_log "$REDIS_LOG" "redis ($SET): redis-server failed to start"
    # The pidfile is written once the port is bound: if it does not appear, the
    # server has exited (port in use, bad config).
    wait_until 5 redis_pid >/dev/null ||
        die_log "$REDIS_LOG" "redis ($SET): redis-server exited during start (port $REDIS_PORT in use?)"
    wait_until "$TIMEOUT" redis_up ||
        die_log "$REDIS_LOG" "redis ($SET): no answer on 127.0.0.1:$REDIS_PORT after ${TIMEOUT}s"
    echo "redis ($SET): started on 127.0.0.1:$REDIS_PORT (pid $(redis_pid))"
}

pid_gone() {
    ! kill -0 "$1" 2>/dev/null
}

stop_redis() {
    local pid
    if ! pid=$(redis_pid); then
        rm -f "$REDIS_PIDFILE"
        echo "redis ($SET): not running"
        return 0
    fi
    # SHUTDOWN (not NOSAVE) flushes and fsyncs the AOF before exiting.
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
    if ! wait_until "$TIMEOUT" pid_gone "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_until 10 pid_gone "$pid" ||
            die_log "$REDIS_LOG" "redis ($SET): pid $pid did not stop"
    fi
    rm -f "$REDIS_PIDFILE"
    echo "redis ($SET): stopped"
}

# ----------------------------------------------------------- PostgreSQL

# Choose the server binaries: the version of an existing cluster, else the
# highest version installed.
pg_bindir() {
    local v=""
    if [[ -f $PG_DATA/PG_VERSION ]]; then
        v=$(<"$PG_DATA/PG_VERSION")
        [[ -x /usr/lib/postgresql/$v/bin/pg_ctl ]] ||
            die "cluster $PG_DATA is PostgreSQL $v, but /usr/lib/postgresql/$v/bin is missing"
    else
        v=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -regex '.*/[0-9]+' \
                -printf '%f\n' 2>/dev/null | sort -n | tail -n 1)
        [[ -n $v && -x /usr/lib/postgresql/$v/bin/pg_ctl ]] ||
            die "PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/deps.sh)"
    fi
    echo "/usr/lib/postgresql/$v/bin"
}

# Run a server binary as the cluster's owner: postgres when we are root.
as_pg() {
    if ((IS_ROOT)); then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Give the postgres user search permission on every directory down to DIR.
make_traversable() {
    local dir=$1 d
    runuser -u postgres -- test -x "$dir" 2>/dev/null && return 0
    d=$dir
    while [[ -n $d && $d != / ]]; do
        if [[ $(stat -c %A "$d") != ?????????[xt] ]]; then
            echo "$PROG: granting search permission (o+x) on $d for the postgres user"
            chmod o+x "$d"
        fi
        d=$(dirname "$d")
    done
    runuser -u postgres -- test -x "$dir" 2>/dev/null ||
        die "the postgres user cannot reach $dir; give it search permission on the path"
}

prepare_pg_dirs() {
    mkdir -p "$PG_DATA" "$PG_SOCK"
    touch "$PG_LOG"
    if ((IS_ROOT)); then
        getent passwd postgres >/dev/null ||
            die "no 'postgres' system user (is the postgresql package installed? run scripts/deps.sh)"
        make_traversable "$RUN_DIR"
        make_traversable "$PG_SOCK"
        if [[ $(stat -c %U "$PG_DATA") != postgres ]]; then
            chown -R postgres:postgres "$PG_DATA"
        fi
        chown postgres:postgres "$PG_SOCK" "$PG_LOG"
    fi
    chmod 700 "$PG_DATA"
}

pg_running() {
    [[ -f $PG_DATA/PG_VERSION ]] || return 1
    as_pg "$BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_pid() {
    head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null
}

pg_ready() {
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -U chatd -d postgres
}

pg_psql() {
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U chatd "$@"
}

# Make the cluster's postgresql.conf end with an include of conf/postgresql.conf
# (settings read later win over initdb's). The line is rewritten on every
# start, so a moved checkout gets the new path. Rewritten in place (`>`), the
# file keeps its owner (postgres when we are root).
PG_INCLUDE_MARK="# chatd: added by scripts/services.sh"
include_pg_conf() {
    local conf=$PG_DATA/postgresql.conf kept
    [[ -r $PG_CONF ]] || die "cannot read $PG_CONF"
    if ((IS_ROOT)); then
        make_traversable "$(dirname "$PG_CONF")"
        runuser -u postgres -- test -r "$PG_CONF" ||
            die "the postgres user cannot read $PG_CONF; make it world-readable"
    fi
    [[ -f $conf ]] || die "postgres ($SET): $conf is missing"
    kept=$(grep -vF -- "$PG_INCLUDE_MARK" "$conf" || true)
    printf '%s\n%s\n' "$kept" "include '$PG_CONF'  $PG_INCLUDE_MARK" >"$conf"
}

init_pg() {
    [[ -f $PG_DATA/PG_VERSION ]] && return 0
    # No PG_VERSION: nothing but leftovers of an interrupted initdb.
    find "$PG_DATA" -mindepth 1 -delete
    echo "postgres ($SET): initdb $PG_DATA"
    local common=(-D "$PG_DATA" -U chatd --auth=trust -E UTF8)
    if ! as_pg "$BIN/initdb" "${common[@]}" --locale=C.UTF-8 >>"$PG_LOG" 2>&1; then
        echo "postgres ($SET): initdb with C.UTF-8 failed, retrying with --no-locale"
        find "$PG_DATA" -mindepth 1 -delete
        as_pg "$BIN/initdb" "${common[@]}" --no-locale >>"$PG_LOG" 2>&1 ||
            die_log "$PG_LOG" "postgres ($SET): initdb failed"
    fi
}

start_pg() {
    command -v psql >/dev/null || die "psql not found (run scripts/deps.sh)"
    BIN=$(pg_bindir)
    prepare_pg_dirs
    if pg_running; then
        local running_port
        running_port=$(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null)
        [[ -z $running_port || $running_port == "$PG_PORT" ]] ||
            die "postgres ($SET): already running on port $running_port, not $PG_PORT; stop it first"
        wait_until "$TIMEOUT" pg_ready ||
            die_log "$PG_LOG" "postgres ($SET): running but not answering on 127.0.0.1:$PG_PORT"
        echo "postgres ($SET): already running on 127.0.0.1:$PG_PORT (pid $(pg_pid))"
    else
        init_pg
        include_pg_conf
        BIN=$(pg_bindir)
        # conf/postgresql.conf has the rest (listen_addresses, fsync, ...).
        local opts="-p $PG_PORT -c unix_socket_directories=$PG_SOCK"
        # pg_ctl's own messages go to the log too (both append).
        # shellcheck disable=SC2094
        as_pg "$BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -o "$opts" -w -t "$TIMEOUT" start \
            >>"$PG_LOG" 2>&1 9>&- ||
            die_log "$PG_LOG" "postgres ($SET): pg_ctl start failed (port $PG_PORT in use?)"
        wait_until "$TIMEOUT" pg_ready ||
            die_log "$PG_LOG" "postgres ($SET): no answer on 127.0.0.1:$PG_PORT after ${TIMEOUT}s"
        echo "postgres ($SET): started on 127.0.0.1:$PG_PORT (pid $(pg_pid))"
    fi
    local have
    have=$(pg_psql -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = 'chatd'") ||
        die "postgres ($SET): cannot query 127.0.0.1:$PG_PORT as user chatd"
    if [[ $have != 1 ]]; then
        pg_psql -d postgres -c "CREATE DATABASE chatd" ||
            die "postgres ($SET): CREATE DATABASE chatd failed"
        echo "postgres ($SET): created database chatd"
    fi
}

stop_pg() {
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        echo "postgres ($SET): not running"
        return 0
    fi
    BIN=$(pg_bindir)
    if ! pg_running; then
        echo "postgres ($SET): not running"
        return 0
    fi
    as_pg "$BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$TIMEOUT" stop >/dev/null ||
        die_log "$PG_LOG" "postgres ($SET): pg_ctl stop failed"
    echo "postgres ($SET): stopped"
}

# ------------------------------------------------------------- commands

write_env() {
    local tmp=$ENV_FILE.tmp.$$
    cat >"$tmp" <<EOF
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
DATABASE_URL=postgresql://chatd@127.0.0.1:$PG_PORT/chatd
REDIS_PORT=$REDIS_PORT
PG_PORT=$PG_PORT
RUN_DIR=$RUN_DIR
EOF
    mv -f "$tmp" "$ENV_FILE"
}

status() {
    local rc=0 pid
    if pid=$(redis_pid); then
        if redis_ping; then
            echo "redis ($SET): running on 127.0.0.1:$REDIS_PORT (pid $pid)"
        else
            echo "redis ($SET): pid $pid not answering on 127.0.0.1:$REDIS_PORT"
            rc=3
        fi
    else
        echo "redis ($SET): stopped"
        rc=3
    fi
    if [[ -f $PG_DATA/PG_VERSION ]] && BIN=$(pg_bindir) && pg_running; then
        if pg_ready; then
            echo "postgres ($SET): running on 127.0.0.1:$PG_PORT (pid $(pg_pid))"
        else
            echo "postgres ($SET): pid $(pg_pid) not answering on 127.0.0.1:$PG_PORT"
            rc=3
        fi
    else
        echo "postgres ($SET): stopped"
        rc=3
    fi
    [[ ! -f $ENV_FILE ]] || echo "env: $ENV_FILE"
    return $rc
}

# Serialise commands on one set (two `make test` at once, a test stopping Redis
# while another starts it). Daemons are started with fd 9 closed so that they
# do not keep holding the lock.
lock_set() {
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/.lock"
    flock -w $((TIMEOUT * 3)) 9 || die "another services.sh holds $RUN_DIR/.lock"
}

case $CMD in
    start)
        lock_set
        start_redis
        start_pg
        write_env
        echo "services ($SET): ready, env in ${ENV_FILE#"$ROOT"/}"
        ;;
    stop)
        lock_set
        stop_redis
        stop_pg
        rm -f "$ENV_FILE"
        ;;
    status)
        status
        ;;
    start-redis)
        lock_set
        start_redis
        write_env
        ;;
    stop-redis)
        lock_set
        stop_redis
        ;;
    restart-redis)
        lock_set
        stop_redis
        start_redis
        write_env
        ;;
    start-pg)
        lock_set
        start_pg
        write_env
        ;;
    stop-pg)
        lock_set
        stop_pg
        ;;
    *) usage ;;
esac
