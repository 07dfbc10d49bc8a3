/*
 * The command table: every frame type a client may send, its fields with
 * their kinds and limits, and the handler that runs it. This is the one
 * place a field's rule is written; a handler does not check a field again.
 *
 * Read by two files, each with its own copy of the table:
 *   - proto.c (the decoder) checks a frame against the types and fields.
 *     It defines PROTO_HANDLER(fn) as NULL, so it names no handler and
 *     links without the chat layer (fuzz_proto, test_proto).
 *   - cmd.c (the dispatcher) defines PROTO_HANDLER(fn) as fn and runs the
 *     handler at the index the decoder found: the copies are in one order.
 * Include proto/proto.h (and, in cmd.c, the handlers' headers) first.
 *
 * A field: { name, kind, required, max } (proto.h: enum proto_kind). Rules
 * that need the configuration (max_rooms_per_conn), another field (before
 * and after, a direct room's members) or the database stay in the handler.
 */
#ifndef CHATD_PROTO_COMMANDS_H
#define CHATD_PROTO_COMMANDS_H

#ifndef PROTO_HANDLER
#error "define PROTO_HANDLER(fn) before including proto/commands.h"
#endif

#define PROTO__END { NULL, 0, 0, 0 }

static const struct proto_command proto_commands[] = {
	{ "ping", PROTO_HANDLER(session_ping), { PROTO__END } },
	{ "room:create", PROTO_HANDLER(roomcmd_create), {
		{ "room", PK_ID, 0, 0 }, { "name", PK_STRING, 1, 200 },
		{ "kind", PK_STRING, 0, 16 }, { "private", PK_BOOL, 0, 0 },
		{ "description", PK_STRING, 0, 2000 }, { "members", PK_IDS, 0, 1000 },
		PROTO__END } },
	{ "room:join", PROTO_HANDLER(join_room_join), {
		{ "room", PK_ID, 1, 0 }, { "since", PK_SEQ, 0, 0 }, PROTO__END } },
	{ "room:leave", PROTO_HANDLER(roomcmd_leave), { { "room", PK_ID, 1, 0 }, PROTO__END } },
	{ "session:resume", PROTO_HANDLER(join_session_resume), {
		{ "rooms", PK_SEQ_MAP, 1, 100 }, PROTO__END } },
	{ "message:send", PROTO_HANDLER(msgcmd_send), {
		{ "room", PK_ID, 1, 0 }, { "client_msg_id", PK_ID, 1, 0 },
		{ "body", PK_BODY, 1, 0 }, { "kind", PK_STRING, 0, 16 },
		{ "reply_to", PK_ID, 0, 0 }, { "mentions", PK_IDS, 0, 50 },
		{ "attachments", PK_ARRAY, 0, 10 }, PROTO__END } },
	{ "message:edit", PROTO_HANDLER(msgact_edit), {
		{ "room", PK_ID, 1, 0 }, { "msg_id", PK_ID, 1, 0 },
		{ "body", PK_BODY, 1, 0 }, PROTO__END } },
	{ "message:delete", PROTO_HANDLER(msgact_delete), {
		{ "room", PK_ID, 1, 0 }, { "msg_id", PK_ID, 1, 0 }, PROTO__END } },
	{ "message:react", PROTO_HANDLER(msgact_react), {
		{ "room", PK_ID, 1, 0 }, { "msg_id", PK_ID, 1, 0 },
		{ "emoji", PK_STRING, 1, 32 }, { "add", PK_BOOL, 1, 0 }, PROTO__END } },
	{ "message:history", PROTO_HANDLER(msgcmd_history), {
		{ "room", PK_ID, 1, 0 }, { "before", PK_SEQ, 0, 0 },
		{ "after", PK_SEQ, 0, 0 }, { "limit", PK_SEQ, 0, 0 }, PROTO__END } },
	{ "room:update", PROTO_HANDLER(moderate_room_update), {
		{ "room", PK_ID, 1, 0 }, { "name", PK_STRING, 0, 200 },
		{ "description", PK_STRING, 0, 2000 }, PROTO__END } },
	{ "member:add", PROTO_HANDLER(moderate_member_add), {
		{ "room", PK_ID, 1, 0 }, { "user", PK_ID, 1, 0 }, PROTO__END } },
	{ "member:remove", PROTO_HANDLER(moderate_member_remove), {
		{ "room", PK_ID, 1, 0 }, { "user", PK_ID, 1, 0 }, PROTO__END } },
	{ "member:role", PROTO_HANDLER(moderate_member_role), {
		{ "room", PK_ID, 1, 0 }, { "user", PK_ID, 1, 0 },
		{ "role", PK_STRING, 1, 16 }, PROTO__END } },
	{ "member:mute", PROTO_HANDLER(moderate_member_mute), {
		{ "room", PK_ID, 1, 0 }, { "user", PK_ID, 1, 0 },
		{ "until", PK_SEQ, 0, 0 }, PROTO__END } },
	{ "member:unmute", PROTO_HANDLER(moderate_member_unmute), {
		{ "room", PK_ID, 1, 0 }, { "user", PK_ID, 1, 0 }, PROTO__END } },
	{ "member:ban", PROTO_HANDLER(moderate_member_ban), {
		{ "room", PK_ID, 1, 0 }, { "user", PK_ID, 1, 0 },
		{ "reason", PK_STRING, 0, 500 }, PROTO__END } },
	{ "member:unban", PROTO_HANDLER(moderate_member_unban), {
		{ "room", PK_ID, 1, 0 }, { "user", PK_ID, 1, 0 }, PROTO__END } },
	{ "presence:set", PROTO_HANDLER(presence_set), {
		{ "status", PK_STRING, 1, 16 }, PROTO__END } },
	{ "presence:get", PROTO_HANDLER(presence_get), {
		{ "users", PK_IDS, 1, 100 }, PROTO__END } },
	{ "typing:start", PROTO_HANDLER(typing_cmd_start), { { "room", PK_ID, 1, 0 }, PROTO__END } },
	{ "typing:stop", PROTO_HANDLER(typing_cmd_stop), { { "room", PK_ID, 1, 0 }, PROTO__END } },
	{ "auth:refresh", PROTO_HANDLER(session_refresh), {
		{ "token", PK_STRING, 1, 8192 }, PROTO__END } },
	{ "room:list", PROTO_HANDLER(roomread_list), { PROTO__END } },
	{ "room:info", PROTO_HANDLER(roomread_info), { { "room", PK_ID, 1, 0 }, PROTO__END } },
	{ "room:members", PROTO_HANDLER(roomread_members), {
		{ "room", PK_ID, 1, 0 }, { "after", PK_ID, 0, 0 }, { "limit", PK_LIMIT, 0, 200 },
		PROTO__END } },
	/* room:read: receipt:read's older name, the same handler and ack. */
	{ "room:read", PROTO_HANDLER(receipt_read), {
		{ "room", PK_ID, 1, 0 }, { "seq", PK_SEQ, 1, 0 }, PROTO__END } },
	{ "receipt:delivered", PROTO_HANDLER(receipt_delivered), {
		{ "room", PK_ID, 1, 0 }, { "seq", PK_SEQ, 1, 0 }, PROTO__END } },
	{ "receipt:read", PROTO_HANDLER(receipt_read), {
		{ "room", PK_ID, 1, 0 }, { "seq", PK_SEQ, 1, 0 }, PROTO__END } },
	{ "message:seen", PROTO_HANDLER(receipt_seen), {
		{ "room", PK_ID, 1, 0 }, { "msg_id", PK_ID, 1, 0 }, PROTO__END } },
	{ "message:thread", PROTO_HANDLER(msgread_thread), {
		{ "room", PK_ID, 1, 0 }, { "msg_id", PK_ID, 1, 0 }, { "before", PK_SEQ, 0, 0 },
		{ "limit", PK_LIMIT, 0, 100 }, PROTO__END } },
	{ "message:edits", PROTO_HANDLER(msgread_edits), {
		{ "room", PK_ID, 1, 0 }, { "msg_id", PK_ID, 1, 0 }, PROTO__END } },
	{ "mention:list", PROTO_HANDLER(msgread_mentions), {
		{ "before", PK_SEQ, 0, 0 }, { "limit", PK_LIMIT, 0, 100 }, PROTO__END } },
	/* before: the `next` of the previous page (search.c). */
	{ "message:search", PROTO_HANDLER(search_messages), {
		{ "q", PK_TEXT, 1, 256 }, { "room", PK_ID, 0, 0 }, { "before", PK_STRING, 0, 160 },
		{ "limit", PK_LIMIT, 0, 50 }, PROTO__END } },
};

#define PROTO_NCOMMANDS ((int)(sizeof(proto_commands) / sizeof(proto_commands[0])))

#endif
