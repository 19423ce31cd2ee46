/* See template.h. */
#include "env/template.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include "basic/strindex.h"

typedef struct Part {
        char *literal; /* or NULL for a reference */
        size_t ref;
} Part;

typedef struct Line {
        unsigned lineno;
        char *verbatim; /* comment or blank line, copied; else NULL */
        char *name;
        Part *parts;
        size_t n_parts, parts_cap;
} Line;

struct Template {
        char *name;
        Line *lines;
        size_t n_lines, lines_cap;
        TemplateRef *refs;
        size_t n_refs, refs_cap;
};

/* Makes room for one more element: capacities double, so n appends cost
 * O(n) in all (a 40,000-line template must stay linear). */
static int grow_one(void **array, size_t *cap, size_t n, size_t size) {
        if (n < *cap)
                return 0;
        size_t c = *cap ? *cap * 2 : 8;
        if (c < n + 1 || c > SIZE_MAX / size)
                return -ENOMEM;
        void *p = realloc(*array, c * size);
        if (!p)
                return -ENOMEM;
        *array = p;
        *cap = c;
        return 0;
}
#define GROW_ONE(array, cap, n) grow_one((void **) &(array), &(cap), (n), sizeof(*(array)))

static const char *const source_names[_SOURCE_MAX] = {
        [SOURCE_IMDS] = "imds",     [SOURCE_IDENTITY] = "identity", [SOURCE_TAG] = "tag",
        [SOURCE_SECRET] = "secret", [SOURCE_PARAM] = "param",       [SOURCE_ENV] = "env",
};

const char *template_source_to_string(TemplateSource s) {
        return s < _SOURCE_MAX ? source_names[s] : "?";
}

static int source_from_string(const char *s, size_t n, TemplateSource *ret) {
        for (size_t i = 0; i < _SOURCE_MAX; i++)
                if (strlen(source_names[i]) == n && memcmp(source_names[i], s, n) == 0) {
                        *ret = (TemplateSource) i;
                        return 0;
                }
        return -EINVAL;
}

static void line_deinit(Line *l) {
        free(l->verbatim);
        free(l->name);
        for (size_t i = 0; i < l->n_parts; i++)
                free(l->parts[i].literal);
        free(l->parts);
}

void template_free(Template *t) {
        if (!t)
                return;
        for (size_t i = 0; i < t->n_lines; i++)
                line_deinit(&t->lines[i]);
        free(t->lines);
        for (size_t i = 0; i < t->n_refs; i++) {
                free(t->refs[i].key);
                free(t->refs[i].def);
        }
        free(t->refs);
        free(t->name);
        free(t);
}

size_t template_n_refs(const Template *t) {
        return t->n_refs;
}

const TemplateRef *template_ref(const Template *t, size_t i) {
        return i < t->n_refs ? &t->refs[i] : NULL;
}

static int add_part(Line *l, char *literal, size_t ref) {
        if (GROW_ONE(l->parts, l->parts_cap, l->n_parts) < 0)
                return -ENOMEM;
        l->parts[l->n_parts++] = (Part) {literal, ref};
        return 0;
}

static int add_literal(Line *l, Buf *lit) {
        if (lit->len == 0)
                return 0;
        char *s = buf_steal(lit);
        if (!s || add_part(l, s, 0) < 0) {
                free(s);
                return -ENOMEM;
        }
        return 0;
}

typedef struct ParseCtx {
        Template *t;
        char *error;
} ParseCtx;

static int parse_error(ParseCtx *c, unsigned line, size_t col, const char *fmt, ...) _printf_(4, 5);
static int parse_error(ParseCtx *c, unsigned line, size_t col, const char *fmt, ...) {
        _cleanup_free_ char *m = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        c->error = strdup_printf("%s:%u:%zu: %s", c->t->name, line, col, m ? m : "out of memory");
        return -EINVAL;
}

