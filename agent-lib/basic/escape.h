/* Escaping text that comes from outside (tags, IMDS, AWS error text,
 * template text) before it reaches a line-oriented sink: the journal,
 * stderr, sd_notify's STATUS=, status output.  Every control character
 * (C0, DEL, and the C1 range U+0080..U+009F, which some terminals obey as
 * ESC sequences) and every byte that is not part of valid UTF-8 becomes a
 * visible escape, so no outside string can end a line, forge another one,
 * or move a terminal's cursor:
 *     \n \r \t \\    newline, CR, tab, backslash
 *     \xHH           any other such byte (each byte of a C1 character)
 * Valid printable UTF-8 is kept as it is.  Pure functions; no I/O. */
#pragma once

#include <stddef.h>

#include "basic/util.h"

/* Appends the escaped form of s[0..n) to out. */
int text_escape_append(Buf *out, const char *s, size_t n);

/* The escaped form of s, malloc'ed; NULL when out of memory. */
char *text_escape(const char *s);

/* Escapes s[0..n) into dst (size bytes, always NUL-terminated unless size
 * is 0), cutting only between escapes; returns the length written.  For
 * callers that must not allocate (the log). */
size_t text_escape_to(char *dst, size_t size, const char *s, size_t n);
