/* See awscreds.h. */
#include "aws/awscreds.h"

#include <errno.h>
#include <jansson.h>

#include "basic/util.h"

void aws_credentials_free(AwsCredentials *c) {
        if (!c)
                return;
        free(c->role);
        free_wipe(c->access_key_id);
        free_wipe(c->secret_access_key);
        free_wipe(c->token);
        free(c);
}

int parse_iso8601_utc(const char *s, time_t *ret) {
        struct tm tm = {0};
        const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!end)
                return -EINVAL;
        if (*end == '.')
                for (end++; *end >= '0' && *end <= '9'; end++)
                        ;
        if (!streq(end, "Z"))
                return -EINVAL;
        time_t t = timegm(&tm);
        if (t == (time_t) -1)
                return -EINVAL;
        *ret = t;
        return 0;
}

int aws_credentials_parse(const char *role, const char *json, size_t len, AwsCredentials **ret, char **ret_error) {
        json_error_t jerr;
        *ret_error = NULL;
        json_t *root = json_loadb(json, len, 0, &jerr);
        if (!root || !json_is_object(root)) {
                json_decref(root);
                *ret_error = strdup_printf("credentials for role %s are not a JSON object", role);
                return -EBADMSG;
        }
        const char *code = json_string_value(json_object_get(root, "Code"));
        const char *kid = json_string_value(json_object_get(root, "AccessKeyId"));
        const char *secret = json_string_value(json_object_get(root, "SecretAccessKey"));
        const char *token = json_string_value(json_object_get(root, "Token"));
        const char *exp = json_string_value(json_object_get(root, "Expiration"));
        int r = 0;
        AwsCredentials *c = NULL;
        time_t t;
        if (!code || !streq(code, "Success")) {
                *ret_error = strdup_printf("IMDS reports Code=%s for role %s's credentials", code ? code : "(none)",
                                           role);
                r = -EACCES;
        } else if (!kid || !secret || !token || !exp) {
                *ret_error = strdup_printf("credentials for role %s lack AccessKeyId, SecretAccessKey, Token or "
                                           "Expiration",
                                           role);
                r = -EBADMSG;
        } else if (parse_iso8601_utc(exp, &t) < 0) {
                *ret_error = strdup_printf("credentials for role %s have an unreadable Expiration", role);
                r = -EBADMSG;
        } else if (!(c = calloc(1, sizeof(AwsCredentials))) || !(c->role = strdup(role)) ||
                   !(c->access_key_id = strdup(kid)) || !(c->secret_access_key = strdup(secret)) ||
                   !(c->token = strdup(token))) {
                r = -ENOMEM;
        } else
                c->expiration = t;
        json_decref(root); /* jansson does not wipe; the strings were ours only briefly */
        if (r < 0) {
                aws_credentials_free(c);
                return r;
        }
        *ret = c;
        return 0;
}
