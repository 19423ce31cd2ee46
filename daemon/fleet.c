/* See fleet.h. */
#include "fleet.h"

#include <errno.h>
#include <stdio.h>

#include <jansson.h>

#include "aws/aws.h"
#include "aws/credentials.h"
#include "aws/ec2xml.h"
#include "aws/imds.h"
#include "basic/list.h"
#include "basic/log.h"
#include "basic/util.h"

typedef struct HookCall {
        ListLink link;
        Fleet *f;
        char *hook;
        char *action; /* "CompleteLifecycleAction" or "RecordLifecycleActionHeartbeat" */
        char *result; /* CONTINUE / ABANDON, for Complete */
        bool waiting; /* a step is in flight */
} HookCall;

struct Fleet {
        uv_loop_t *loop;
        const RenderSources *src;
        FleetEvents ev;
        void *userdata;
        bool closing;

        ImdsClient *poll;
        uv_timer_t poll_timer;
        unsigned poll_interval_ms;
        unsigned polls_in_flight;
        bool polled; /* the first poll was made */
        char *spot_seen;    /* the notice already reported */
        char *target_state; /* last seen, "" when absent */

        char *instance_id, *region, *group;
        bool group_from_tags_failed; /* IMDS tags off: ask EC2 */
        unsigned spot_absent;        /* 404s in a row since the notice */
        ListLink calls;
};

/* ---- watching IMDS -------------------------------------------------------- */

static bool plain_text(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] >= 0x7f)
                        return false;
        return true;
}

/* Polls in a row answering 404 after a notice before it counts as gone:
 * one stray 404 must not flip /health back to 200 mid-interruption. */
#define SPOT_GONE_AFTER 3

static void on_spot(const ImdsResult *res, void *userdata) {
        Fleet *f = userdata;
        f->polls_in_flight--;
        if (f->closing)
                return;
        if (res->error == -ENOENT && f->spot_seen && ++f->spot_absent >= SPOT_GONE_AFTER) {
                /* Withdrawn: the instance was not interrupted after all (a
                 * hibernation it came back from, a stop that was not made). */
                free(f->spot_seen), f->spot_seen = NULL;
                f->spot_absent = 0;
                if (f->ev.spot_notice)
                        f->ev.spot_notice(NULL, NULL, f->userdata);
                return;
        }
        if (res->error)
                return; /* 404: no notice; errors: the next poll asks again */
        f->spot_absent = 0;
        json_error_t jerr;
        _cleanup_(json_decrefp) json_t *doc = json_loadb(res->body, res->body_len, 0, &jerr);
        const char *action = json_string_value(json_object_get(doc, "action"));
        const char *when = json_string_value(json_object_get(doc, "time"));
        if (!action || !plain_text(action, strlen(action)) || strlen(action) > 32)
                action = "unknown";
        if (!when || !plain_text(when, strlen(when)) || strlen(when) > 40)
                when = "unknown";
        _cleanup_free_ char *key = strdup_printf("%s@%s", action, when);
        if (!key || streq_ptr(f->spot_seen, key))
                return;
        free(f->spot_seen);
        f->spot_seen = TAKE_PTR(key);
        if (f->ev.spot_notice)
                f->ev.spot_notice(action, when, f->userdata);
}

static void on_target_state(const ImdsResult *res, void *userdata) {
        Fleet *f = userdata;
        f->polls_in_flight--;
        if (f->closing || (res->error && res->error != -ENOENT))
                return;
        char state[64] = "";
        if (!res->error) {
                size_t n = res->body_len;
                while (n && (res->body[n - 1] == '\n' || res->body[n - 1] == ' '))
                        n--;
                if (n >= sizeof state || !plain_text(res->body, n))
                        return;
                memcpy(state, res->body, n);
                state[n] = 0;
        }
        if (streq_ptr(f->target_state, state))
                return;
        free(f->target_state);
        f->target_state = strdup(state);
        if (*state && f->ev.target_state)
                f->ev.target_state(state, f->userdata);
}

static void on_poll_timer(uv_timer_t *t) {
        Fleet *f = t->data;
        f->polled = true;
        if (f->polls_in_flight)
                return; /* a slow IMDS: never stack polls */
        f->polls_in_flight += 2;
        if (imds_get(f->poll, "meta-data/spot/instance-action", on_spot, f, NULL) < 0)
                f->polls_in_flight--;
        if (imds_get(f->poll, "meta-data/autoscaling/target-lifecycle-state", on_target_state, f, NULL) < 0)
                f->polls_in_flight--;
}