/* Parses "${...}" starting at s (pointing at '$'); col is 1-based. */
static int parse_ref(ParseCtx *c, Line *l, const char *s, size_t avail, size_t col, size_t *ret_used) {
        const char *end = memchr(s, '}', avail);
        if (!end)
                return parse_error(c, l->lineno, col, "unterminated '${' (missing '}')");
        const char *body = s + 2;
        size_t blen = (size_t) (end - body);
        const char *colon = memchr(body, ':', blen);
        if (!colon)
                return parse_error(c, l->lineno, col, "'${%.*s}' needs SOURCE:KEY, e.g. ${tag:Name}", (int) blen,
                                   body);
        TemplateSource src;
        if (source_from_string(body, (size_t) (colon - body), &src) < 0)
                return parse_error(c, l->lineno, col,
                                   "unknown source '%.*s' (known: imds, identity, tag, secret, param, env)",
                                   (int) (colon - body), body);
        const char *key = colon + 1;
        size_t klen = (size_t) (end - key);
        const char *def = NULL;
        for (size_t i = 0; i + 1 < klen; i++)
                if (key[i] == ':' && key[i + 1] == '-') {
                        def = key + i + 2;
                        klen = i;
                        break;
                }
        if (klen == 0)
                return parse_error(c, l->lineno, col, "empty key in '${%.*s}'", (int) blen, body);

        Template *t = c->t;
        if (GROW_ONE(t->refs, t->refs_cap, t->n_refs) < 0)
                return -ENOMEM;
        TemplateRef *ref = &t->refs[t->n_refs];
        *ref = (TemplateRef) {.source = src, .line = l->lineno, .column = (unsigned) col};
        ref->key = strndup(key, klen);
        if (def)
                ref->def = strndup(def, (size_t) (end - def));
        if (!ref->key || (def && !ref->def) || add_part(l, NULL, t->n_refs) < 0) {
                free(ref->key);
                free(ref->def);
                return -ENOMEM;
        }
        t->n_refs++;
        *ret_used = (size_t) (end - s) + 1;
        return 0;
}

static int parse_value(ParseCtx *c, Line *l, const char *v, size_t n, size_t col0) {
        Buf lit = {0};
        int r = 0;
        for (size_t i = 0; i < n && r >= 0;) {
                if (v[i] != '$') {
                        r = buf_putc(&lit, v[i++]);
                        continue;
                }
                if (i + 1 < n && v[i + 1] == '$') {
                        r = buf_putc(&lit, '$');
                        i += 2;
                        continue;
                }
                if (i + 1 >= n || v[i + 1] != '{') {
                        r = parse_error(c, l->lineno, col0 + i,
                                        "stray '$' (write $$ for a literal $, ${SOURCE:KEY} for a value)");
                        break;
                }
                size_t used = 0;
                r = add_literal(l, &lit);
                if (r >= 0)
                        r = parse_ref(c, l, v + i, n - i, col0 + i, &used);
                if (r >= 0)
                        i += used;
        }
        if (r >= 0)
                r = add_literal(l, &lit);
        buf_deinit(&lit);
        return r;
}

static int parse_line(ParseCtx *c, Line *l, const char *s, size_t n) {
        size_t i = 0;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
                i++;
        if (i == n || s[i] == '#') {
                l->verbatim = strndup(s, n);
                return l->verbatim ? 0 : -ENOMEM;
        }
        const char *eq = memchr(s, '=', n);
        if (!eq)
                return parse_error(c, l->lineno, i + 1, "expected NAME=VALUE, a comment or a blank line");
        l->name = strndup(s + i, (size_t) (eq - s) - i);
        if (!l->name)
                return -ENOMEM;
        if (!envfile_name_is_valid(l->name))
                return parse_error(c, l->lineno, i + 1,
                                   "'%s' is not a variable name (letters, digits and _, not starting with a digit)",
                                   l->name);
        size_t vcol = (size_t) (eq - s) + 1;
        return parse_value(c, l, eq + 1, n - vcol, vcol + 1);
}

