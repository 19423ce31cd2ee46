/* See log.h. */
#include "log.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static struct {
        const char *ident;
        int max_level;
        bool journal;
        void (*sink)(int, const char *, void *);
        void *userdata;
} log_state = {"anb-agent", LOG_INFO, false, NULL, NULL};

static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long dev, ino;
        struct stat st;
        if (!e || sscanf(e, "%lu:%lu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == dev && st.st_ino == ino;
}

void log_setup(const char *ident) {
        log_state.ident = ident;
        log_state.journal = stderr_is_journal();
}

void log_set_max_level(int level) {
        log_state.max_level = level;
}

void log_set_sink(void (*fn)(int, const char *, void *), void *userdata) {
        log_state.sink = fn;
        log_state.userdata = userdata;
}

static const char *prio_name(int prio) {
        switch (prio) {
        case LOG_EMERG:
        case LOG_ALERT:
        case LOG_CRIT:
        case LOG_ERR:
                return "error: ";
        case LOG_WARNING:
                return "warning: ";
        case LOG_DEBUG:
                return "debug: ";
        default:
                return "";
        }
}

void log_msg(int prio, const char *fmt, ...) {
        if (prio > log_state.max_level)
                return;
        char msg[2048];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (log_state.sink) {
                log_state.sink(prio, msg, log_state.userdata);
                return;
        }
        if (log_state.journal)
                fprintf(stderr, "<%d>%s\n", prio, msg);
        else
                fprintf(stderr, "%s: %s%s\n", log_state.ident, prio_name(prio), msg);
}

void log_lines(int prio, const char *text) {
        for (const char *p = text; p && *p;) {
                size_t n = strcspn(p, "\n");
                if (n)
                        log_msg(prio, "%.*s", (int) n, p);
                p += n;
                if (*p)
                        p++;
        }
}
