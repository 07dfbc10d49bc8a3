#ifndef CHATD_CONFIG_H
#define CHATD_CONFIG_H

#include <stddef.h>

#define CFG_STR_MAX 512

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
	int jwt_leeway_s;
	char default_tenant[65];

	int heartbeat_ms;
	int max_frame_bytes;
	int max_body_bytes;
	int max_rooms_per_conn;
	int outbound_max_frames;
	int history_on_join;

	int stream_maxlen;
	int stream_ttl_s;
	int dedupe_ttl_s;
	int sync_batch_size;
	int sync_batch_wait_ms;
	int sync_claim_idle_ms;
	int max_resume_gap;
	char durability[16];	/* "redis" or "postgres" */

	/* Derived, not keys. */
	char redis_host[256];
	int redis_port;
	int redis_db;
};

/* Loads path (NULL: defaults only), then environment overrides, then
 * validates. On error writes one line naming the key into err and returns -1. */
int cfg_load(struct cfg *c, const char *path, char *err, size_t errlen);

#endif
