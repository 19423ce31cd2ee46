/* The pure AWS helpers, table-driven: EC2's XML answers (DescribeTags
 * pages, error documents) and what an error answer means (retry or not,
 * which errno), in both the JSON 1.1 and the Query XML shapes. */
#include <errno.h>
#include <stdio.h>

#include "aws/aws.h"
#include "aws/awscreds.h"
#include "aws/awserror.h"
#include "aws/ec2xml.h"
#include "basic/util.h"
#include "testutil.h"

#define NS "xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\""

static const struct {
        const char *name;
        const char *xml;
        int ret;
        const char *tags;  /* "k=v;" each, in order */
        const char *next;  /* NULL: last page */
} describe_cases[] = {
        {"two tags, last page",
         "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeTagsResponse " NS "><requestId>r</requestId><tagSet>"
         "<item><resourceId>i-1</resourceId><resourceType>instance</resourceType><key>Name</key><value>web</value>"
         "</item><item><key>anb:role</key><value>worker</value></item></tagSet></DescribeTagsResponse>",
         0, "Name=web;anb:role=worker;", NULL},
        {"a page with a next token",
         "<DescribeTagsResponse " NS "><tagSet><item><key>a</key><value>1</value></item></tagSet>"
         "<nextToken>abc==</nextToken></DescribeTagsResponse>",
         0, "a=1;", "abc=="},
        {"empty nextToken is the last page",
         "<DescribeTagsResponse><tagSet/><nextToken></nextToken></DescribeTagsResponse>", 0, "", NULL},
        {"no tags", "<DescribeTagsResponse " NS "><tagSet/></DescribeTagsResponse>", 0, "", NULL},
        {"entities and an empty value",
         "<DescribeTagsResponse><tagSet><item><key>e</key><value>a&amp;b &lt;c&gt;</value></item>"
         "<item><key>empty</key><value></value></item><item><key>novalue</key></item></tagSet>"
         "</DescribeTagsResponse>",
         0, "e=a&b <c>;empty=;novalue=;", NULL},
        {"a namespace prefix",
         "<ec2:DescribeTagsResponse xmlns:ec2=\"urn:x\"><ec2:tagSet><ec2:item><ec2:key>k</ec2:key>"
         "<ec2:value>v</ec2:value></ec2:item></ec2:tagSet></ec2:DescribeTagsResponse>",
         0, "k=v;", NULL},
        {"a key outside tagSet is not a tag",
         "<DescribeTagsResponse><other><item><key>x</key><value>y</value></item></other></DescribeTagsResponse>",
         0, "", NULL},
        {"truncated", "<DescribeTagsResponse><tagSet><item><key>a</key>", -EBADMSG, NULL, NULL},
        {"not XML", "{\"Tags\": []}", -EBADMSG, NULL, NULL},
        {"empty", "", -EBADMSG, NULL, NULL},
};

static void collect_tag(const char *k, const char *v, void *ud) {
        buf_printf(ud, "%s=%s;", k, v);
}

START_TEST(ec2_describe_tags_parses_each_shape) {
        for (size_t i = 0; i < ELEMENTSOF(describe_cases); i++) {
                Buf tags = {0};
                buf_puts(&tags, "");
                char *next = (char *) "unset";
                int r = ec2_parse_describe_tags(describe_cases[i].xml, strlen(describe_cases[i].xml), collect_tag,
                                                &tags, &next);
                ck_assert_msg(r == describe_cases[i].ret, "%s: ret %d", describe_cases[i].name, r);
                if (r == 0) {
                        ck_assert_msg(streq(tags.data, describe_cases[i].tags), "%s: tags %s",
                                      describe_cases[i].name, tags.data);
                        ck_assert_msg(streq_ptr(next, describe_cases[i].next), "%s: next %s", describe_cases[i].name,
                                      next ? next : "(null)");
                        free(next);
                }
                buf_deinit(&tags);
        }
}
END_TEST

START_TEST(ec2_describe_tags_next_token_may_be_ignored) {
        /* daemon/fleet.c reads one filtered page and passes NULL. */
        const char *xml = describe_cases[1].xml;
        Buf tags = {0};
        ck_assert_int_eq(ec2_parse_describe_tags(xml, strlen(xml), collect_tag, &tags, NULL), 0);
        ck_assert_str_eq(tags.data, "a=1;");
        buf_deinit(&tags);
}
END_TEST

