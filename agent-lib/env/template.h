/* The .env template (conf/env.tmpl): parsing and rendering, no I/O.
 *
 * Grammar, line by line:
 *   - a blank line or one whose first non-blank character is '#' is copied;
 *   - every other line is NAME=VALUE, NAME a shell variable name; VALUE is
 *     raw text to the end of the line (no quotes: the agent quotes the
 *     rendered value itself) in which ${SOURCE:KEY} and
 *     ${SOURCE:KEY:-default} are replaced and $$ is a literal $.  Any
 *     other '$' is an error, so a typo such as $tag:x is never silently
 *     copied.
 * Sources: imds, identity, tag, secret, param, env.  KEY runs to the first
 * ":-" or "}" and may itself contain ':' (tag keys such as anb:role).
 *
 * A Template owns its lines and references.  Values are looked up through
 * a caller's function at render time; this module never fetches. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "env/envfile.h"
#include "basic/util.h"

typedef enum TemplateSource {
        SOURCE_IMDS,
        SOURCE_IDENTITY,
        SOURCE_TAG,
        SOURCE_SECRET,
        SOURCE_PARAM,
        SOURCE_ENV,
        _SOURCE_MAX,
} TemplateSource;

const char *template_source_to_string(TemplateSource s);

typedef struct TemplateRef {
        TemplateSource source;
        char *key;
        char *def; /* NULL: no default */
        unsigned line, column;
} TemplateRef;

typedef struct Template Template;

/* Parses text; name is used in messages ("name:line:column: ...").
 * On a syntax error returns -EINVAL with the message in *ret_error. */
int template_parse(const char *name, const char *text, size_t len, Template **ret, char **ret_error);
void template_free(Template *t);
static inline void template_freep(Template **t) {
        template_free(*t);
}

/* Every reference, in template order (duplicates included). */
size_t template_n_refs(const Template *t);
const TemplateRef *template_ref(const Template *t, size_t i);

/* Looks up a value: returns 0 and sets *ret_value (borrowed) when known,
 * -ENOENT when the source has no such key (the default then applies),
 * another negative errno when the source failed; *ret_reason (borrowed,
 * may be NULL) then says why, without any value. */
typedef int (*TemplateLookup)(void *userdata, TemplateSource source, const char *key, const char **ret_value,
                              const char **ret_reason);

typedef struct RenderedVar {
        char *name;
        char *value;
        bool portable; /* false: no form all three readers share */
} RenderedVar;

typedef struct Rendered {
        char *text; /* the .env content */
        size_t len;
        RenderedVar *vars;
        size_t n_vars;
} Rendered;

/* Renders every line.  All unresolvable references are reported, one per
 * line of *ret_error ("name:line:column: tag 'x' has no value and no
 * default"), and then -ENOENT (or the lookup's error) is returned.  A
 * value the format cannot hold (not UTF-8; for dotenv, ending in \) is
 * -EILSEQ, reported the same way. */
int template_render(const Template *t, TemplateLookup lookup, void *userdata, EnvFormat format,
                    Rendered **ret, char **ret_error);
void rendered_free(Rendered *r);
static inline void rendered_freep(Rendered **r) {
        rendered_free(*r);
}

/* Names of the variables whose value differs between a and b (either may
 * be NULL), sorted; NULL-terminated. */
char **rendered_changed_names(const Rendered *a, const Rendered *b);
