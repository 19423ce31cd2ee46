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
 *   3. else no form exists that all three read back: [env] format decides
 *      (systemd and shell: double quotes escaping \ " $ `; dotenv: single
 *      quotes escaping \ and ') and envfile_quote() reports it so the caller
 *      warns, naming the key.
 * Values must be valid UTF-8 (systemd drops lines that are not).
 *
 * This module does no logging; it owns nothing beyond its return values. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util.h"

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
 * Returns -EILSEQ for a value that is not valid UTF-8. */
int envfile_quote(Buf *out, const char *value, EnvFormat format, bool *ret_portable);

/* Replaces path with content: temp file (0600) in the same directory,
 * write, fsync, fchown, fchmod, rename, fsync of the directory.  On any
 * failure the old file is untouched and no temp file is left.  When the
 * file already has exactly this content, owner and mode, nothing is
 * written.  *ret_changed says whether the content changed. */
int envfile_write(const char *path, const char *content, size_t len, uid_t uid, gid_t gid, mode_t mode,
                  bool *ret_changed);

/* Reads a whole file (at most max bytes) into *ret; -ENOENT if missing. */
int read_file_full(const char *path, size_t max, char **ret, size_t *ret_len);
