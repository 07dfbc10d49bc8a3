-- Identifiers compare as bytes. chatd's ids (tenant, room, user, message,
-- client_msg_id) are validated to [A-Za-z0-9_.:-] before they reach SQL, so
-- their order under the "C" collation is the same set and a plain byte
-- comparison: PostgreSQL 15 runs strcoll() for every B-tree comparison
-- under any other collation (C.UTF-8 included), which was the largest part
-- of the sync consumer's INSERT cost in bench/ (varstr_cmp, strcoll).
-- Rewrites the tables and their indexes once.

ALTER TABLE room_members DROP CONSTRAINT room_members_tenant_room_id_fkey;

ALTER TABLE rooms
    ALTER COLUMN tenant     TYPE text COLLATE "C",
    ALTER COLUMN id         TYPE text COLLATE "C",
    ALTER COLUMN created_by TYPE text COLLATE "C",
    ALTER COLUMN direct_key TYPE text COLLATE "C";

ALTER TABLE room_members
    ALTER COLUMN tenant  TYPE text COLLATE "C",
    ALTER COLUMN room_id TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C",
    ADD FOREIGN KEY (tenant, room_id) REFERENCES rooms (tenant, id) ON DELETE CASCADE;

ALTER TABLE room_events
    ALTER COLUMN tenant  TYPE text COLLATE "C",
    ALTER COLUMN room_id TYPE text COLLATE "C",
    ALTER COLUMN type    TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C";

ALTER TABLE messages
    ALTER COLUMN tenant        TYPE text COLLATE "C",
    ALTER COLUMN room_id       TYPE text COLLATE "C",
    ALTER COLUMN id            TYPE text COLLATE "C",
    ALTER COLUMN user_id       TYPE text COLLATE "C",
    ALTER COLUMN client_msg_id TYPE text COLLATE "C",
    ALTER COLUMN reply_to      TYPE text COLLATE "C";