void fleet_watch(Fleet *f, uint64_t first_ms) {
        if (f->poll)
                uv_timer_start(&f->poll_timer, on_poll_timer, first_ms, f->poll_interval_ms);
}

void fleet_watch_now(Fleet *f) {
        if (f && f->poll && !f->polled && uv_is_active((uv_handle_t *) &f->poll_timer))
                uv_timer_start(&f->poll_timer, on_poll_timer, 0, f->poll_interval_ms);
}

/* ---- hook calls --------------------------------------------------------- */

static void step(HookCall *c);

static void call_free(HookCall *c) {
        list_unlink(&c->link);
        free(c->hook);
        free(c->action);
        free(c->result);
        free(c);
}

static void call_end(HookCall *c, int error, const char *message) {
        Fleet *f = c->f;
        if (!f->closing && f->ev.hook_done)
                f->ev.hook_done(c->hook, c->result ? c->result : "heartbeat", error, message, f->userdata);
        call_free(c);
}

/* Percent-encodes s for a form value (RFC 3986 unreserved kept). */
static void form_put(Buf *b, const char *name, const char *value) {
        buf_printf(b, "&%s=", name);
        for (const unsigned char *p = (const unsigned char *) value; *p; p++)
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                    *p == '_' || *p == '.' || *p == '~')
                        buf_putc(b, (char) *p);
                else
                        buf_printf(b, "%%%02X", *p);
}

static void on_identity(const ImdsResult *res, void *userdata) {
        HookCall *c = userdata;
        c->waiting = false;
        if (res->error) {
                call_end(c, res->error, res->message ? res->message : "cannot read the identity document");
                return;
        }
        json_error_t jerr;
        _cleanup_(json_decrefp) json_t *doc = json_loadb(res->body, res->body_len, 0, &jerr);
        const char *id = json_string_value(json_object_get(doc, "instanceId"));
        const char *region = json_string_value(json_object_get(doc, "region"));
        if (!aws_instance_id_is_valid(id) || !aws_region_is_valid(region)) {
                call_end(c, -EBADMSG,
                         "the identity document has no instanceId or region shaped like AWS's "
                         "(\"i-0123456789abcdef0\", \"eu-west-1\")");
                return;
        }
        free(c->f->instance_id), c->f->instance_id = strdup(id);
        free(c->f->region), c->f->region = strdup(region);
        step(c);
}

static void on_group_tag(const ImdsResult *res, void *userdata) {
        HookCall *c = userdata;
        c->waiting = false;
        if (res->error == -ENOENT) {
                c->f->group_from_tags_failed = true; /* tags not in IMDS: ask EC2 */
                step(c);
                return;
        }
        if (res->error) {
                call_end(c, res->error, res->message ? res->message : "cannot read the instance's tags");
                return;
        }
        free(c->f->group);
        c->f->group = strndup(res->body, res->body_len);
        step(c);
}

static void on_group_from_ec2_tag(const char *key, const char *value, void *ud) {
        Fleet *f = ud;
        if (streq(key, "aws:autoscaling:groupName")) {
                free(f->group);
                f->group = strdup(value);
        }
}

static void on_describe_tags(const AwsResult *res, void *userdata) {
        HookCall *c = userdata;
        c->waiting = false;
        if (res->error || res->status != 200) {
                call_end(c, res->error ? res->error : -EIO, res->message ? res->message : "ec2:DescribeTags failed");
                return;
        }
        ec2_parse_describe_tags(res->body, res->body_len, on_group_from_ec2_tag, c->f, NULL);
        if (!c->f->group) {
                call_end(c, -ENOENT, "the instance has no tag aws:autoscaling:groupName: it is not in an Auto Scaling group");
                return;
        }
        step(c);
}

static void on_asg(const AwsResult *res, void *userdata) {
        HookCall *c = userdata;
        c->waiting = false;
        if (res->error || res->status != 200) {
                _cleanup_free_ char *msg = strdup_printf("autoscaling:%s for hook %s: %s%s%s", c->action, c->hook,
                                                         res->code ? res->code : "",
                                                         res->code && res->message ? ": " : "",
                                                         res->message ? res->message : "failed");
                call_end(c, res->error ? res->error : -EIO, msg ? msg : "failed");
                return;
        }
        call_end(c, 0, NULL);
}