static int parse_lines(ParseCtx *c, const char *text, size_t len, StrIndex *names, char **ret_error) {
        Template *t = c->t;
        unsigned lineno = 0;
        for (size_t pos = 0; pos < len;) {
                const char *nl = memchr(text + pos, '\n', len - pos);
                size_t n = nl ? (size_t) (nl - (text + pos)) : len - pos;
                if (GROW_ONE(t->lines, t->lines_cap, t->n_lines) < 0)
                        return -ENOMEM;
                Line *l = &t->lines[t->n_lines++];
                *l = (Line) {.lineno = ++lineno};
                size_t m = n > 0 && text[pos + n - 1] == '\r' ? n - 1 : n;
                int r = parse_line(c, l, text + pos, m);
                if (r < 0) {
                        *ret_error = c->error;
                        return r;
                }
                size_t first;
                if (l->name && (r = strindex_put(names, 0, l->name, t->n_lines - 1, &first)) != 0) {
                        if (r < 0)
                                return r;
                        *ret_error = strdup_printf("%s:%u:1: %s is already set on line %u", t->name, lineno,
                                                   l->name, t->lines[first].lineno);
                        return -EINVAL;
                }
                pos += n + (nl ? 1 : 0);
        }
        return 0;
}

int template_parse(const char *name, const char *text, size_t len, Template **ret, char **ret_error) {
        _cleanup_(template_freep) Template *t = calloc(1, sizeof(Template));
        *ret_error = NULL;
        if (!t || !(t->name = strdup(name)))
                return -ENOMEM;
        if (memchr(text, 0, len)) {
                *ret_error = strdup_printf("%s: contains a NUL byte; a template is text", name);
                return -EINVAL;
        }
        ParseCtx c = {.t = t};
        /* Names point into t->lines[i].name, which stay put while lines grow. */
        StrIndex names = {0};
        int r = parse_lines(&c, text, len, &names, ret_error);
        strindex_deinit(&names);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

void rendered_free(Rendered *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n_vars; i++) {
                free(r->vars[i].name);
                free_wipe(r->vars[i].value);
        }
        free(r->vars);
        if (r->text)
                explicit_bzero(r->text, r->len);
        free(r->text);
        free(r);
}

static int report(Buf *errors, const Template *t, const TemplateRef *ref, const char *reason) {
        if (errors->len)
                buf_putc(errors, '\n');
        if (reason)
                return buf_printf(errors, "%s:%u:%u: %s '%s': %s", t->name, ref->line, ref->column,
                                  template_source_to_string(ref->source), ref->key, reason);
        return buf_printf(errors, "%s:%u:%u: %s '%s' has no value and no default", t->name, ref->line,
                          ref->column, template_source_to_string(ref->source), ref->key);
}

