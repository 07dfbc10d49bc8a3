#ifndef CHATD_LOG_H
#define CHATD_LOG_H

enum log_level { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Process role shown in every line: "parent" or "w<index>". */
void log_set_role(const char *role);
void log_set_level(enum log_level level);
int log_parse_level(const char *name, enum log_level *out);
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* Unrecoverable: broken invariant or out of memory. */
void log_fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#endif
