#ifndef CHATD_REDIS_LUA_H
#define CHATD_REDIS_LUA_H

/* The Lua scripts of redis.c, NUL-terminated, as redis_lua.S embeds
 * them from the .lua files beside it: what SCRIPT LOAD gets byte for byte
 * (their SHA1s, and so EVALSHA, depend on every byte, comments included).
 *
 *   send     bucket.lua + send.lua
 *   history  history.lua
 *   rate     bucket.lua + rate.lua
 *   act      act.lua
 *   presence presence.lua
 */
extern const char redis_lua_send[];
extern const char redis_lua_history[];
extern const char redis_lua_rate[];
extern const char redis_lua_act[];
extern const char redis_lua_presence[];

#endif
