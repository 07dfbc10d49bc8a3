-- The chat itself: replies, mentions, attachments, edits, soft deletes,
-- reactions, read positions and full-text search. Every column here is
-- written by the sync consumer (src/store/sync.c) from the room log, or by
-- room:read; room_events stays the system of record.

ALTER TABLE messages
    ADD COLUMN attachments jsonb   NOT NULL DEFAULT '[]',
    ADD COLUMN mentions    text[]  COLLATE "C" NOT NULL DEFAULT '{}',
    ADD COLUMN edits       integer NOT NULL DEFAULT 0,
    ADD COLUMN deleted_by  text    COLLATE "C",
    ADD COLUMN delete_seq  bigint,
    -- English stemming: "sending" finds "send"; phrases keep word order.
    ADD COLUMN search      tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED;

CREATE INDEX messages_search ON messages USING gin (search);
CREATE INDEX messages_thread ON messages (tenant, room_id, reply_to, seq)
    WHERE reply_to IS NOT NULL;

-- One row per (message, emoji, user): present or not, as of the event seq.
-- Events of one room reach PostgreSQL through several workers' sync
-- consumers, out of order: a row changes only for a newer seq.
CREATE TABLE message_reactions (
    tenant   text    COLLATE "C" NOT NULL,
    room_id  text    COLLATE "C" NOT NULL,
    msg_id   text    COLLATE "C" NOT NULL,
    emoji    text    COLLATE "C" NOT NULL,
    user_id  text    COLLATE "C" NOT NULL,
    present  boolean NOT NULL,
    seq      bigint  NOT NULL,
    PRIMARY KEY (tenant, room_id, msg_id, emoji, user_id)
);

-- A user's mentions, newest id last (mention:list pages by id).
CREATE TABLE mentions (
    id       bigserial PRIMARY KEY,
    tenant   text   COLLATE "C" NOT NULL,
    user_id  text   COLLATE "C" NOT NULL,
    room_id  text   COLLATE "C" NOT NULL,
    seq      bigint NOT NULL,
    msg_id   text   COLLATE "C" NOT NULL,
    UNIQUE (tenant, user_id, room_id, seq)
);
CREATE INDEX mentions_user ON mentions (tenant, user_id, id);

-- room:read: the last seq the user has read, only ever moving forward.
ALTER TABLE room_members ADD COLUMN read_seq bigint NOT NULL DEFAULT 0;

-- message:edits reads a message's later events by its id.
CREATE INDEX room_events_msg ON room_events (tenant, room_id, (payload->>'msg_id'))
    WHERE type <> 'message:new';
