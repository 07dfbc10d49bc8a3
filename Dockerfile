# chatd in a container: build and run the optimised binary.
# Redis and PostgreSQL are not included: point chatd at them with REDIS_URL
# and DATABASE_URL (and set CHATD_JWT_SECRET), e.g.
#   docker run -p 8080:8080 -e REDIS_URL=redis://redis:6379/0 \
#     -e DATABASE_URL=postgresql://chatd@db:5432/chatd -e CHATD_JWT_SECRET=... chatd
# Apply the schema first with scripts/migrate.sh DATABASE_URL (needs psql).
FROM debian:12-slim

# Build tools and -dev packages (which pull in the runtime libraries), plus
# libwebsockets-evlib-uv, which lws loads as a plugin at run time.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev make pkg-config \
      libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libhiredis-dev \
      libpq-dev libjansson-dev libjwt-dev libfcgi-dev libssl-dev libconfig-dev \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --system --home-dir /app --shell /usr/sbin/nologin chatd

WORKDIR /app
COPY . .
RUN make clean && make -j"$(nproc)"

USER chatd
ENV CHATD_LISTEN=0.0.0.0
EXPOSE 8080
CMD ["build/chatd", "-c", "chatd.conf"]
