/*
 * The Redis scripts, embedded at build time: each is its .lua files of this
 * directory one after the other (bucket.lua first where the script uses
 * the token bucket) and a NUL, so that redis.c can SCRIPT LOAD it as one C
 * string. .incbin needs no tool beyond the assembler ($(CC) on this file);
 * the Makefile passes this directory as the assembler's include path and
 * rebuilds the object when a .lua file changes. See redis_lua.h.
 */

#define SCRIPT(name) \
	.globl name; \
	.type name, %object; \
name:

#define END(name) \
	.byte 0; \
	.size name, . - name

	.section .rodata

SCRIPT(redis_lua_send)
	.incbin "bucket.lua"
	.incbin "send.lua"
END(redis_lua_send)

SCRIPT(redis_lua_history)
	.incbin "history.lua"
END(redis_lua_history)

SCRIPT(redis_lua_rate)
	.incbin "bucket.lua"
	.incbin "rate.lua"
END(redis_lua_rate)

SCRIPT(redis_lua_act)
	.incbin "act.lua"
END(redis_lua_act)

SCRIPT(redis_lua_presence)
	.incbin "presence.lua"
END(redis_lua_presence)

/* Without this note the linker would give the program an executable stack. */
	.section .note.GNU-stack, "", %progbits