START_TEST(ec2_error_document_gives_code_and_message) {
        const char *xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>"
                          "<Code>UnauthorizedOperation</Code><Message>You are not authorized.</Message></Error>"
                          "</Errors><RequestID>x</RequestID></Response>";
        char *code = NULL, *msg = NULL;
        ck_assert_int_eq(ec2_parse_error(xml, strlen(xml), &code, &msg), 0);
        ck_assert_str_eq(code, "UnauthorizedOperation");
        ck_assert_str_eq(msg, "You are not authorized.");
        free(code), free(msg);
        ck_assert_int_eq(ec2_parse_error("<Response/>", 11, &code, &msg), 0);
        ck_assert_ptr_null(code);
        ck_assert_ptr_null(msg);
}
END_TEST

#define XMLERR(c, m) "<Response><Errors><Error><Code>" c "</Code><Message>" m "</Message></Error></Errors></Response>"
#define JSONERR(t, m) "{\"__type\": \"" t "\", \"message\": \"" m "\"}"

static const struct {
        const char *name;
        bool xml;
        long status;
        const char *body;
        int error;
        bool retryable;
        const char *code;
        const char *message;
} error_cases[] = {
        {"JSON throttling", false, 400, JSONERR("ThrottlingException", "Rate exceeded"), -EIO, true,
         "ThrottlingException", "Rate exceeded"},
        {"JSON access denied", false, 400, JSONERR("AccessDeniedException", "User: x is not authorized"), -EACCES,
         false, "AccessDeniedException", "User: x is not authorized"},
        {"JSON not found (Secrets Manager)", false, 400,
         JSONERR("ResourceNotFoundException", "Secrets Manager can't find the specified secret."), -ENOENT, false,
         "ResourceNotFoundException", NULL},
        {"JSON not found (SSM), namespaced type", false, 400,
         "{\"__type\": \"com.amazonaws.ssm#ParameterNotFound\", \"Message\": \"nope\"}", -ENOENT, false,
         "ParameterNotFound", "nope"},
        {"JSON expired token", false, 400, JSONERR("ExpiredTokenException", "The security token included in the "
                                                                             "request is expired"),
         -EKEYEXPIRED, false, "ExpiredTokenException", NULL},
        {"JSON internal error is retried", false, 500, JSONERR("InternalServiceError", "oops"), -EIO, true,
         "InternalServiceError", "oops"},
        {"JSON validation error is final", false, 400, JSONERR("ValidationException", "bad"), -EIO, false,
         "ValidationException", "bad"},
        {"XML throttling", true, 503, XMLERR("RequestLimitExceeded", "Request limit exceeded."), -EIO, true,
         "RequestLimitExceeded", "Request limit exceeded."},
        {"XML unauthorized", true, 403, XMLERR("UnauthorizedOperation", "You are not authorized."), -EACCES, false,
         "UnauthorizedOperation", "You are not authorized."},
        {"XML expired request", true, 400, XMLERR("RequestExpired", "Request has expired."), -EKEYEXPIRED, false,
         "RequestExpired", NULL},
        {"XML auth failure is final", true, 401, XMLERR("AuthFailure", "AWS was not able to validate"), -EIO, false,
         "AuthFailure", NULL},
        {"429 without a body", false, 429, "", -EIO, true, "", "HTTP 429"},
        {"502 from a proxy, HTML", false, 502, "<html>Bad Gateway</html>", -EIO, true, "", "HTTP 502"},
        {"403 without a code", true, 403, "", -EACCES, false, "", "HTTP 403"},
        {"garbage body", false, 400, "\x01\x02", -EIO, false, "", "HTTP 400"},
};

START_TEST(aws_errors_are_classified_in_both_shapes) {
        for (size_t i = 0; i < ELEMENTSOF(error_cases); i++) {
                AwsError e;
                aws_error_classify(error_cases[i].xml, error_cases[i].status, error_cases[i].body,
                                   strlen(error_cases[i].body), &e);
                ck_assert_msg(e.error == error_cases[i].error, "%s: error %d", error_cases[i].name, e.error);
                ck_assert_msg(e.retryable == error_cases[i].retryable, "%s: retryable %d", error_cases[i].name,
                              e.retryable);
                ck_assert_msg(streq(e.code, error_cases[i].code), "%s: code %s", error_cases[i].name, e.code);
                if (error_cases[i].message)
                        ck_assert_msg(streq(e.message, error_cases[i].message), "%s: message %s",
                                      error_cases[i].name, e.message);
        }
}
END_TEST

