-- The seq of the edit a message's body comes from. Edits reach PostgreSQL
-- through the sync consumers of several workers, whose statements can
-- commit out of seq order: an edit is applied only over an older one
-- (edit_seq < its seq), which the UPDATE re-checks on the row it waited for.
ALTER TABLE messages ADD COLUMN edit_seq bigint;
