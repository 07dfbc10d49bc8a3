-- chatd_sync(batch): writes a batch of room events (the sync consumer's,
-- src/store/sync.c: [{"t": tenant, "r": room, "s": seq, "e": event}, ...])
-- into room_events, and projects them into messages, message_reactions and
-- mentions. Idempotent: an event already in room_events changes nothing.
--
-- A room's events reach PostgreSQL through several workers' consumers, in
-- batches that can commit in any order. So that the projection is the
-- same whatever the order:
--   * the rooms of a batch are locked (transaction advisory locks, in
--     sorted order) before anything is read, so two batches of one room
--     are applied one after the other, each seeing the other's rows;
--   * a message row is brought up to date from the log whenever it or a
--     later event of it is written: its newest edit and its delete are read
--     from room_events (index room_events_msg), so an edit that committed
--     before its message:new still lands;
--   * a reaction row changes only for a newer seq.
CREATE FUNCTION chatd_sync(batch jsonb) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    k   text;
    ev  jsonb[];
    ids jsonb;
BEGIN
    FOR k IN SELECT DISTINCT (x->>'t') || '/' || (x->>'r')
             FROM jsonb_array_elements(batch) AS x ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(k, 0));
    END LOOP;

    WITH ins AS (
        INSERT INTO room_events (tenant, room_id, seq, type, user_id, payload)
        SELECT x->>'t', x->>'r', (x->>'s')::bigint, x->'e'->>'type',
               coalesce(x->'e'->'msg'->>'user', x->'e'->>'user'), x->'e'
        FROM jsonb_array_elements(batch) AS x
        ON CONFLICT DO NOTHING
        RETURNING tenant, room_id, seq, payload)
    SELECT coalesce(array_agg(jsonb_build_object('t', tenant, 'r', room_id, 's', seq, 'e', payload)),
                    '{}')
    INTO ev FROM ins;
    IF cardinality(ev) = 0 THEN
        RETURN 0;
    END IF;

    INSERT INTO messages (tenant, room_id, id, seq, user_id, kind, body, client_msg_id,
                          reply_to, ts, attachments, mentions)
    SELECT x->>'t', x->>'r', x->'e'->'msg'->>'id', (x->>'s')::bigint, x->'e'->'msg'->>'user',
           coalesce(x->'e'->'msg'->>'kind', 'text'), x->'e'->'msg'->>'body',
           x->'e'->'msg'->>'client_msg_id', x->'e'->'msg'->>'reply_to',
           to_timestamp((x->'e'->'msg'->>'ts')::double precision / 1000),
           coalesce(x->'e'->'msg'->'attachments', '[]'),
           coalesce(ARRAY(SELECT jsonb_array_elements_text(x->'e'->'msg'->'mentions')), '{}')
    FROM unnest(ev) AS x WHERE x->'e'->>'type' = 'message:new'
    ON CONFLICT DO NOTHING;

    INSERT INTO mentions (tenant, user_id, room_id, seq, msg_id)
    SELECT x->>'t', u, x->>'r', (x->>'s')::bigint, x->'e'->'msg'->>'id'
    FROM unnest(ev) AS x,
         jsonb_array_elements_text(coalesce(x->'e'->'msg'->'mentions', '[]')) AS u
    WHERE x->'e'->>'type' = 'message:new' AND u <> x->'e'->'msg'->>'user'
    ON CONFLICT DO NOTHING;

    INSERT INTO message_reactions AS r (tenant, room_id, msg_id, emoji, user_id, present, seq)
    SELECT DISTINCT ON (x->>'t', x->>'r', x->'e'->>'msg_id', x->'e'->>'emoji', x->'e'->>'user')
           x->>'t', x->>'r', x->'e'->>'msg_id', x->'e'->>'emoji', x->'e'->>'user',
           (x->'e'->>'add')::boolean, (x->>'s')::bigint
    FROM unnest(ev) AS x WHERE x->'e'->>'type' = 'message:reaction'
    ORDER BY x->>'t', x->>'r', x->'e'->>'msg_id', x->'e'->>'emoji', x->'e'->>'user',
             (x->>'s')::bigint DESC
    ON CONFLICT (tenant, room_id, msg_id, emoji, user_id) DO UPDATE
        SET present = excluded.present, seq = excluded.seq WHERE r.seq < excluded.seq;

    -- Every message this batch touched, brought up to date from the log.
    UPDATE messages AS m
    SET body = coalesce(le.payload->>'body', m.body),
        edited_at = coalesce(to_timestamp((le.payload->>'edited_at')::double precision / 1000),
                             m.edited_at),
        edit_seq = coalesce(le.seq, m.edit_seq),
        edits = coalesce((le.payload->>'edits')::integer, m.edits),
        deleted_at = coalesce(m.deleted_at,
                              to_timestamp((de.payload->>'ts')::double precision / 1000)),
        deleted_by = coalesce(m.deleted_by, de.payload->>'by'),
        delete_seq = coalesce(m.delete_seq, de.seq)
    FROM (SELECT DISTINCT x->>'t' AS tenant, x->>'r' AS room_id,
                 coalesce(x->'e'->'msg'->>'id', x->'e'->>'msg_id') AS id
          FROM unnest(ev) AS x
          WHERE x->'e'->>'type' IN ('message:new', 'message:edited', 'message:deleted')) AS t
    LEFT JOIN LATERAL (
        SELECT e.seq, e.payload FROM room_events AS e
        WHERE e.tenant = t.tenant AND e.room_id = t.room_id AND e.payload->>'msg_id' = t.id
          AND e.type <> 'message:new' AND e.type = 'message:edited'
        ORDER BY e.seq DESC LIMIT 1) AS le ON true
    LEFT JOIN LATERAL (
        SELECT e.seq, e.payload FROM room_events AS e
        WHERE e.tenant = t.tenant AND e.room_id = t.room_id AND e.payload->>'msg_id' = t.id
          AND e.type <> 'message:new' AND e.type = 'message:deleted'
        ORDER BY e.seq LIMIT 1) AS de ON true
    WHERE m.tenant = t.tenant AND m.room_id = t.room_id AND m.id = t.id
      AND (le.seq IS NOT NULL OR de.seq IS NOT NULL)
      AND ((le.seq IS NOT NULL AND (m.edit_seq IS NULL OR m.edit_seq < le.seq))
           OR (de.seq IS NOT NULL AND m.delete_seq IS NULL));

    RETURN cardinality(ev);
END
$$;
