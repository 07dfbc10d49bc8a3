-- Read receipts (src/chat/receipt.c): how far each member has had the
-- room's events delivered, beside how far it has read them. Both only move
-- forward, and reading implies delivery (delivered_seq >= read_seq).
ALTER TABLE room_members ADD COLUMN delivered_seq bigint NOT NULL DEFAULT 0;
UPDATE room_members SET delivered_seq = read_seq WHERE read_seq > 0;

-- The members' positions of a room, furthest read first: the room:join
-- ack's receipts (LIMIT join_receipts_max) and message:seen's readers
-- (read_seq >= the message's seq) read this index in its order. Only the
-- members with a position are in it: a join of a big room where nobody
-- has marked anything reads nothing, and a member's row enters the index
-- with its first receipt.
CREATE INDEX room_members_read ON room_members (tenant, room_id, read_seq DESC, user_id)
    WHERE delivered_seq > 0;
