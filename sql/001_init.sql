-- chatd schema, version 1: rooms, members, the append-only room log and the
-- messages projection. Applied once by scripts/migrate.sh.

CREATE TABLE rooms (
    tenant      text        NOT NULL,
    id          text        NOT NULL,
    name        text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('group', 'direct', 'support', 'broadcast')),
    private     boolean     NOT NULL DEFAULT false,
    description text        NOT NULL DEFAULT '',
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    direct_key  text,       -- "userA|userB" (sorted) for direct rooms
    PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX rooms_direct_key ON rooms (tenant, direct_key) WHERE direct_key IS NOT NULL;

CREATE TABLE room_members (
    tenant      text        NOT NULL,
    room_id     text        NOT NULL,
    user_id     text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('admin', 'moderator', 'member')),
    joined_at   timestamptz NOT NULL DEFAULT now(),
    muted_until timestamptz,
    banned      boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant, room_id, user_id),
    FOREIGN KEY (tenant, room_id) REFERENCES rooms (tenant, id) ON DELETE CASCADE
);
CREATE INDEX room_members_user ON room_members (tenant, user_id);

-- The system of record: every durable room event, in seq order, never updated.
CREATE TABLE room_events (
    tenant      text        NOT NULL,
    room_id     text        NOT NULL,
    seq         bigint      NOT NULL CHECK (seq > 0),
    type        text        NOT NULL,
    user_id     text,
    payload     jsonb       NOT NULL,   -- the event exactly as subscribers received it
    synced_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, room_id, seq)
);

-- Projection of message:new events (edits, deletes and reactions update it later).
CREATE TABLE messages (
    tenant        text        NOT NULL,
    room_id       text        NOT NULL,
    id            text        NOT NULL,
    seq           bigint      NOT NULL,
    user_id       text        NOT NULL,
    kind          text        NOT NULL DEFAULT 'text',
    body          text        NOT NULL,
    client_msg_id text,
    reply_to      text,
    ts            timestamptz NOT NULL,
    edited_at     timestamptz,
    deleted_at    timestamptz,
    PRIMARY KEY (tenant, room_id, id),
    UNIQUE (tenant, room_id, seq)
);