START_TEST(iso8601_timestamps) {
        static const struct {
                const char *s;
                int ret;
                time_t t;
        } cases[] = {
                {"2026-11-22T21:00:00Z", 0, 1795381200},
                {"2026-11-22T21:00:00.123Z", 0, 1795381200},
                {"1970-01-01T00:00:00Z", 0, 0},
                {"2026-11-22 21:00:00", -EINVAL, 0},
                {"2026-11-22T21:00:00+01:00", -EINVAL, 0},
                {"2026-11-22T21:00:00", -EINVAL, 0},
                {"", -EINVAL, 0},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                time_t t = -1;
                ck_assert_msg(parse_iso8601_utc(cases[i].s, &t) == cases[i].ret, "%s", cases[i].s);
                if (cases[i].ret == 0)
                        ck_assert_msg(t == cases[i].t, "%s: %lld", cases[i].s, (long long) t);
        }
}
END_TEST

START_TEST(identity_region_and_instance_id_shapes) {
        static const char *const regions[] = {"us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1",
                                              "cn-northwest-1", "il-central-1", "us-isob-east-1", "eusc-de-east-1",
                                              "mx-central-1", "ap-southeast-7", "eu-isoe-west-1"};
        static const char *const not_regions[] = {"", "us", "us-east", "us-east-", "useast-1", "US-EAST-1",
                                                  "us-east-1a", "attacker.example/x", "us-east-1.evil",
                                                  "us-east-1/", "u-east-1", "us--east-1", "us-east-1 ",
                                                  "us-east-1\n", "a-very-long-region-name-abcdefghijk-1", "abcde-east-1"};
        for (size_t i = 0; i < ELEMENTSOF(regions); i++)
                ck_assert_msg(aws_region_is_valid(regions[i]), "%s", regions[i]);
        for (size_t i = 0; i < ELEMENTSOF(not_regions); i++)
                ck_assert_msg(!aws_region_is_valid(not_regions[i]), "%s", not_regions[i]);
        ck_assert(!aws_region_is_valid(NULL));
        ck_assert(aws_instance_id_is_valid("i-0123456789abcdef0"));
        ck_assert(aws_instance_id_is_valid("i-12345678"));
        static const char *const not_ids[] = {"", "i-", "i-123", "i-0123456789ABCDEF0", "i-0123456789abcdef0&x=1",
                                              "i-0123456789abcdef", "x-12345678", "i-123456789"};
        for (size_t i = 0; i < ELEMENTSOF(not_ids); i++)
                ck_assert_msg(!aws_instance_id_is_valid(not_ids[i]), "%s", not_ids[i]);
        ck_assert(!aws_instance_id_is_valid(NULL));
}
END_TEST

START_TEST(credentials_json_is_parsed_without_leaking_values_into_errors) {
        static const char ok[] = "{\"Code\": \"Success\", \"AccessKeyId\": \"ASIAX\", \"SecretAccessKey\": \"sek\","
                                 " \"Token\": \"tok\", \"Expiration\": \"2026-11-22T21:00:00Z\"}";
        AwsCredentials *c = NULL;
        char *err = NULL;
        ck_assert_int_eq(aws_credentials_parse("role", ok, strlen(ok), &c, &err), 0);
        ck_assert_str_eq(c->access_key_id, "ASIAX");
        ck_assert_int_eq(c->expiration, 1795381200);
        aws_credentials_free(c);
        static const char bad_exp[] = "{\"Code\": \"Success\", \"AccessKeyId\": \"ASIAX\", \"SecretAccessKey\": "
                                      "\"sek\", \"Token\": \"tok\", \"Expiration\": \"soon\"}";
        ck_assert_int_eq(aws_credentials_parse("role", bad_exp, strlen(bad_exp), &c, &err), -EBADMSG);
        ck_assert_ptr_null(strstr(err, "sek"));
        free(err);
        ck_assert_int_eq(aws_credentials_parse("role", "[]", 2, &c, &err), -EBADMSG);
        free(err);
}
END_TEST

TEST_SUITE(suite_awsparse)
Suite *suite_awsparse(void) {
        Suite *s = suite_create("awsparse");
        TCase *tc = tcase_create("tables");
        tcase_add_test(tc, ec2_describe_tags_parses_each_shape);
        tcase_add_test(tc, ec2_describe_tags_next_token_may_be_ignored);
        tcase_add_test(tc, ec2_error_document_gives_code_and_message);
        tcase_add_test(tc, aws_errors_are_classified_in_both_shapes);
        tcase_add_test(tc, iso8601_timestamps);
        tcase_add_test(tc, credentials_json_is_parsed_without_leaking_values_into_errors);
        tcase_add_test(tc, identity_region_and_instance_id_shapes);
        suite_add_tcase(s, tc);
        return s;
}
