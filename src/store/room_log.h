#ifndef CHATD_ROOM_LOG_H
#define CHATD_ROOM_LOG_H

/*
 * Events appended to a room's log outside the send path (message:send
 * goes through store/send_batch): one event per call, appended atomically
 * with the state it reads and changes (store/act.lua), so that a count
 * carried in an event (edits, a reaction's count) is the count at its seq,
 * on every worker and instance. The event goes where every event goes: the
 * room stream, the sync stream (PostgreSQL), and the room's channel.
 *
 * A message's state (author, seq, deleted, edits, reactions) lives in Redis
 * while it is used and is read again from PostgreSQL (or, for a message
 * sent moments ago and not yet synced, from the room stream) when Redis
 * does not have it.
 */

enum rlog_status {
	RLOG_OK,		/* appended: seq, and count / edits for the op */
	RLOG_UNCHANGED,		/* nothing to change (a reaction already there): count */
	RLOG_NOT_FOUND,		/* no such message in the room, or it is deleted */
	RLOG_FORBIDDEN,		/* not the author (edit; delete unless privileged) */
	RLOG_TOO_MANY,		/* too many distinct emoji on the message */
	RLOG_NO_BUS,		/* Redis down or the script failed */
	RLOG_NO_DB,		/* PostgreSQL was needed (seq floor, state) and failed */
};

struct rlog_result {
	enum rlog_status st;
	long long seq;		/* the event's */
	long long ts;		/* ms, the event's time */
	long long count;	/* react: the emoji's count after */
	long long edits;	/* edit: the message's edits after */
	const char *reply_to;	/* peek: the message's reply_to, "" for none */
	const char *user;	/* peek with scan: the message's author, "" otherwise */
};

/* r is valid during the call only. */
typedef void rlog_cb(void *arg, const struct rlog_result *r);

/* Every call: ids valid per util_valid_id; cb runs exactly once, later
 * (or at once with RLOG_NO_BUS when Redis is down). */

/* A plain event: its text is head, the seq, tail. When puser is not NULL,
 * ptext (a complete frame) goes with it to every connection of tenant/puser
 * (chat/personal.h), published in the same script. */
void rlog_event(const char *tenant, const char *room, const char *head, const char *tail,
    const char *puser, const char *ptext, rlog_cb *cb, void *arg);

/* message:edited by the author; body is the new body as JSON text. */
void rlog_edit(const char *tenant, const char *room, const char *msg_id, const char *user,
    const char *body_json, rlog_cb *cb, void *arg);
/* message:deleted by `by`: the author, or anyone when privileged. */
void rlog_delete(const char *tenant, const char *room, const char *msg_id, const char *by,
    int privileged, rlog_cb *cb, void *arg);
/* message:reaction; emoji_json is the emoji as JSON text. */
void rlog_react(const char *tenant, const char *room, const char *msg_id, const char *user,
    const char *emoji, int add, rlog_cb *cb, void *arg);

/* Is the message deleted (RLOG_NOT_FOUND)? Redis knows before PostgreSQL
 * does. With scan, also finds a message sent moments ago, only in the room
 * stream yet: RLOG_OK with its seq, reply_to and author, or RLOG_NOT_FOUND. */
void rlog_peek(const char *tenant, const char *room, const char *msg_id, int scan,
    rlog_cb *cb, void *arg);

#endif