static int render_value(const Template *t, const Line *l, TemplateLookup lookup, void *ud, Buf *val,
                        Buf *errors, int *first_error) {
        for (size_t i = 0; i < l->n_parts; i++) {
                const Part *p = &l->parts[i];
                if (p->literal) {
                        if (buf_puts(val, p->literal) < 0)
                                return -ENOMEM;
                        continue;
                }
                const TemplateRef *ref = &t->refs[p->ref];
                const char *v = NULL, *reason = NULL;
                int r = lookup(ud, ref->source, ref->key, &v, &reason);
                if (r == -ENOENT && ref->def)
                        v = ref->def, r = 0;
                if (r < 0) {
                        if (!*first_error)
                                *first_error = r;
                        if (report(errors, t, ref, r == -ENOENT ? NULL : reason) < 0)
                                return -ENOMEM;
                        continue;
                }
                if (buf_puts(val, v) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int render_line(const Template *t, const Line *l, TemplateLookup lookup, void *ud, EnvFormat format,
                       Rendered *out, size_t *vars_cap, Buf *text, Buf *errors, int *first_error) {
        if (l->verbatim)
                return buf_puts(text, l->verbatim) < 0 || buf_putc(text, '\n') < 0 ? -ENOMEM : 0;

        _cleanup_(buf_wipep) Buf val = {0};
        if (render_value(t, l, lookup, ud, &val, errors, first_error) < 0 || buf_putc(&val, 0) < 0)
                return -ENOMEM;
        if (*first_error)
                return 0;

        bool portable;
        if (buf_printf(text, "%s=", l->name) < 0)
                return -ENOMEM;
        int r = envfile_quote(text, val.data, format, &portable);
        if (r == -EILSEQ || r == -EDOM) {
                /* A value the format cannot hold: one error kind for both. */
                *first_error = -EILSEQ;
                return buf_printf(errors, "%s%s:%u:1: the value of %s %s", errors->len ? "\n" : "", t->name, l->lineno,
                                  l->name,
                                  r == -EILSEQ ? "is not valid UTF-8"
                                               : "ends with a backslash, which python-dotenv cannot read back in any "
                                                 "quoting ([env] format = dotenv; format = systemd writes it for "
                                                 "systemd and sh)") < 0
                               ? -ENOMEM
                               : 0;
        }
        if (r < 0 || buf_putc(text, '\n') < 0)
                return -ENOMEM;

        if (GROW_ONE(out->vars, *vars_cap, out->n_vars) < 0)
                return -ENOMEM;
        RenderedVar *rv = &out->vars[out->n_vars];
        *rv = (RenderedVar) {.name = strdup(l->name), .value = strdup(val.data), .portable = portable};
        if (!rv->name || !rv->value) {
                free(rv->name);
                free_wipe(rv->value);
                return -ENOMEM;
        }
        out->n_vars++;
        return 0;
}

int template_render(const Template *t, TemplateLookup lookup, void *ud, EnvFormat format, Rendered **ret,
                    char **ret_error) {
        _cleanup_(rendered_freep) Rendered *out = calloc(1, sizeof(Rendered));
        _cleanup_(buf_wipep) Buf text = {0};
        Buf errors = {0};
        int first_error = 0;
        size_t vars_cap = 0;

        *ret_error = NULL;
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_lines; i++) {
                int r = render_line(t, &t->lines[i], lookup, ud, format, out, &vars_cap, &text, &errors,
                                    &first_error);
                if (r < 0) {
                        buf_deinit(&errors);
                        return r;
                }
        }
        if (first_error) {
                *ret_error = buf_steal(&errors);
                return first_error;
        }
        out->len = text.len;
        out->text = buf_steal(&text);
        if (!out->text)
                return -ENOMEM;
        *ret = TAKE_PTR(out);
        return 0;
}

static int index_vars(StrIndex *x, const Rendered *r) {
        for (size_t i = 0; r && i < r->n_vars; i++) {
                int k = strindex_put(x, 0, r->vars[i].name, i, NULL);
                if (k < 0)
                        return k;
        }
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Linear in the number of variables (plus the sort): two hash indexes,
 * and the result grown by doubling rather than strv_push's rescans. */
char **rendered_changed_names(const Rendered *a, const Rendered *b) {
        size_t na = a ? a->n_vars : 0, nb = b ? b->n_vars : 0;
        StrIndex ia = {0}, ib = {0};
        char **l = calloc(na + nb + 1, sizeof(char *));
        size_t n = 0;
        if (!l || index_vars(&ia, a) < 0 || index_vars(&ib, b) < 0)
                goto oom;
        for (int pass = 0; pass < 2; pass++) {
                const Rendered *x = pass ? b : a, *y = pass ? a : b;
                const StrIndex *iy = pass ? &ia : &ib;
                for (size_t i = 0; x && i < x->n_vars; i++) {
                        size_t j;
                        bool in_y = strindex_get(iy, 0, x->vars[i].name, &j);
                        /* Pass 0: in a, changed or gone from b; pass 1: new in b. */
                        if (in_y && (pass || streq(y->vars[j].value, x->vars[i].value)))
                                continue;
                        if (!(l[n++] = strdup(x->vars[i].name)))
                                goto oom;
                }
        }
        strindex_deinit(&ia);
        strindex_deinit(&ib);
        qsort(l, n, sizeof(char *), cmp_str);
        return l;
oom:
        strindex_deinit(&ia);
        strindex_deinit(&ib);
        strv_free(l);
        return NULL;
}
