/* The agent's one log sink (the only global in agent-lib).  Library modules
 * log at debug only; the daemon and CLI log what the operator acts on.
 * Under systemd (JOURNAL_STREAM set to stderr) lines carry <N> priority
 * prefixes for journald; on a terminal they read "anb-agent: warning: ...".
 * Every message is escaped before it is written (basic/escape.h): a newline,
 * CR, ESC or any other control character, and invalid UTF-8, become visible
 * escapes, so a value from outside can never forge a log line or a journal
 * priority.  Multi-line text goes through log_lines(), one message per line.
 * Callers must never pass a secret, token or credential. */
#pragma once

#include <syslog.h>

#include "basic/util.h"

void log_setup(const char *ident);
void log_set_max_level(int level);
/* Sends every line to fn instead of stderr (tests capture logs with it). */
void log_set_sink(void (*fn)(int prio, const char *msg, void *userdata), void *userdata);
void log_msg(int prio, const char *fmt, ...) _printf_(2, 3);
/* Logs each line of text (split at '\n') as its own message, each escaped
 * like any other. */
void log_lines(int prio, const char *text);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
