#!/usr/bin/env bash
# Apply the schema migrations sql/NNN_name.sql that the database lacks.
#
#   scripts/migrate.sh [DATABASE_URL]     default: DATABASE_URL of .run/dev/env
#
# Applied versions are recorded in schema_migrations(version, name,
# applied_at). Each file runs in its own transaction together with its
# schema_migrations row, so a failing migration leaves no trace and the next
# run retries it. Files must not contain BEGIN/COMMIT themselves.
set -euo pipefail
export LC_ALL=C

PROG=migrate
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)

die() {
    echo "$PROG: $*" >&2
    exit 1
}

(($# <= 1)) || die "usage: $0 [DATABASE_URL]"
url=${1:-}
if [[ -z $url ]]; then
    env_file=$ROOT/.run/dev/env
    [[ -f $env_file ]] ||
        die "no DATABASE_URL given and no $env_file (run: scripts/services.sh start dev)"
    url=$(sed -n 's/^DATABASE_URL=//p' "$env_file" | tail -n 1)
    [[ -n $url ]] || die "no DATABASE_URL in $env_file"
fi
command -v psql >/dev/null || die "psql not found (run scripts/deps.sh)"

run_psql() {
    psql -X -q -v ON_ERROR_STOP=1 -d "$url" "$@"
}

# The URL may carry a password: show it without one.
shown_url=$(sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$url")

# client_min_messages hides the "already exists, skipping" notice.
run_psql -c "SET client_min_messages = warning" \
    -c "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    int         PRIMARY KEY,
            name       text        NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())" ||
    die "cannot prepare schema_migrations in $shown_url"

applied=$(run_psql -tA -c "SELECT version FROM schema_migrations ORDER BY version") ||
    die "cannot read schema_migrations in $shown_url"

declare -A seen=()
count=0
for file in "$ROOT"/sql/[0-9][0-9][0-9]_*.sql; do
    [[ -e $file ]] || continue
    base=${file##*/}
    [[ $base =~ ^([0-9]{3})_([A-Za-z0-9_-]+)\.sql$ ]] ||
        die "bad migration file name $base (want NNN_name.sql, name of [A-Za-z0-9_-])"
    version=$((10#${BASH_REMATCH[1]}))
    name=${BASH_REMATCH[2]}
    [[ -z ${seen[$version]:-} ]] ||
        die "two migrations with version $version: ${seen[$version]} and $base"
    seen[$version]=$base
    grep -qxF -- "$version" <<<"$applied" && continue

    if grep -qiE '^[[:space:]]*(BEGIN|COMMIT|ROLLBACK|START[[:space:]]+TRANSACTION)[[:space:]]*;' "$file"; then
        die "$base controls its own transaction (BEGIN/COMMIT); remove that, migrate.sh wraps each file"
    fi
    # --single-transaction wraps the file and the insert in one BEGIN/COMMIT;
    # with ON_ERROR_STOP any error rolls back both.
    run_psql --single-transaction -f "$file" \
        -c "INSERT INTO schema_migrations (version, name) VALUES ($version, '$name')" ||
        die "$base failed; nothing of it was applied"
    echo "applied $base"
    count=$((count + 1))
done

current=$(run_psql -tA -c "SELECT coalesce(max(version), 0) FROM schema_migrations") ||
    die "cannot read schema_migrations in $shown_url"
((count > 0)) || echo "no new migrations"
echo "schema at version $current"
