/*
 * test_log: the access log's line (log.c) and the error log. Every access-log line is one
 * JSON object that parses whatever the request carried: control characters, quotes,
 * backslashes and bytes that are not UTF-8 are escaped (the line stays ASCII); the values
 * round-trip; the client's token, its key, the Authorization header and the SQL text never
 * appear (only the SQL's hash). An error-log line is one line even when the message is
 * longer than the line buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "req.h"
#include "util.h"

#define SECRET_TOKEN "tok_SECRET_upstream_9f8e7d"
#define SECRET_KEY "hgk_SECRET_client_key_0123"
#define SECRET_SQL "SELECT secret_column FROM hidden_table"

struct fixture {
    char dir[64], path[96];
    struct event_base *base;
    struct log_access *la;
    struct hg_client client;
    struct hg_req req;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/hg-test-log-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/access.log", f->dir);
    assert_int_equal(log_init(LOG_WARNING, f->path), 0);
    f->base = event_base_new();
    f->la = log_access_new(f->base);
    f->client.name = "reporting";
    struct hg_req *r = &f->req;
    TAILQ_INIT(&r->headers);
    evhttp_add_header(&r->headers, "Authorization", "Bearer " SECRET_KEY);
    r->body = evbuffer_new();
    evbuffer_add_printf(r->body, "{\"sql\":\"%s\"}", SECRET_SQL);
    r->body_kind = HG_BODY_MEMORY;
    snprintf(r->request_id, sizeof r->request_id, "rid-1");
    r->method_name = "POST";
    r->method = EVHTTP_REQ_POST;
    r->path = strdup("/v1/query");
    r->client = &f->client;
    r->status = 200;
    r->upstream_status = 200;
    r->bytes_in = 42;
    r->bytes_out = 1234;
    r->start_us = util_mono_us();
    r->wall_ms = 1767225600123ull; /* 2026-01-01T00:00:00.123Z */
    r->cache_outcome = "hit";
    r->upstream_attempts = 1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    log_access_free(f->la);
    event_base_free(f->base);
    log_shutdown();
    evhttp_clear_headers(&f->req.headers);
    evbuffer_free(f->req.body);
    free(f->req.path);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* The access log's content so far (malloc'd, NUL-terminated). */
static char *read_log(struct fixture *f)
{
    log_access_flush(f->la);
    FILE *fp = fopen(f->path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = calloc(1, (size_t)size + 1);
    size_t n = fread(buf, 1, (size_t)size, fp);
    fclose(fp);
    buf[n] = '\0';
    return buf;
}

/* The single line written so far, parsed. */
static json_t *one_line(struct fixture *f, char **raw)
{
    char *text = read_log(f);
    char *nl = strchr(text, '\n');
    assert_non_null(nl);
    assert_int_equal(nl[1], '\0'); /* exactly one line */
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        assert_true(*p == '\n' || (*p >= 0x20 && *p < 0x7f)); /* ASCII, no raw control */
    json_error_t e;
    json_t *o = json_loadb(text, (size_t)(nl - text), 0, &e);
    if (!o)
        fail_msg("not JSON (%s): %s", e.text, text);
    assert_true(json_is_object(o));
    if (raw)
        *raw = text;
    else
        free(text);
    return o;
}

static void test_plain_line(void **state)
{
    struct fixture *f = *state;
    memcpy(f->req.sql_hash, "ab12", 5);
    log_access_write(f->la, &f->req);
    char *raw;
    json_t *o = one_line(f, &raw);
    assert_string_equal(json_string_value(json_object_get(o, "time")), "2026-01-01T00:00:00.123Z");
    assert_string_equal(json_string_value(json_object_get(o, "request_id")), "rid-1");
    assert_string_equal(json_string_value(json_object_get(o, "client")), "reporting");
    assert_string_equal(json_string_value(json_object_get(o, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(o, "path")), "/v1/query");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(o, "bytes_in")), 42);
    assert_int_equal(json_integer_value(json_object_get(o, "bytes_out")), 1234);
    assert_string_equal(json_string_value(json_object_get(o, "cache")), "hit");
    assert_string_equal(json_string_value(json_object_get(o, "sql_hash")), "ab12");
    assert_null(json_object_get(o, "client_gone"));
    /* secrets: neither the client's key, nor the Authorization header, nor the SQL */
    assert_null(strstr(raw, SECRET_KEY));
    assert_null(strstr(raw, "Bearer"));
    assert_null(strstr(raw, "secret_column"));
    assert_null(strstr(raw, "hidden_table"));
    json_decref(o);
    free(raw);
}

