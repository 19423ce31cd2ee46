/* See http.h. */
#include "loop/http.h"

#include <errno.h>

#include "basic/log.h"
#include "basic/util.h"

struct HttpLoop {
        uv_loop_t *loop;
        CURLM *multi;
        uv_timer_t timer;
        HttpCall *calls;
        bool closing;
};

struct HttpCall {
        HttpLoop *h;
        CURL *easy;
        struct curl_slist *headers;
        char *body;
        size_t body_len;
        Buf response;
        bool too_large;
        char errbuf[CURL_ERROR_SIZE];
        HttpDone done;
        void *userdata;
        HttpCall *prev, *next;
};

typedef struct SocketCtx {
        uv_poll_t poll;
        curl_socket_t fd;
        HttpLoop *h;
} SocketCtx;

static void check_done(HttpLoop *h);

static void call_free(HttpCall *c) {
        if (!c)
                return;
        if (c->easy) {
                curl_multi_remove_handle(c->h->multi, c->easy);
                curl_easy_cleanup(c->easy);
        }
        curl_slist_free_all(c->headers);
        if (c->body)
                explicit_bzero(c->body, c->body_len);
        free(c->body);
        buf_wipe(&c->response);
        if (c->prev)
                c->prev->next = c->next;
        else if (c->h->calls == c)
                c->h->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        free(c);
}

static void poll_close_cb(uv_handle_t *handle) {
        free(handle->data);
}

static void on_poll(uv_poll_t *p, int status, int events) {
        SocketCtx *s = p->data;
        int flags = 0, running;
        if (status < 0)
                flags = CURL_CSELECT_ERR;
        if (events & UV_READABLE)
                flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
                flags |= CURL_CSELECT_OUT;
        HttpLoop *h = s->h;
        curl_multi_socket_action(h->multi, s->fd, flags, &running);
        check_done(h);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        (void) easy;
        HttpLoop *h = userp;
        SocketCtx *s = socketp;

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        uv_poll_stop(&s->poll);
                        uv_close((uv_handle_t *) &s->poll, poll_close_cb);
                        curl_multi_assign(h->multi, fd, NULL);
                }
                return 0;
        }
        if (!s) {
                s = calloc(1, sizeof(SocketCtx));
                if (!s)
                        return -1;
                s->fd = fd;
                s->h = h;
                if (uv_poll_init_socket(h->loop, &s->poll, fd) < 0) {
                        free(s);
                        return -1;
                }
                s->poll.data = s;
                curl_multi_assign(h->multi, fd, s);
        }
        int events = 0;
        if (what & CURL_POLL_IN)
                events |= UV_READABLE;
        if (what & CURL_POLL_OUT)
                events |= UV_WRITABLE;
        uv_poll_start(&s->poll, events, on_poll);
        return 0;
}

static void on_timeout(uv_timer_t *t) {
        HttpLoop *h = t->data;
        int running;
        curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(h);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        (void) multi;
        HttpLoop *h = userp;
        if (h->closing)
                return 0;
        if (timeout_ms < 0)
                uv_timer_stop(&h->timer);
        else
                uv_timer_start(&h->timer, on_timeout, (uint64_t) timeout_ms, 0);
        return 0;
}

static int curl_to_errno(CURLcode c) {
        switch (c) {
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        case CURLE_WRITE_ERROR:
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
                return -EINVAL;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CACERT_BADFILE:
                return -EPROTO;
        default:
                return -EIO;
        }
}

static void check_done(HttpLoop *h) {
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(h->multi, &left))) {
                if (m->msg != CURLMSG_DONE)
                        continue;
                HttpCall *c = NULL;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &c);
                HttpResponse res = {0};
                if (m->data.result != CURLE_OK) {
                        res.error = c->too_large ? -EFBIG : curl_to_errno(m->data.result);
                        res.reason = c->too_large ? "response too large"
                                     : c->errbuf[0] ? c->errbuf
                                                    : curl_easy_strerror(m->data.result);
                } else
                        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &res.status);
                res.body = c->response.data ? c->response.data : "";
                res.body_len = c->response.len;
                HttpDone done = c->done;
                void *ud = c->userdata;
                /* Detach first: the callback may start new calls. */
                curl_multi_remove_handle(h->multi, c->easy);
                done(&res, ud);
                call_free(c);
        }
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        HttpCall *c = userdata;
        size_t n = size * nmemb;
        if (c->response.len + n > HTTP_MAX_BODY) {
                c->too_large = true;
                return 0;
        }
        return buf_append(&c->response, ptr, n) < 0 ? 0 : n;
}

