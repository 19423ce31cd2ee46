/* The app's .env: quoting values so that three readers agree, and replacing
 * the file atomically.
 *
 * Quoting rule (documented in README "The .env file"):
 *   1. single quotes 'v' when v has no ', no "\\" and does not end in "\"
 *      -- systemd, python-dotenv and sh then all read v literally;
 *   2. else double quotes "v" with \ and " backslash-escaped, when v has no
 *      $ and no ` -- the three readers agree on those two escapes;
 *   Neither applies to a value with a CR or a ${...} in it: python-dotenv
 *   turns CR into LF and expands ${...} (0.21 does so even in single
 *   quotes, and has no escape for it).
 *   Nor to a value ending in \: python-dotenv reads the final \' or \"
 *   as an escaped quote and runs on into the next lines.
 *   3. else no form exists that all three read back: [env] format decides
 *      (systemd and shell: double quotes escaping \ " $ `; dotenv: double
 *      quotes escaping \ and ", a CR written \r -- systemd reads those
 *      exactly too, but for \r, and never past the closing quote) and
 *      envfile_quote() reports it so the caller warns, naming the key.
 *      For dotenv a value ending in \ has no form at all: -EDOM.
 * Values must be valid UTF-8 (systemd drops lines that are not).
 *
 * This module does no logging; it owns nothing beyond its return values. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "basic/util.h"

typedef enum EnvFormat {
        ENV_FORMAT_SYSTEMD,
        ENV_FORMAT_DOTENV,
        ENV_FORMAT_SHELL,
} EnvFormat;

int envfile_format_from_string(const char *s, EnvFormat *ret);
const char *envfile_format_to_string(EnvFormat f);

bool envfile_name_is_valid(const char *name);

/* Appends the quoted form of value to out.  *ret_portable is false when
 * the value has no form all three readers share (rule 3 above).
 * Returns -EILSEQ for a value that is not valid UTF-8, -EDOM for one
 * ending in \ in the dotenv format. */
int envfile_quote(Buf *out, const char *value, EnvFormat format, bool *ret_portable);

/* Replaces path with content.  The path's directories may belong to a user
 * the agent does not trust (the app user), so nothing in them is followed
 * or opened blindly:
 *   - the directory is reached one component at a time with O_NOFOLLOW:
 *     a symlink anywhere in the path fails with -ELOOP;
 *   - what is at path now is opened with O_NOFOLLOW|O_NONBLOCK and only a
 *     regular file with one link is read (a FIFO never blocks; a symlink,
 *     FIFO, device or hard link there is replaced, never written through);
 *   - the temp file PATH.anb-agent.XXXXXX is created O_EXCL|O_NOFOLLOW
 *     (0600), written, fchown'ed, fchmod'ed and fsync'ed through its fd,
 *     renamed over path, and the directory is fsync'ed.
 * On any failure the old file is untouched and no temp file is left.  When
 * the file already has exactly this content, owner and mode, nothing is
 * written.  *ret_changed says whether the content changed.  Blocking (fsync):
 * call it off the event loop. */
int envfile_write(const char *path, const char *content, size_t len, uid_t uid, gid_t gid, mode_t mode,
                  bool *ret_changed);

/* Whether path's directory is one that only root can change: every
 * directory from / to it owned by root and writable by no one else (a
 * sticky one such as /tmp passes on the way, not as the .env's own).
 * Returns 0 when it is; 1 when not, with *ret_unsafe naming the first
 * directory that is not (caller frees); -ELOOP for a symlink on the way;
 * another negative errno when it cannot be checked (-ENOENT: missing). */
int envfile_check_dir(const char *path, char **ret_unsafe);

/* Removes temp files (PATH.anb-agent.XXXXXX) a crash between create and
 * rename left beside path.  Returns how many were removed (0 when the
 * directory does not exist), or a negative errno. */
int envfile_remove_stale_temps(const char *path);

/* Opens path for reading the way envfile_write() reaches it (no symlink
 * followed on the way or at the end, a FIFO never waited on), and returns
 * the fd only for a file the agent itself wrote: regular, one link, owned
 * by the process's effective user and writable by no one else (-EPERM
 * otherwise; -ENOENT when missing, -ELOOP for a symlink on the way). */
int envfile_open_own(const char *path);

/* Removes path, reached the same way (0 also when it is not there). */
int envfile_remove(const char *path);

/* Reads a whole regular file (at most max bytes) into *ret; -ENOENT if
 * missing, -EINVAL if not a regular file (a FIFO is never waited on). */
int read_file_full(const char *path, size_t max, char **ret, size_t *ret_len);
