/* See envfile.h. */
#include "env/envfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
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

/* v between quotes q, a backslash before each character in escape; with
 * cr_as_r a CR is written \r instead (python-dotenv's double quotes
 * decode it; a raw CR it would read as a line break; systemd reads \r as
 * those two characters, still inside the quotes). */
static int quote_with(Buf *out, const char *v, char q, const char *escape, bool cr_as_r) {
        int r = buf_putc(out, q);
        for (const char *p = v; r >= 0 && *p; p++) {
                if (cr_as_r && *p == '\r') {
                        r = buf_puts(out, "\\r");
                        continue;
                }
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
        /* A value ending in \ has no quoted form python-dotenv 0.21 reads:
         * its patterns take the final \' or \" for an escaped quote and run
         * on to the next quote in the file, reading what follows as
         * variables of their own. */
        bool trailing_backslash = n > 0 && v[n - 1] == '\\';
        if (!cr && !trailing_backslash && !strchr(v, '\'') && !strstr(v, "\\\\")) {
                *ret_portable = true;
                return quote_with(out, v, '\'', "", false);
        }
        if (!cr && !trailing_backslash && !strchr(v, '$') && !strchr(v, '`')) {
                *ret_portable = true;
                return quote_with(out, v, '"', "\\\"", false);
        }
        *ret_portable = false;
        if (format == ENV_FORMAT_DOTENV) {
                /* python-dotenv's reading, never one systemd takes for more
                 * lines: double quotes escaping \ and ", which both decode
                 * ($ and ` stay literal in both), so systemd never leaves
                 * the quotes.  A trailing \ has no safe form for it. */
                if (trailing_backslash)
                        return -EDOM;
                return quote_with(out, v, '"', "\\\"", true);
        }
        return quote_with(out, v, '"', "\\\"$`", false);
}

static void close_fdp(int *fd) {
        if (*fd >= 0)
                close(*fd);
}
#define _cleanup_close_ _cleanup_(close_fdp)

/* Reads fd to the end, at most max bytes (-EFBIG past that). */
static int read_fd_full(int fd, size_t max, char **ret, size_t *ret_len) {
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
        if (r < 0) {
                buf_wipe(&b);
                return r;
        }
        if (ret_len)
                *ret_len = b.len;
        *ret = buf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

/* O_NONBLOCK: opening a FIFO must never wait for a writer. */
int read_file_full(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        return read_fd_full(fd, max, ret, ret_len);
}

/* Whether a directory lets a user other than root plant or replace names:
 * owned by another user, or writable by group or others (a sticky
 * directory such as /tmp is fine on the way, since nobody else can rename
 * what root owns in it, but not as the .env's own directory). */
static bool dir_is_unsafe(int fd, bool last) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return true;
        if (st.st_uid != 0)
                return true;
        if (st.st_mode & 0022)
                return last || !(st.st_mode & S_ISVTX);
        return false;
}

/* Opens the directory that holds path, one component at a time from "/"
 * (or the working directory) with O_NOFOLLOW, so that a symlink anywhere
 * on the way is refused (-ELOOP) instead of followed.  "." and ".."
 * components are refused too (-EINVAL).  *ret_name is the last component
 * (caller frees).  With ret_unsafe, *ret_unsafe names the first directory
 * on the way that another user could change (see dir_is_unsafe), or is
 * NULL.  Returns an O_RDONLY directory fd. */
static int open_parent(const char *path, char **ret_name, char **ret_unsafe) {
        if (!path || !*path)
                return -EINVAL;
        _cleanup_free_ char *copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        char *slash = strrchr(copy, '/');
        char *name = slash ? slash + 1 : copy;
        if (!*name || streq(name, ".") || streq(name, ".."))
                return -EINVAL;
        if (slash)
                *slash = 0;

        _cleanup_close_ int fd = open(path[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        _cleanup_free_ char *unsafe = NULL;
        bool top_level = !slash || slash == copy;
        if (ret_unsafe && path[0] == '/' && dir_is_unsafe(fd, top_level) && !(unsafe = strdup("/")))
                return -ENOMEM;
        char *save = NULL;
        for (char *c = slash ? strtok_r(copy, "/", &save) : NULL; c; c = strtok_r(NULL, "/", &save)) {
                if (streq(c, ".") || streq(c, ".."))
                        return -EINVAL;
                int next = openat(fd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0) {
                        int e = errno;
                        struct stat st;
                        if (e == ENOTDIR && fstatat(fd, c, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                                e = ELOOP;
                        return -e;
                }
                close(fd);
                fd = next;
                size_t walked = (size_t) (c - copy) + strlen(c); /* the same offsets in path */
                bool last = c + strlen(c) == slash;
                if (ret_unsafe && !unsafe && dir_is_unsafe(fd, last) && !(unsafe = strndup(path, walked)))
                        return -ENOMEM;
        }
        int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        char *n = strdup(name);
        if (!n) {
                close(dfd);
                return -ENOMEM;
        }
        *ret_name = n;
        if (ret_unsafe)
                *ret_unsafe = TAKE_PTR(unsafe);
        return dfd;
}

int envfile_check_dir(const char *path, char **ret_unsafe) {
        _cleanup_free_ char *name = NULL, *unsafe = NULL;
        int dfd = open_parent(path, &name, &unsafe);
        if (dfd < 0)
                return dfd;
        close(dfd);
        *ret_unsafe = TAKE_PTR(unsafe);
        return *ret_unsafe ? 1 : 0;
}

/* What is at dir/name now.  The file is opened without following a
 * symlink and without blocking (a FIFO or a device there is simply "not
 * ours"); only a regular file with a single link is compared. */
typedef struct OldFile {
        bool regular;     /* a regular file, one link */
        bool same_content;
        bool same_meta;   /* owner, group, mode as wanted */
} OldFile;

static void inspect_old(int dfd, const char *name, const char *content, size_t len, uid_t uid, gid_t gid,
                        mode_t mode, OldFile *ret) {
        *ret = (OldFile) {0};
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1)
                return;
        ret->regular = true;
        ret->same_meta = st.st_uid == uid && st.st_gid == gid && (st.st_mode & 07777) == mode;
        if ((size_t) st.st_size != len)
                return;
        char *old = NULL;
        size_t old_len;
        if (read_fd_full(fd, len + 1, &old, &old_len) < 0)
                return;
        ret->same_content = old_len == len && memcmp(old, content, len) == 0;
        if (old)
                explicit_bzero(old, old_len);
        free(old);
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

#define TEMP_INFIX ".anb-agent."
#define TEMP_RANDOM 6

static bool is_temp_name(const char *entry, const char *name) {
        size_t n = strlen(name), k = strlen(TEMP_INFIX);
        return strlen(entry) == n + k + TEMP_RANDOM && strncmp(entry, name, n) == 0 &&
               strncmp(entry + n, TEMP_INFIX, k) == 0;
}

/* Creates NAME.anb-agent.XXXXXX in dfd: O_EXCL|O_NOFOLLOW, so whatever
 * already has that name (a planted symlink, a FIFO) is never opened. */
static int create_temp(int dfd, const char *name, char **ret_tmp) {
        static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        for (unsigned attempt = 0; attempt < 100; attempt++) {
                unsigned char rnd[TEMP_RANDOM];
                /* Never wait for the entropy pool (early at boot): O_EXCL is
                 * what makes this safe, randomness only avoids collisions. */
                if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t) sizeof rnd) {
                        struct timespec ts;
                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        uint64_t x = (uint64_t) ts.tv_nsec * 2654435761u ^ (uint64_t) getpid() << 20 ^ attempt;
                        for (size_t i = 0; i < TEMP_RANDOM; i++, x >>= 8)
                                rnd[i] = (unsigned char) x;
                }
                char suffix[TEMP_RANDOM + 1];
                for (size_t i = 0; i < TEMP_RANDOM; i++)
                        suffix[i] = chars[rnd[i] % (sizeof chars - 1)];
                suffix[TEMP_RANDOM] = 0;
                char *tmp = strdup_printf("%s" TEMP_INFIX "%s", name, suffix);
                if (!tmp)
                        return -ENOMEM;
                int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
                if (fd >= 0) {
                        *ret_tmp = tmp;
                        return fd;
                }
                int e = errno;
                free(tmp);
                if (e != EEXIST)
                        return -e;
        }
        return -EEXIST;
}

/* Fills the temp file and gives it its owner and mode, all through the
 * descriptor: no path is followed, nothing but our own inode changes. */
static int fill_temp(int fd, const char *content, size_t len, uid_t uid, gid_t gid, mode_t mode) {
        int r = write_all(fd, content, len);
        if (r < 0)
                return r;
        if (fchown(fd, uid, gid) < 0)
                return -errno;
        if (fchmod(fd, mode) < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

int envfile_write(const char *path, const char *content, size_t len, uid_t uid, gid_t gid, mode_t mode,
                  bool *ret_changed) {
        _cleanup_free_ char *name = NULL, *tmp = NULL;
        _cleanup_close_ int dfd = open_parent(path, &name, NULL);
        if (dfd < 0)
                return dfd;

        OldFile old;
        inspect_old(dfd, name, content, len, uid, gid, mode, &old);
        if (old.regular && old.same_content && old.same_meta) {
                *ret_changed = false;
                return 0;
        }

        int fd = create_temp(dfd, name, &tmp);
        if (fd < 0)
                return fd;
        int r = fill_temp(fd, content, len, uid, gid, mode);
        if (close(fd) < 0 && r >= 0)
                r = -errno;
        /* rename replaces the name: a FIFO, symlink or hard link that was
         * there is unlinked, never written through. */
        if (r >= 0 && renameat(dfd, tmp, dfd, name) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlinkat(dfd, tmp, 0);
                return r;
        }
        if (fsync(dfd) < 0)
                return -errno;
        *ret_changed = !(old.regular && old.same_content);
        return 0;
}

int envfile_open_own(const char *path) {
        _cleanup_free_ char *name = NULL;
        _cleanup_close_ int dfd = open_parent(path, &name, NULL);
        if (dfd < 0)
                return dfd;
        int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
        if (fd < 0)
                return errno == ELOOP ? -EPERM : -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_uid != geteuid() ||
            (st.st_mode & 0022)) {
                close(fd);
                return -EPERM;
        }
        return fd;
}

int envfile_remove(const char *path) {
        _cleanup_free_ char *name = NULL;
        _cleanup_close_ int dfd = open_parent(path, &name, NULL);
        if (dfd == -ENOENT)
                return 0;
        if (dfd < 0)
                return dfd;
        if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int envfile_remove_stale_temps(const char *path) {
        _cleanup_free_ char *name = NULL;
        _cleanup_close_ int dfd = open_parent(path, &name, NULL);
        if (dfd == -ENOENT)
                return 0;
        if (dfd < 0)
                return dfd;
        int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        if (dup_fd < 0)
                return -errno;
        DIR *d = fdopendir(dup_fd);
        if (!d) {
                close(dup_fd);
                return -ENOMEM;
        }
        int removed = 0, r = 0;
        struct dirent *e;
        while ((e = readdir(d)))
                if (is_temp_name(e->d_name, name)) {
                        /* Only the name goes: unlinkat never follows it. */
                        if (unlinkat(dfd, e->d_name, 0) == 0)
                                removed++;
                        else if (errno != ENOENT && r == 0)
                                r = -errno;
                }
        closedir(d);
        if (removed > 0 && fsync(dfd) < 0 && r == 0)
                r = -errno;
        return r < 0 ? r : removed;
}