int http_loop_new(uv_loop_t *loop, HttpLoop **ret) {
        HttpLoop *h = calloc(1, sizeof(HttpLoop));
        if (!h)
                return -ENOMEM;
        h->loop = loop;
        h->multi = curl_multi_init();
        if (!h->multi) {
                free(h);
                return -ENOMEM;
        }
        uv_timer_init(loop, &h->timer);
        h->timer.data = h;
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
        *ret = h;
        return 0;
}

static void timer_close_cb(uv_handle_t *handle) {
        free(handle->data);
}

void http_loop_free(HttpLoop *h) {
        if (!h)
                return;
        while (h->calls)
                call_free(h->calls);
        h->closing = true;
        curl_multi_cleanup(h->multi);
        uv_timer_stop(&h->timer);
        uv_close((uv_handle_t *) &h->timer, timer_close_cb);
}

static int setup_easy(HttpCall *c, const HttpRequest *req) {
        CURL *e = c->easy;
        for (const char *const *hdr = req->headers; hdr && *hdr; hdr++) {
                struct curl_slist *l = curl_slist_append(c->headers, *hdr);
                if (!l)
                        return -ENOMEM;
                c->headers = l;
        }
        /* No "Expect:" override here: libcurl 7.88's SigV4 would sign it as
         * an empty header that it then does not send. */
        if (curl_easy_setopt(e, CURLOPT_URL, req->url) != CURLE_OK)
                return -EINVAL;
        curl_easy_setopt(e, CURLOPT_PRIVATE, c);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_PROXY, "");
        curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(e, CURLOPT_VERBOSE, 0L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85: CURLOPT_PROTOCOLS is deprecated */
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, req->https_only ? "https" : req->any_http ? "http,https" : "http");
#else
        curl_easy_setopt(e, CURLOPT_PROTOCOLS,
                         req->https_only ? (long) CURLPROTO_HTTPS
                         : req->any_http ? (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS)
                                         : (long) CURLPROTO_HTTP);
#endif
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms);
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) HTTP_MAX_BODY);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "anb-agent/" ANB_VERSION);
        /* TLS is always verified, whatever the scheme's origin. */
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        if (req->ca_file)
                curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
        if (req->aws_sigv4) {
                curl_easy_setopt(e, CURLOPT_AWS_SIGV4, req->aws_sigv4);
                curl_easy_setopt(e, CURLOPT_USERNAME, req->aws_key_id);
                curl_easy_setopt(e, CURLOPT_PASSWORD, req->aws_secret);
        }
        if (req->body) {
                c->body = malloc(req->body_len + 1);
                if (!c->body)
                        return -ENOMEM;
                memcpy(c->body, req->body, req->body_len);
                c->body[req->body_len] = 0;
                c->body_len = req->body_len;
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) c->body_len);
        }
        if (streq(req->method, "GET"))
                curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        else if (streq(req->method, "POST")) {
                if (!req->body)
                        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L), curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        } else {
                if (!req->body)
                        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L), curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
                curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
        }
        return 0;
}

int http_start(HttpLoop *h, const HttpRequest *req, HttpDone done, void *userdata, HttpCall **ret_call) {
        HttpCall *c = calloc(1, sizeof(HttpCall));
        if (!c)
                return -ENOMEM;
        c->h = h;
        c->done = done;
        c->userdata = userdata;
        c->next = h->calls;
        if (h->calls)
                h->calls->prev = c;
        h->calls = c;
        c->easy = curl_easy_init();
        int r = c->easy ? setup_easy(c, req) : -ENOMEM;
        if (r >= 0 && curl_multi_add_handle(h->multi, c->easy) != CURLM_OK)
                r = -ENOMEM;
        if (r < 0) {
                call_free(c);
                return r;
        }
        if (ret_call)
                *ret_call = c;
        return 0;
}

void http_cancel(HttpCall *c) {
        call_free(c);
}
