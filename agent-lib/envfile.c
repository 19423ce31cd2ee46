/* See envfile.h. */
#include "envfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int envfile_format_from_string(const char *s, EnvFormat *ret) {
        if (streq(s, "systemd"))
                *ret = ENV_FORMAT_SYSTEMD;
        else if (streq(s, "dotenv"))
                *ret = ENV_FORMAT_DOTENV;
        else if (streq(s, "shell"))
                *ret = ENV_FORMAT_SHELL;
        else
                return -EINVAL;
        return 0;
}

const char *envfile_format_to_string(EnvFormat f) {
        switch (f) {
        case ENV_FORMAT_DOTENV:
                return "dotenv";
        case ENV_FORMAT_SHELL:
                return "shell";
        default:
                return "systemd";
        }
}

bool envfile_name_is_valid(const char *n) {
        if (!n || !(('A' <= *n && *n <= 'Z') || ('a' <= *n && *n <= 'z') || *n == '_'))
                return false;
        for (const char *p = n; *p; p++)
                if (!(('A' <= *p && *p <= 'Z') || ('a' <= *p && *p <= 'z') || ('0' <= *p && *p <= '9') ||
                      *p == '_'))
                        return false;
        return true;
}

static int quote_with(Buf *out, const char *v, char q, const char *escape) {
        int r = buf_putc(out, q);
        for (const char *p = v; r >= 0 && *p; p++) {
                if (strchr(escape, *p))
                        r = buf_putc(out, '\\');
                if (r >= 0)
                        r = buf_putc(out, *p);
        }
        if (r >= 0)
                r = buf_putc(out, q);
        return r;
}

int envfile_quote(Buf *out, const char *v, EnvFormat format, bool *ret_portable) {
        size_t n = strlen(v);
        if (!utf8_is_valid(v, n))
                return -EILSEQ;

        /* python-dotenv reads files with universal newlines (a CR becomes
         * LF) and expands ${...} even inside single quotes, with no escape. */
        const char *dollar = strstr(v, "${");
        bool cr = strchr(v, '\r') || (dollar && strchr(dollar, '}'));
        if (!cr && !strchr(v, '\'') && !strstr(v, "\\\\") && !(n > 0 && v[n - 1] == '\\')) {
                *ret_portable = true;
                return quote_with(out, v, '\'', "");
        }
        if (!cr && !strchr(v, '$') && !strchr(v, '`')) {
                *ret_portable = true;
                return quote_with(out, v, '"', "\\\"");
        }
        *ret_portable = false;
        if (format == ENV_FORMAT_DOTENV)
                return quote_with(out, v, '\'', "\\'");
        return quote_with(out, v, '"', "\\\"$`");
}

int read_file_full(const char *path, size_t max, char **ret, size_t *ret_len) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        Buf b = {0};
        char chunk[8192];
        int r = 0;
        for (;;) {
                ssize_t k = read(fd, chunk, sizeof chunk);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                if (k == 0)
                        break;
                if (b.len + (size_t) k > max) {
                        r = -EFBIG;
                        break;
                }
                r = buf_append(&b, chunk, (size_t) k);
                if (r < 0)
                        break;
        }
        explicit_bzero(chunk, sizeof chunk);
        close(fd);
        if (r < 0) {
                buf_wipe(&b);
                return r;
        }
        if (ret_len)
                *ret_len = b.len;
        *ret = buf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

static bool content_same(const char *path, const char *content, size_t len) {
        char *old = NULL;
        size_t old_len;
        if (read_file_full(path, len + 1, &old, &old_len) < 0)
                return false;
        bool same = old_len == len && memcmp(old, content, len) == 0;
        free_wipe(old);
        return same;
}

static bool unchanged(const char *path, const char *content, size_t len, uid_t uid, gid_t gid, mode_t mode) {
        struct stat st;
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != uid || st.st_gid != gid ||
            (st.st_mode & 07777) != mode || (size_t) st.st_size != len)
                return false;
        return content_same(path, content, len);
}

static int write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int envfile_write(const char *path, const char *content, size_t len, uid_t uid, gid_t gid, mode_t mode,
                  bool *ret_changed) {
        if (unchanged(path, content, len, uid, gid, mode)) {
                *ret_changed = false;
                return 0;
        }
        bool same_content = content_same(path, content, len);

        _cleanup_free_ char *dir_copy = strdup(path);
        if (!dir_copy)
                return -ENOMEM;
        const char *dir = dirname(dir_copy);
        _cleanup_free_ char *tmp = strdup_printf("%s.anb-agent.XXXXXX", path);
        if (!tmp)
                return -ENOMEM;

        /* mkostemp creates the file 0600, so no other user can open it
         * while it is being filled. */
        int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;

        int r = write_all(fd, content, len);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && fchown(fd, uid, gid) < 0)
                r = -errno;
        if (r >= 0 && fchmod(fd, mode) < 0)
                r = -errno;
        if (close(fd) < 0 && r >= 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return r;
        }

        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        r = fsync(dfd) < 0 ? -errno : 0;
        close(dfd);
        if (r < 0)
                return r;
        *ret_changed = !same_content;
        return 0;
}
