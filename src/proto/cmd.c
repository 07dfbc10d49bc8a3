#include "proto/cmd.h"
#include "proto/proto.h"
#include "proto/reply.h"
#include "proc/metrics.h"
#include "proc/srv.h"
#include "chat/join.h"
#include "chat/moderate.h"
#include "chat/msgact.h"
#include "chat/msgcmd.h"
#include "chat/presence.h"
#include "chat/msgread.h"
#include "chat/receipt.h"
#include "chat/roomread.h"
#include "chat/search.h"
#include "chat/roomcmd.h"
#include "chat/session.h"
#include "chat/typing.h"

/* The dispatcher's copy of the table: the handlers, at the decoder's
 * indexes. */
#define PROTO_HANDLER(fn) fn
#include "proto/commands.h"

void
cmd_dispatch(struct conn *c, const char *text, size_t len)
{
	struct proto_limits lim = { (size_t)srv.cfg->max_body_bytes };
	struct proto_frame f;
	struct proto_error err;

	metrics_add(M_FRAMES_IN, 1);
	if (proto_decode(text, len, &lim, &f, &err) != 0)
		reply_error(c, f.idjson, err.code, "%s", err.message);
	else if (srv.draining)
		reply_error(c, f.idjson, "unavailable", "server draining; reconnect");
	else
		proto_commands[f.command].handler(c, f.idjson, f.msg);
	proto_frame_free(&f);
}
