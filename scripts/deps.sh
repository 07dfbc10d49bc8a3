#!/usr/bin/env bash
# Make sure the Debian packages chatd needs (build, run, test) are installed.
#
#   scripts/deps.sh          build + runtime + test packages
#   scripts/deps.sh fuzz     the same plus clang and libFuzzer
#   scripts/deps.sh bench    the same plus libwslay-dev (bench/framecost.c only)
#
# Runs on every `make run` / `make test`, so the common case (everything is
# there) is a single dpkg-query call. As root, missing packages are installed
# with apt-get; otherwise the exact command to run is printed and we exit 1.
set -euo pipefail

# nginx: tests/test_fcgi.py runs Debian's nginx in front of chatd-fcgi (its
# own instance on loopback; the package's service is not used).
base_pkgs=(
    libuv1-dev libhttp-parser-dev libhiredis-dev
    libpq-dev libjansson-dev libjwt-dev libfcgi-dev libssl-dev libconfig-dev
    pkg-config gcc make
    redis-server redis-tools postgresql postgresql-client
    python3-pytest python3-websockets python3-psycopg2 python3-redis python3-prometheus-client
    procps curl valgrind openssl nginx
    chromium
    # Reactions in the web client's browser-test screenshots (tests/test_webchat.py).
    fonts-noto-color-emoji
)
fuzz_pkgs=(clang libclang-rt-14-dev libfuzzer-14-dev)
# bench/framecost.c compares chatd's frame reader with wslay's.
bench_pkgs=(libwslay-dev)

pkgs=("${base_pkgs[@]}")
for group in "$@"; do
    case "$group" in
        fuzz) pkgs+=("${fuzz_pkgs[@]}") ;;
        bench) pkgs+=("${bench_pkgs[@]}") ;;
        -h|--help) echo "usage: $0 [fuzz] [bench]"; exit 0 ;;
        *) echo "deps: unknown group '$group' (known: fuzz, bench)" >&2; exit 2 ;;
    esac
done

# Print the packages of "$@" that are not fully installed, one per line.
missing_pkgs() {
    local installed
    # Unknown packages make dpkg-query exit 1 and complain on stderr: both are
    # expected here; what is not listed as installed is missing.
    installed=$(dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null |
                awk '$2 == "install" && $4 == "installed" { print $1 }' || true)
    local p
    for p in "$@"; do
        grep -qxF -- "$p" <<<"$installed" || echo "$p"
    done
}

# npm builds the dashboard's vendor files (make runs `npm ci --prefix
# scripts/web`) and runs its browser test. It is not in base_pkgs: machines
# may have node and npm from elsewhere (/usr/bin/npm), which Debian's npm
# package would conflict with.
if ! command -v npm >/dev/null; then
    echo "deps: npm not found: install Debian's npm package" \
         "(apt-get install -y --no-install-recommends nodejs npm)" >&2
    exit 1
fi

mapfile -t missing < <(missing_pkgs "${pkgs[@]}")
if (( ${#missing[@]} == 0 )); then
    exit 0
fi

echo "deps: missing Debian packages: ${missing[*]}"
if (( EUID != 0 )); then
    echo "deps: not root; install them with:" >&2
    echo "sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "deps: apt-get update"
apt-get update -q
echo "deps: apt-get install ${missing[*]}"
# Installing postgresql or redis-server may start the system's own cluster on
# 5432 or Redis on 6379 (or fail to, in a container without init). chatd never
# uses them, so that is harmless; only a failed install is an error.
apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null

mapfile -t still < <(missing_pkgs "${missing[@]}")
if (( ${#still[@]} > 0 )); then
    echo "deps: still not installed after apt-get: ${still[*]}" >&2
    exit 1
fi
echo "deps: installed ${missing[*]}"
