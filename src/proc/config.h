#ifndef CHATD_CONFIG_H
#define CHATD_CONFIG_H

#include "lib/cidr.h"

#include <stddef.h>

#define CFG_STR_MAX 512

/* The per-user rate limits, one a key ("rate_send", ...; cfg_rate_names). */
enum cfg_rate_op {
	RATE_SEND,
	RATE_JOIN,
	RATE_EDIT,
	RATE_DELETE,
	RATE_REACT,
	RATE_MEMBER,
	RATE_SEARCH,
	RATE_PRESENCE,
	RATE_TYPING,
	RATE_RECEIPT,
	RATE_NOPS
};

/* n requests per window_s seconds: a bucket of n tokens refilled at that pace. */
struct cfg_rate {
	int n;
	int window_s;
};

/* "send", "join", ...: the key without "rate_", the hello's names. */
extern const char *const cfg_rate_names[RATE_NOPS];

struct cfg {
	char listen[64];
	int port;
	int workers;
	char instance[128];
	int drain_timeout_ms;
	char assets[CFG_STR_MAX];
	char log_level[16];

	char redis_url[CFG_STR_MAX];
	char database_url[CFG_STR_MAX];

	char jwt_alg[16];
	char jwt_secret[CFG_STR_MAX];
	char jwt_public_key_file[CFG_STR_MAX];
	char jwt_issuer[CFG_STR_MAX];
	char jwt_audience[CFG_STR_MAX];
	int jwt_leeway_s;
	char default_tenant[65];

	char allowed_origins[2048];
	char monitoring_trusted[1024];	/* IPs and CIDRs; parsed into trusted */
	int allow_missing_origin;
	int handshake_timeout_s;

	struct cfg_rate rate[RATE_NOPS];	/* rate_send = "N/W", ... */
	int conn_attempts_per_ip;
	int conn_attempts_window_s;
	int auth_failures_per_ip;
	int auth_failures_window_s;
	int max_conns_per_ip;
	int max_conns_per_user;

	int heartbeat_ms;
	int max_frame_bytes;
	int max_body_bytes;
	int max_rooms_per_conn;
	int outbound_max_frames;
	int outbound_max_bytes;
	int socket_sndbuf;
	int stall_timeout_ms;
	int history_on_join;

	int stream_maxlen;
	int stream_ttl_s;
	int dedupe_ttl_s;
	int sync_batch_size;
	int sync_batch_wait_ms;
	int sync_claim_idle_ms;
	int max_resume_gap;
	int presence_grace_ms;	/* a user's last connection closed: offline after this */
	int presence_timeout_s;	/* a dead worker's users are offline within this */
	int presence_room_max;	/* rooms of more members carry presence counts only */
	int typing_timeout_ms;	/* typing ends this long after the last typing:start */
	int receipt_coalesce_ms;	/* at most one receipt:update per user and room per this */
	int join_receipts_max;	/* members' positions in a join ack */
	char durability[16];	/* "redis" or "postgres" */
	int dev_tokens;		/* 1: POST /dev/token mints tokens (net/devtoken.c) */

	char fcgi_socket[108];	/* chatd-fcgi: a Unix socket path (sun_path), or host:port */
	int fcgi_threads;	/* chatd-fcgi: threads taking FastCGI requests */
	int fcgi_timeout_ms;	/* chatd-fcgi: a request not answered by then gets 503 */

	/* Derived, not keys. */
	char jwt_key[8192];		/* the public key PEM (RS256, ES256) */
	char redis_host[256];
	int redis_port;
	int redis_db;
	struct cidr trusted[CIDR_LIST_MAX];	/* monitoring_trusted */
	int ntrusted;
};

/* Loads path (NULL: defaults only), then environment overrides, then
 * validates. On error writes one line naming the key into err and returns -1. */
int cfg_load(struct cfg *c, const char *path, char *err, size_t errlen);

#endif
