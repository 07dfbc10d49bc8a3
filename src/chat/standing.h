#ifndef CHATD_STANDING_H
#define CHATD_STANDING_H

#include <stdint.h>

/*
 * A user's standing in a room, read from PostgreSQL (the system of
 * record; a live subscription's copy is for the send path only): does the
 * room exist in the tenant, the user's role, ban and mute. The rules that
 * use it are docs/protocol.md section 7's.
 */

enum standing_rank { RANK_NONE, RANK_MEMBER, RANK_MODERATOR, RANK_ADMIN };

struct standing {
	int exists;		/* the room, in this tenant */
	char kind[16];
	int private_room;
	enum standing_rank rank;	/* RANK_NONE: not a member */
	int banned;
	int64_t muted_until_ms;	/* 0: not muted; INT64_MAX: until unmuted */
};

/* A member, not banned. */
int standing_member(const struct standing *s);
/* May read the room: a member, or anyone not banned in a public room, or a
 * tenant admin in a support room. */
int standing_reader(const struct standing *s, int tenant_admin);
/* Muted now. */
int standing_muted(const struct standing *s);

/* st is NULL when PostgreSQL failed; valid during the call only. cb runs
 * once, later (or at once with NULL when the database is down). */
typedef void standing_cb(void *arg, const struct standing *st);
void standing_get(const char *tenant, const char *room, const char *user,
    standing_cb *cb, void *arg);

struct conn;

/* The refusal of a command that needs the connection joined to the room
 * (message:send, typing:*): not_found when there is no such room in the
 * tenant (the order of docs/protocol.md section 7), else forbidden "join
 * room R before <doing>" (a static string). Only this refusal asks
 * PostgreSQL. */
void standing_not_joined(struct conn *c, const char *idjson, const char *room,
    const char *doing);

#endif
