/* EC2's Query-protocol XML answers, parsed with expat: DescribeTags pages
 * and error documents (<Response><Errors><Error><Code>…).  Pure: no I/O.
 * Namespaces are ignored (EC2 answers carry one, errors do not). */
#pragma once

#include <stddef.h>

/* Calls fn for each tag; sets *ret_next_token (caller frees; NULL on the
 * last page; ret_next_token may be NULL).  -EBADMSG when the XML does not parse. */
int ec2_parse_describe_tags(const char *xml, size_t len, void (*fn)(const char *key, const char *value, void *ud),
                            void *ud, char **ret_next_token);
/* An error answer's Code and Message (each NULL when absent; caller
 * frees). */
int ec2_parse_error(const char *xml, size_t len, char **ret_code, char **ret_message);