static void test_escaping(void **state)
{
    struct fixture *f = *state;
    /* control characters, a quote, a backslash, DEL and bytes that are not UTF-8 */
    static const char nasty[] = "a\"b\\c\n\r\t\x01\x1f\x7f"
                                "d\xff\xc3\x28"
                                "e";
    free(f->req.path);
    f->req.path = strdup(nasty);
    snprintf(f->req.request_id, sizeof f->req.request_id, "%s", "id\"}{\n,\"status\":1");
    f->client.name = "cl\\ient\x02";
    f->req.client_gone = 1;
    log_access_write(f->la, &f->req);
    char *raw;
    json_t *o = one_line(f, &raw);
    /* each byte is kept: escaped, never dropped or folded into another field */
    const char *path = json_string_value(json_object_get(o, "path"));
    assert_non_null(path);
    assert_int_equal(strlen(path), strlen(nasty) + 2); /* \xff and \xc3 read back as U+00xx */
    assert_memory_equal(path,
                        "a\"b\\c\n\r\t\x01\x1f\x7f"
                        "d",
                        11);
    assert_non_null(strstr(raw, "\\u0022")); /* the quote */
    assert_non_null(strstr(raw, "\\u000a")); /* the newline */
    assert_non_null(strstr(raw, "\\u00ff")); /* a byte that is not UTF-8 */
    assert_string_equal(json_string_value(json_object_get(o, "request_id")),
                        "id\"}{\n,\"status\":1");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 200); /* not injected */
    assert_string_equal(json_string_value(json_object_get(o, "client")), "cl\\ient\x02");
    assert_true(json_is_true(json_object_get(o, "client_gone")));
    json_decref(o);
    free(raw);
}

static void test_before_auth(void **state)
{
    struct fixture *f = *state;
    f->req.client = NULL;
    f->req.method_name = NULL;
    f->req.cache_outcome = NULL;
    f->req.status = 401;
    log_access_write(f->la, &f->req);
    json_t *o = one_line(f, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "client")), "-");
    assert_string_equal(json_string_value(json_object_get(o, "method")), "-");
    assert_string_equal(json_string_value(json_object_get(o, "cache")), "-");
    assert_null(json_object_get(o, "sql_hash")); /* none computed */
    json_decref(o);
}

static void test_many_lines(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 3000; i++) { /* past the 64 KiB flush threshold */
        snprintf(f->req.request_id, sizeof f->req.request_id, "rid-%d", i);
        log_access_write(f->la, &f->req);
    }
    char *text = read_log(f);
    int n = 0;
    for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1, n++) {
        json_error_t e;
        json_t *o = json_loadb(line, (size_t)(nl - line), 0, &e);
        assert_non_null(o);
        char want[32];
        snprintf(want, sizeof want, "rid-%d", n);
        assert_string_equal(json_string_value(json_object_get(o, "request_id")), want);
        json_decref(o);
    }
    assert_int_equal(n, 3000);
    free(text);
}

/* The error log: one line per message, however long; below the level nothing. */
static void test_error_log_line(void **state)
{
    (void)state;
    char path[] = "/tmp/hg-test-errlog-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(2);
    dup2(fd, 2);
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_msg(LOG_ERR, "long: %s", big);
    log_msg(LOG_INFO, "below the level %s", SECRET_TOKEN); /* level is LOG_WARNING */
    log_msg(LOG_WARNING, "short");
    dup2(saved, 2);
    close(saved);
    char buf[8192];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    buf[n] = '\0';
    char *nl = strchr(buf, '\n');
    assert_non_null(nl);
    assert_true(nl - buf < 2048); /* truncated to the line buffer, still one line */
    assert_non_null(strstr(buf, " error: long: xxx"));
    assert_non_null(strstr(nl + 1, " warn: short\n"));
    assert_null(strstr(buf, SECRET_TOKEN));
    assert_int_equal(log_enabled(LOG_INFO), 0);
    assert_int_equal(log_enabled(LOG_ERR), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_before_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_log_line, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
