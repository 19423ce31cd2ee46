/* See ec2xml.h. */
#include "aws/ec2xml.h"

#include <errno.h>
#include <expat.h>
#include <stdbool.h>
#include <stdio.h>

#include "basic/util.h"

typedef struct XmlCtx {
        char path[512]; /* element names joined by '/' */
        Buf text;
        char *key, *value;
        bool in_item;
        void (*fn)(const char *, const char *, void *);
        void *ud;
        char *next_token;
        char *code, *message;
} XmlCtx;

static const char *leaf(const char *name) {
        const char *colon = strrchr(name, ':'); /* namespace-qualified */
        return colon ? colon + 1 : name;
}

static void xml_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
        (void) attrs;
        XmlCtx *x = ud;
        size_t n = strlen(x->path);
        snprintf(x->path + n, sizeof x->path - n, "/%s", leaf(name));
        x->text.len = 0;
        if (x->text.data)
                x->text.data[0] = 0;
}

static bool path_ends(const XmlCtx *x, const char *suffix) {
        size_t n = strlen(x->path), k = strlen(suffix);
        return n >= k && streq(x->path + n - k, suffix);
}

static void set(char **dst, const Buf *b) {
        free(*dst);
        *dst = strndup(b->data ? b->data : "", b->len);
}

static void xml_end(void *ud, const XML_Char *name) {
        (void) name;
        XmlCtx *x = ud;
        if (path_ends(x, "/tagSet/item/key"))
                set(&x->key, &x->text);
        else if (path_ends(x, "/tagSet/item/value"))
                set(&x->value, &x->text);
        else if (path_ends(x, "/tagSet/item")) {
                if (x->key && x->fn)
                        x->fn(x->key, x->value ? x->value : "", x->ud);
                free(x->key), free_wipe(x->value);
                x->key = x->value = NULL;
        } else if (path_ends(x, "/DescribeTagsResponse/nextToken") && x->text.len)
                set(&x->next_token, &x->text);
        else if (path_ends(x, "/Error/Code"))
                set(&x->code, &x->text);
        else if (path_ends(x, "/Error/Message"))
                set(&x->message, &x->text);
        char *slash = strrchr(x->path, '/');
        if (slash)
                *slash = 0;
        x->text.len = 0;
}

static void xml_text(void *ud, const XML_Char *s, int len) {
        XmlCtx *x = ud;
        buf_append(&x->text, s, (size_t) len);
}

static int xml_run(XmlCtx *x, const char *xml, size_t len) {
        XML_Parser p = XML_ParserCreate("UTF-8");
        if (!p)
                return -ENOMEM;
        XML_SetUserData(p, x);
        XML_SetElementHandler(p, xml_start, xml_end);
        XML_SetCharacterDataHandler(p, xml_text);
        int ok = XML_Parse(p, xml, (int) len, 1) == XML_STATUS_OK;
        XML_ParserFree(p);
        buf_wipe(&x->text);
        free(x->key);
        free_wipe(x->value);
        return ok ? 0 : -EBADMSG;
}

int ec2_parse_describe_tags(const char *xml, size_t len, void (*fn)(const char *, const char *, void *), void *ud,
                            char **ret_next_token) {
        XmlCtx x = {.fn = fn, .ud = ud};
        int r = xml_run(&x, xml, len);
        free(x.code);
        free(x.message);
        if (r < 0) {
                free(x.next_token);
                return r;
        }
        if (ret_next_token)
                *ret_next_token = x.next_token;
        else
                free(x.next_token);
        return 0;
}

int ec2_parse_error(const char *xml, size_t len, char **ret_code, char **ret_message) {
        XmlCtx x = {0};
        int r = xml_run(&x, xml, len);
        free(x.next_token);
        *ret_code = x.code;
        *ret_message = x.message;
        return r;
}
