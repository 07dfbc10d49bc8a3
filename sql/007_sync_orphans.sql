-- chatd_sync(batch), cheaper: a message row is brought up to date from the
-- log only when this batch edits or deletes it, or when an earlier batch
-- left an edit or a delete waiting for it (message_orphans) -- not every
-- new message of every batch (two index probes each, which doubled the
-- sync's PostgreSQL time at 5,000 messages a second). Mentions are read
-- only from messages that have some. Otherwise as 005_sync.sql says.

-- An edit or delete whose message row was not there yet (its message:new
-- is in a batch of another worker's consumer that commits later).
CREATE TABLE message_orphans (
    tenant   text COLLATE "C" NOT NULL,
    room_id  text COLLATE "C" NOT NULL,
    msg_id   text COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, room_id, msg_id)
);

CREATE OR REPLACE FUNCTION chatd_sync(batch jsonb) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    k   text;
    ev  jsonb[];
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
           CASE WHEN coalesce(x->'e'->'msg'->'mentions', '[]') = '[]' THEN '{}'
                ELSE ARRAY(SELECT jsonb_array_elements_text(x->'e'->'msg'->'mentions')) END
    FROM unnest(ev) AS x WHERE x->'e'->>'type' = 'message:new'
    ON CONFLICT DO NOTHING;

    INSERT INTO mentions (tenant, user_id, room_id, seq, msg_id)
    SELECT x->>'t', u, x->>'r', (x->>'s')::bigint, x->'e'->'msg'->>'id'
    FROM unnest(ev) AS x, jsonb_array_elements_text(x->'e'->'msg'->'mentions') AS u
    WHERE x->'e'->>'type' = 'message:new' AND x->'e'->'msg'->'mentions' <> '[]'
      AND u <> x->'e'->'msg'->>'user'
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

    -- The messages this batch edits or deletes, and the new ones an
    -- earlier batch left an edit or delete waiting for: up to date from the log.
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
    FROM (SELECT DISTINCT x->>'t' AS tenant, x->>'r' AS room_id, x->'e'->>'msg_id' AS id
          FROM unnest(ev) AS x
          WHERE x->'e'->>'type' IN ('message:edited', 'message:deleted')
          UNION
          SELECT o.tenant, o.room_id, o.msg_id FROM message_orphans AS o
          JOIN unnest(ev) AS x ON o.tenant = x->>'t' AND o.room_id = x->>'r'
           AND o.msg_id = x->'e'->'msg'->>'id'
          WHERE x->'e'->>'type' = 'message:new') AS t
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

    -- Repaired: no longer waiting.
    DELETE FROM message_orphans AS o USING unnest(ev) AS x
    WHERE x->'e'->>'type' = 'message:new' AND o.tenant = x->>'t' AND o.room_id = x->>'r'
      AND o.msg_id = x->'e'->'msg'->>'id';

    -- Edits and deletes whose message is not here yet: its batch repairs it.
    INSERT INTO message_orphans (tenant, room_id, msg_id)
    SELECT DISTINCT x->>'t', x->>'r', x->'e'->>'msg_id'
    FROM unnest(ev) AS x
    WHERE x->'e'->>'type' IN ('message:edited', 'message:deleted')
      AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = x->>'t' AND m.room_id = x->>'r'
                      AND m.id = x->'e'->>'msg_id')
    ON CONFLICT DO NOTHING;

    RETURN cardinality(ev);
END
$$;
