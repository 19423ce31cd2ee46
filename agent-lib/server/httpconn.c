/* See httpconn.h. */
#include "server/httpconn.h"

#include <stdio.h>

const char *http_status_text(int status) {
        switch (status) {
        case 200: return "OK";
        case 400: return "Bad Request";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 413: return "Content Too Large";
        case 414: return "URI Too Long";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 503: return "Service Unavailable";
        default: return "Unknown";
        }
}

static int reject(HttpConn *c, int status) {
        c->error_status = status;
        return HPE_USER;
}

static int on_message_begin(llhttp_t *p) {
        HttpConn *c = p->data;
        c->in_message = true;
        c->begun++;
        c->url_len = 0;
        c->header_bytes = 0;
        c->body_bytes = 0;
        return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
        HttpConn *c = p->data;
        if (c->url_len + len > HTTPCONN_MAX_URL)
                return reject(c, 414);
        memcpy(c->url + c->url_len, at, len);
        c->url_len += len;
        c->header_bytes += len;
        return 0;
}

static int on_header_data(llhttp_t *p, const char *at, size_t len) {
        (void) at;
        HttpConn *c = p->data;
        c->header_bytes += len;
        return c->header_bytes > HTTPCONN_MAX_HEADERS ? reject(c, 431) : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
        (void) at;
        HttpConn *c = p->data;
        c->body_bytes += len;
        return c->body_bytes > HTTPCONN_MAX_BODY ? reject(c, 413) : 0;
}

static void append_response(HttpConn *c, int status, bool head, bool keep_alive, const char *extra,
                            const HttpReply *r) {
        const char *ctype = r && r->content_type ? r->content_type : "text/plain; charset=utf-8";
        size_t blen = r ? r->body_len : 0;
        buf_printf(c->out,
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: %s\r\n"
                   "Content-Length: %zu\r\n"
                   "Cache-Control: no-store\r\n"
                   "%s"
                   "Connection: %s\r\n\r\n",
                   status, http_status_text(status), ctype, blen, extra ? extra : "",
                   keep_alive ? "keep-alive" : "close");
        if (!head && blen)
                buf_append(c->out, r->body, blen);
}

static void append_error(HttpConn *c, int status) {
        char body[64];
        int n = snprintf(body, sizeof body, "%d %s\n", status, http_status_text(status));
        HttpReply r = {.status = status, .body = body, .body_len = (size_t) n};
        append_response(c, status, false, false, NULL, &r);
}

static int on_message_complete(llhttp_t *p) {
        HttpConn *c = p->data;
        uint8_t method = llhttp_get_method(p);
        bool keep = llhttp_should_keep_alive(p);
        c->in_message = false;
        c->requests++;
        c->url[c->url_len] = 0;
        size_t plen = strcspn(c->url, "?#");
        c->url[plen] = 0;

        if (method != HTTP_GET && method != HTTP_HEAD) {
                char body[] = "405 Method Not Allowed\n";
                HttpReply r = {.body = body, .body_len = sizeof body - 1};
                append_response(c, 405, false, keep, "Allow: GET, HEAD\r\n", &r);
        } else {
                HttpReply r = {.status = 404};
                c->route(c->userdata, c->url, &r);
                if (r.status == 404 && !r.body) {
                        r.body = "404 Not Found\n";
                        r.body_len = strlen(r.body);
                }
                append_response(c, r.status, method == HTTP_HEAD, keep, NULL, &r);
        }
        if (!keep) {
                c->close = true;
                return HPE_PAUSED; /* read nothing after a closing request */
        }
        if (++c->answered >= HTTPCONN_MAX_ANSWERS_PER_FEED)
                return HPE_PAUSED; /* the caller feeds the rest later */
        return 0;
}

static const llhttp_settings_t *settings(void) {
        static llhttp_settings_t s;
        static bool init;
        if (!init) {
                llhttp_settings_init(&s);
                s.on_message_begin = on_message_begin;
                s.on_url = on_url;
                s.on_header_field = on_header_data;
                s.on_header_value = on_header_data;
                s.on_body = on_body;
                s.on_message_complete = on_message_complete;
                init = true;
        }
        return &s;
}

void httpconn_init(HttpConn *c, HttpRoute route, void *userdata) {
        *c = (HttpConn) {.route = route, .userdata = userdata};
        llhttp_init(&c->parser, HTTP_REQUEST, settings());
        c->parser.data = c;
}

/* One llhttp_execute; *ret_used is how much of data it consumed. */
static bool feed_once(HttpConn *c, const char *data, size_t len, size_t *ret_used) {
        c->answered = 0;
        *ret_used = len;
        llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
        if (e == HPE_OK)
                return false;
        if (e == HPE_PAUSED && !c->close) {
                /* The answer limit: stopped just after a complete request. */
                *ret_used = (size_t) (llhttp_get_error_pos(&c->parser) - data);
                llhttp_resume(&c->parser);
                return false;
        }
        if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
                /* After a request asking to close, or an Upgrade/CONNECT
                 * (already answered, 405 or as a plain GET): close. */
                c->close = true;
                return true;
        }
        append_error(c, c->error_status ? c->error_status : 400);
        c->close = true;
        return true;
}

bool httpconn_feed(HttpConn *c, const char *data, size_t len, Buf *out, size_t *ret_used) {
        if (ret_used)
                *ret_used = len;
        if (c->close)
                return true;
        c->out = out;
        if (ret_used)
                return feed_once(c, data, len, ret_used);
        size_t off = 0;
        while (off < len) {
                size_t used;
                if (feed_once(c, data + off, len - off, &used))
                        return true;
                off += used;
        }
        return false;
}

bool httpconn_eof(HttpConn *c, Buf *out) {
        (void) out;
        c->close = true;
        return true;
}

bool httpconn_in_request(const HttpConn *c) {
        return c->in_message;
}
