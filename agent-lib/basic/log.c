/* See log.h. */
#include "basic/log.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/escape.h"

#define LOG_MESSAGE_MAX 2048

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

/* Every message is escaped as a whole (basic/escape.h): a value from
 * outside that holds a newline, CR or ESC cannot start a forged line or
 * priority prefix, in the journal or on a terminal. */
static void log_emit(int prio, const char *raw, size_t n) {
        char msg[4 * LOG_MESSAGE_MAX];
        text_escape_to(msg, sizeof msg, raw, n);
        if (log_state.sink) {
                log_state.sink(prio, msg, log_state.userdata);
                return;
        }
        if (log_state.journal)
                fprintf(stderr, "<%d>%s\n", prio, msg);
        else
                fprintf(stderr, "%s: %s%s\n", log_state.ident, prio_name(prio), msg);
}

void log_msg(int prio, const char *fmt, ...) {
        if (prio > log_state.max_level)
                return;
        char raw[LOG_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(raw, sizeof raw, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        log_emit(prio, raw, (size_t) n < sizeof raw ? (size_t) n : sizeof raw - 1);
}

void log_lines(int prio, const char *text) {
        if (prio > log_state.max_level)
                return;
        for (const char *p = text; p && *p;) {
                size_t n = strcspn(p, "\n");
                if (n)
                        log_emit(prio, p, n < LOG_MESSAGE_MAX ? n : LOG_MESSAGE_MAX - 1);
                p += n;
                if (*p)
                        p++;
        }
}