static void on_creds(int error, const char *message, const AwsCredentials *creds, void *userdata) {
        HookCall *c = userdata;
        Fleet *f = c->f;
        c->waiting = false;
        if (error) {
                call_end(c, error, message ? message : "no role credentials");
                return;
        }
        _cleanup_(buf_deinit) Buf form = {0};
        int r;
        if (!f->group) {
                buf_puts(&form, "Action=DescribeTags&Version=2016-11-15");
                form_put(&form, "Filter.1.Name", "resource-id");
                form_put(&form, "Filter.1.Value.1", f->instance_id);
                form_put(&form, "Filter.2.Name", "key");
                form_put(&form, "Filter.2.Value.1", "aws:autoscaling:groupName");
                r = aws_call_query(f->src->aws, creds, f->region, AWS_EC2, form.data, on_describe_tags, c, NULL);
        } else {
                buf_printf(&form, "Action=%s&Version=2011-01-01", c->action);
                form_put(&form, "AutoScalingGroupName", f->group);
                form_put(&form, "LifecycleHookName", c->hook);
                form_put(&form, "InstanceId", f->instance_id);
                if (c->result)
                        form_put(&form, "LifecycleActionResult", c->result);
                r = aws_call_query(f->src->aws, creds, f->region, AWS_AUTO_SCALING, form.data, on_asg, c, NULL);
        }
        if (r < 0)
                call_end(c, r, "cannot start the AWS call");
        else
                c->waiting = true;
}

/* Gathers what the call needs (identity, group, credentials), then makes it. */
static void step(HookCall *c) {
        Fleet *f = c->f;
        int r;
        if (!f->src->imds || !f->src->aws || !f->src->creds) {
                call_end(c, -EOPNOTSUPP, "lifecycle hooks need IMDS (role credentials) and AWS");
                return;
        }
        c->waiting = true;
        if (!f->instance_id || !f->region)
                r = imds_get(f->src->imds, "dynamic/instance-identity/document", on_identity, c, NULL);
        else if (!f->group && !f->group_from_tags_failed)
                r = imds_get(f->src->imds, "meta-data/tags/instance/aws:autoscaling:groupName", on_group_tag, c,
                             NULL);
        else
                r = credentials_get(f->src->creds, false, on_creds, c, NULL);
        if (r < 0) {
                c->waiting = false;
                call_end(c, r, "cannot start the call");
        }
}

static int hook_call(Fleet *f, const char *hook, const char *action, const char *result) {
        HookCall *c = calloc(1, sizeof(HookCall));
        if (!c)
                return -ENOMEM;
        c->f = f;
        c->hook = strdup(hook);
        c->action = strdup(action);
        c->result = result ? strdup(result) : NULL;
        list_append(&f->calls, &c->link);
        if (!c->hook || !c->action || (result && !c->result)) {
                call_free(c);
                return -ENOMEM;
        }
        step(c);
        return 0;
}

int fleet_complete_hook(Fleet *f, const char *hook, const char *result) {
        return hook_call(f, hook, "CompleteLifecycleAction", result);
}

int fleet_heartbeat(Fleet *f, const char *hook) {
        return hook_call(f, hook, "RecordLifecycleActionHeartbeat", NULL);
}

/* ---- lifetime ------------------------------------------------------------ */

int fleet_new(uv_loop_t *loop, HttpLoop *http, const Config *config, const RenderSources *src,
              const FleetEvents *events, void *userdata, Fleet **ret) {
        Fleet *f = calloc(1, sizeof(Fleet));
        if (!f)
                return -ENOMEM;
        f->loop = loop;
        f->src = src;
        f->ev = *events;
        f->userdata = userdata;
        f->poll_interval_ms = config->lifecycle_poll_ms;
        list_init(&f->calls);
        uv_timer_init(loop, &f->poll_timer);
        f->poll_timer.data = f;
        if (!config->imds_disabled) {
                ImdsOptions o = {
                        .endpoint = config->imds_endpoint,
                        .token_ttl = config->imds_token_ttl,
                        .connect_timeout_ms = 1000,
                        .timeout_ms = 1000,
                        .attempts = 1,
                        .backoff_ms = 100,
                };
                int r = imds_client_new(loop, http, &o, &f->poll);
                if (r < 0) {
                        fleet_free(f);
                        return r;
                }
        }
        *ret = f;
        return 0;
}

static void timer_closed(uv_handle_t *h) {
        free(h->data);
}

/* The render sources cancel silently when freed, so the HookCalls waiting
 * on them are only freed here. */
void fleet_free(Fleet *f) {
        if (!f)
                return;
        f->closing = true;
        uv_timer_stop(&f->poll_timer);
        imds_client_free(f->poll);
        f->poll = NULL;
        list_for_each_safe(l, next, &f->calls) call_free(list_entry(l, HookCall, link));
        free(f->spot_seen);
        free(f->target_state);
        free(f->instance_id);
        free(f->region);
        free(f->group);
        f->poll_timer.data = f;
        uv_close((uv_handle_t *) &f->poll_timer, timer_closed);
}
