/* See awserror.h. */
#include "aws/awserror.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>

#include "aws/ec2xml.h"
#include "basic/util.h"

/* AWS JSON errors: {"__type": "...#Code", "message"|"Message": "..."}. */
static void parse_json_error(const char *body, size_t len, AwsError *e) {
        json_t *j = json_loadb(body, len, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "__type"));
        const char *m = json_string_value(json_object_get(j, "message"));
        if (!m)
                m = json_string_value(json_object_get(j, "Message"));
        if (t) {
                const char *hash = strrchr(t, '#');
                snprintf(e->code, sizeof e->code, "%s", hash ? hash + 1 : t);
        }
        if (m)
                snprintf(e->message, sizeof e->message, "%s", m);
        json_decref(j);
}

static void parse_xml_error(const char *body, size_t len, AwsError *e) {
        char *code = NULL, *m = NULL;
        if (ec2_parse_error(body, len, &code, &m) >= 0) {
                snprintf(e->code, sizeof e->code, "%s", code ? code : "");
                snprintf(e->message, sizeof e->message, "%s", m ? m : "");
        }
        free(code);
        free(m);
}

static bool is_one_of(const char *code, const char *const *list) {
        for (; *list; list++)
                if (streq(code, *list))
                        return true;
        return false;
}

void aws_error_classify(bool xml, long status, const char *body, size_t len, AwsError *e) {
        static const char *const throttled[] = {
                "ThrottlingException", "Throttling", "RequestLimitExceeded", "TooManyUpdates",
                "ServiceUnavailable", "InternalServiceError", "InternalServerError", "InternalFailure",
                "RequestThrottled", "RequestThrottledException", "ThrottledException", NULL,
        };
        static const char *const not_found[] = {"ResourceNotFoundException", "ParameterNotFound", NULL};
        static const char *const expired[] = {"ExpiredTokenException", "ExpiredToken", "RequestExpired", NULL};

        *e = (AwsError) {0};
        if (body && len > 0) {
                if (xml)
                        parse_xml_error(body, len, e);
                else
                        parse_json_error(body, len, e);
        }
        if (!*e->message)
                snprintf(e->message, sizeof e->message, "HTTP %ld", status);
        e->retryable = status >= 500 || status == 429 || is_one_of(e->code, throttled);
        if (is_one_of(e->code, expired))
                e->error = -EKEYEXPIRED;
        else if (is_one_of(e->code, not_found))
                e->error = -ENOENT;
        else if (status == 403 || strstr(e->code, "AccessDenied") || streq(e->code, "UnauthorizedOperation"))
                e->error = -EACCES;
        else
                e->error = -EIO;
}
