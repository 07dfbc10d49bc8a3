# chatd in a container: build and run the optimised binary with
# conf/chatd.production.conf (listens on 0.0.0.0:8080).
# Redis and PostgreSQL are not included: point chatd at them with REDIS_URL
# and DATABASE_URL (the file's defaults are redis:6379 and db:5432), and set
# CHATD_JWT_SECRET (the file has no jwt_secret: chatd refuses to start
# without it), e.g.
#   docker run -p 8080:8080 -e REDIS_URL=redis://redis:6379/0 \
#     -e DATABASE_URL=postgresql://chatd@db:5432/chatd -e CHATD_JWT_SECRET=... chatd
# Apply the schema first with scripts/migrate.sh DATABASE_URL (needs psql).
FROM debian:12-slim

# One stage: build tools and -dev packages, which pull in the runtime
# libraries (libhttp-parser-dev brings libhttp-parser2.9, libuv1-dev libuv1,
# ...). Redis and PostgreSQL are separate services, so no server package.
# nodejs + npm: make runs `npm ci --prefix scripts/web` for the dashboard's
# uPlot (copied into assets/monitoring/vendor/).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev make pkg-config \
      libuv1-dev libhttp-parser-dev libhiredis-dev \
      libpq-dev libjansson-dev libjwt-dev libfcgi-dev libssl-dev libconfig-dev \
      nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --system --home-dir /app --shell /usr/sbin/nologin chatd

WORKDIR /app
COPY . .
RUN make clean && make -j"$(nproc)"

USER chatd
EXPOSE 8080
CMD ["build/chatd", "-c", "conf/chatd.production.conf"]
