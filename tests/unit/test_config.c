/*
 * test_config: every key parsed into struct hg_config, defaults, value syntax, errors that
 * name file + line + key, unknown keys and sections, token sources and the file mode rule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

static char dir[64];
static char err[8192];

static char *write_conf(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static struct hg_config *load(const char *text, int secrets)
{
    char *p = write_conf("t.conf", text);
    return config_load(p, secrets, err, sizeof err);
}

#define KEY_A "2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90"

static void test_defaults(void **state)
{
    struct hg_config *c = load("", 0);
    assert_non_null(c);
    assert_int_equal(c->server.n_listen, 1);
    assert_string_equal(c->server.listen[0], "127.0.0.1:8080");
    assert_null(c->server.unix_socket);
    assert_true(c->server.threads >= 1);
    assert_string_equal(c->upstream.url, "https://api.hotdata.dev");
    assert_true(c->upstream.tls_verify);
    assert_true(c->upstream.http2);
    assert_int_equal(c->upstream.client, HG_UPSTREAM_CLIENT_AUTO);
    assert_string_equal(c->server.access_log, "stderr");
    assert_int_equal(c->admin.n_listen, 0);
    assert_non_null(config_class(c, "interactive"));
    assert_int_equal(config_class(c, "interactive")->weight, 4);
    assert_int_equal(config_class(c, "batch")->weight, 1);
    assert_false(c->redis.enabled);
    assert_int_equal(c->redis.op_timeout_ms, 50);
    assert_string_equal(c->redis.key_prefix, "hg:");
    assert_null(c->redis.password_file);
    config_free(c);
}

static void test_every_key(void **state)
{
    struct hg_config *c = load("[server]\n"
                               "listen = 127.0.0.1:9000, [::1]:9001\n"
                               "unix_socket = /run/hotgate/hotgate.sock\n"
                               "threads = 3\n"
                               "max_header_size = 32K\n"
                               "max_body_size = 3G\n"
                               "read_timeout = 0.5\n"
                               "write_timeout = 2s\n"
                               "keepalive_timeout = 1m\n"
                               "drain_timeout = 250ms\n"
                               "access_log = off\n"
                               "log_level = debug\n"
                               "[admin]\n"
                               "listen = 127.0.0.1:9100\n"
                               "token_env = HG_ADMIN\n"
                               "[upstream]\n"
                               "url = http://127.0.0.1:7000/\n"
                               "tls_verify = no\n"
                               "http2 = off\n"
                               "connect_timeout = 1.5\n"
                               "timeout = 90\n"
                               "idle_timeout = 2m\n"
                               "max_connections_per_host = 8\n"
                               "retries = 3\n"
                               "retry_backoff_ms = 50\n"
                               "[credential main]\n"
                               "token_env = HG_TOK\n"
                               "rate = 600/m\n"
                               "burst = 20\n"
                               "max_concurrent = 4\n"
                               "[class bulk]\n"
                               "weight = 2\n"
                               "[client a]\n"
                               "key_sha256 = " KEY_A "\n"
                               "credential = main\n"
                               "workspaces = ws_1, ws_2\n"
                               "default_workspace = ws_2\n"
                               "mode = full\n"
                               "class = bulk\n"
                               "rate = 5\n"
                               "burst = 10\n"
                               "max_queued = 7\n"
                               "[queue]\n"
                               "max_total = 100\n"
                               "max_per_client = 10\n"
                               "deadline = 5s\n"
                               "[cache]\n"
                               "enabled = yes\n"
                               "dir = /var/cache/hg\n"
                               "size = 2G\n"
                               "max_entry_size = 16M\n"
                               "ttl_query = 30s\n"
                               "ttl_metadata = 10\n"
                               "ttl_immutable = 1h\n"
                               "stale_while_revalidate = 5\n"
                               "stale_if_error = 10m\n"
                               "poll_window_ms = 250\n"
                               "negative_ttl = 2\n"
                               "high_water = 80%\n"
                               "[redis]\n"
                               "enabled = true\n"
                               "url = redis://10.0.0.1:6379/0\n"
                               "key_prefix = fleet1:\n"
                               "connect_timeout = 2s\n"
                               "op_timeout = 20ms\n"
                               "max_entry_size = 256K\n"
                               "sentinel = 10.0.0.2:26379,10.0.0.3:26379\n"
                               "sentinel_master = hgm\n"
                               "local_share = 34%\n"
                               "stream_maxlen = 5000\n",
                               0);
    if (!c)
        fail_msg("%s", err);
    assert_int_equal(c->server.n_listen, 2);
    assert_string_equal(c->server.listen[1], "[::1]:9001");
    assert_string_equal(c->server.unix_socket, "/run/hotgate/hotgate.sock");
    assert_int_equal(c->server.threads, 3);
    assert_int_equal(c->server.max_header_size, 32 * 1024);
    assert_true(c->server.max_body_size == 3ull << 30);
    assert_int_equal(c->server.read_timeout_ms, 500);
    assert_int_equal(c->server.write_timeout_ms, 2000);
    assert_int_equal(c->server.keepalive_timeout_ms, 60000);
    assert_int_equal(c->server.drain_timeout_ms, 250);
    assert_string_equal(c->server.access_log, "off");
    assert_int_equal(c->server.log_level, LOG_DEBUG);
    assert_string_equal(c->admin.listen[0], "127.0.0.1:9100");
    assert_int_equal(c->admin.token_source, HG_SECRET_ENV);
    assert_string_equal(c->upstream.url, "http://127.0.0.1:7000");
    assert_false(c->upstream.tls_verify);
    assert_false(c->upstream.http2);
    assert_int_equal(c->upstream.connect_timeout_ms, 1500);
    assert_int_equal(c->upstream.timeout_ms, 90000);
    assert_int_equal(c->upstream.idle_timeout_ms, 120000);
    assert_int_equal(c->upstream.max_connections_per_host, 8);
    assert_int_equal(c->upstream.retries, 3);
    assert_int_equal(c->upstream.retry_backoff_ms, 50);
    const struct hg_credential *cr = config_credential(c, "main");
    assert_non_null(cr);
    assert_true(cr->rate > 9.99 && cr->rate < 10.01);
    assert_int_equal(cr->burst, 20);
    assert_int_equal(cr->max_concurrent, 4);
    assert_int_equal(config_class(c, "bulk")->weight, 2);
    assert_int_equal(c->n_clients, 1);
    const struct hg_client *cl = &c->clients[0];
    assert_string_equal(cl->name, "a");
    assert_true(cl->has_key);
    assert_ptr_equal(cl->credential, cr);
    assert_int_equal(cl->n_workspaces, 2);
    assert_string_equal(cl->workspaces[1], "ws_2");
    assert_string_equal(cl->default_workspace, "ws_2");
    assert_int_equal(cl->mode, HG_MODE_FULL);
    assert_string_equal(cl->cls->name, "bulk");
    assert_true(cl->rate == 5.0);
    assert_int_equal(cl->burst, 10);
    assert_int_equal(cl->max_queued, 7);
    assert_int_equal(c->queue.max_total, 100);
    assert_int_equal(c->queue.max_per_client, 10);
    assert_int_equal(c->queue.deadline_ms, 5000);
    assert_true(c->cache.enabled);
    assert_string_equal(c->cache.dir, "/var/cache/hg");
    assert_true(c->cache.size == 2ull << 30);
    assert_int_equal(c->cache.max_entry_size, 16 << 20);
    assert_int_equal(c->cache.ttl_query_ms, 30000);
    assert_int_equal(c->cache.ttl_metadata_ms, 10000);
    assert_int_equal(c->cache.ttl_immutable_ms, 3600000);
    assert_int_equal(c->cache.stale_while_revalidate_ms, 5000);
    assert_int_equal(c->cache.stale_if_error_ms, 600000);
    assert_int_equal(c->cache.poll_window_ms, 250);
    assert_int_equal(c->cache.negative_ttl_ms, 2000);
    assert_true(c->cache.high_water > 0.79 && c->cache.high_water < 0.81);
    assert_true(c->redis.enabled);
    assert_string_equal(c->redis.url, "redis://10.0.0.1:6379/0");
    assert_string_equal(c->redis.key_prefix, "fleet1:");
    assert_int_equal(c->redis.connect_timeout_ms, 2000);
    assert_int_equal(c->redis.op_timeout_ms, 20);
    assert_int_equal(c->redis.max_entry_size, 256 * 1024);
    assert_string_equal(c->redis.sentinel, "10.0.0.2:26379,10.0.0.3:26379");
    assert_string_equal(c->redis.sentinel_master, "hgm");
    assert_true(c->redis.local_share > 0.339 && c->redis.local_share < 0.341);
    assert_int_equal(c->redis.stream_maxlen, 5000);
    config_free(c);
}

/* err must hold "t.conf:LINE: [SECTION] KEY:" */
static void expect_error(const char *text, int line, const char *section, const char *key,
                         const char *msg_part)
{
    struct hg_config *c = load(text, 1);
    if (c) {
        config_free(c);
        fail_msg("accepted: %s", text);
    }
    char want[256];
    snprintf(want, sizeof want, "t.conf:%d: [%s] %s:", line, section, key);
    if (!strstr(err, want))
        fail_msg("error '%s' lacks '%s'", err, want);
    if (msg_part && !strstr(err, msg_part))
        fail_msg("error '%s' lacks '%s'", err, msg_part);
}

static void test_errors_name_file_line_key(void **state)
{
    expect_error("[server]\n\nthreads = lots\n", 3, "server", "threads", "'auto' or a number");
    expect_error("[server]\nbogus = 1\n", 2, "server", "bogus", "unknown key");
    expect_error("# c\n[nonsense]\nx = 1\n", 3, "nonsense", "x", "unknown section");
    expect_error("[server]\nlisten = localhost\n", 2, "server", "listen", "invalid address");
    expect_error("[server]\nread_timeout = 5 minutes\n", 2, "server", "read_timeout", "duration");
    expect_error("[server]\nread_timeout = -1\n", 2, "server", "read_timeout", "duration");
    expect_error("[server]\nthreads = 2\nthreads = 3\n", 3, "server", "threads", "duplicate");
    expect_error("[upstream]\nurl = ftp://x\n", 2, "upstream", "url", NULL);
    expect_error("[upstream]\nurl = https://user@host\n", 2, "upstream", "url", NULL);
    expect_error("[upstream]\ntls_verify = maybe\n", 2, "upstream", "tls_verify", "boolean");
    expect_error("[upstream]\nretry_backoff_ms = fast\n", 2, "upstream", "retry_backoff_ms", NULL);
    expect_error("[upstream]\nclient = fast\n", 2, "upstream", "client", "auto, curl or native");
    expect_error("[upstream]\nurl = https://h\nclient = native\n", 3, "upstream", "client",
                 "plain http:// only");
    expect_error("[cache]\nsize = 12Q\n", 2, "cache", "size", "size");
    expect_error("[cache]\nhigh_water = 1.5\n", 2, "cache", "high_water", NULL);
    expect_error("[client a]\nkey_sha256 = abc\n", 2, "client a", "key_sha256", "64 hex");
    expect_error("[client a]\nmode = admin\n", 2, "client a", "mode", NULL);
    expect_error("[client a]\nkey_sha256 = " KEY_A "\nworkspaces = *\n\ncredential = nope\n", 5,
                 "client a", "credential", "no [credential nope]");
    expect_error("[credential c]\ntoken_env = HG_TEST_UNSET_X\n"
                 "[client a]\nkey_sha256 = " KEY_A "\ncredential = c\nworkspaces = w1\n"
                 "default_workspace = w2\n",
                 7, "client a", "default_workspace", "not in workspaces");
    expect_error("[credential c]\ntoken_env = A\ntoken_file = /x\n", 3, "credential c",
                 "token_file", "already set");
    expect_error("[credential c]\nrate = fast\n", 2, "credential c", "rate", NULL);
    expect_error("[credential c]\ntoken_env = HG_TEST_UNSET_X\n", 2, "credential c", "token_env",
                 "not set");
    expect_error("[redis]\nurl = http://x\n", 2, "redis", "url", NULL);
    expect_error("[redis]\nurl = rediss://x:6380\n", 2, "redis", "url", "TLS");
    expect_error("[redis]\nop_timeout = 0\n", 2, "redis", "op_timeout", NULL);
    expect_error("[redis]\nkey_prefix = a{b}\n", 2, "redis", "key_prefix", NULL);
    expect_error("[redis]\nsentinel = 10.0.0.1:26379\n", 0, "redis", "sentinel_master", "together");
    expect_error("[redis]\npassword_file = /nonexistent/hg.pass\n", 2, "redis", "password_file",
                 "cannot open");
    expect_error("[class x]\nweight = 0\n", 2, "class x", "weight", NULL);
    expect_error("[client bad name!]\nmode = full\n", 2, "client bad name!", "mode",
                 "invalid section name");
    /* several errors are all reported */
    struct hg_config *c = load("[server]\nthreads = x\nfoo = 1\n", 0);
    assert_null(c);
    assert_non_null(strstr(err, "t.conf:2: [server] threads:"));
    assert_non_null(strstr(err, "t.conf:3: [server] foo:"));
}

static void test_value_parsers(void **state)
{
    uint64_t v;
    assert_int_equal(config_parse_duration_ms("1", 0, &v), 0);
    assert_int_equal(v, 1000);
    assert_int_equal(config_parse_duration_ms("0.25", 0, &v), 0);
    assert_int_equal(v, 250);
    assert_int_equal(config_parse_duration_ms("15", 1, &v), 0);
    assert_int_equal(v, 15);
    assert_int_equal(config_parse_duration_ms("2h", 0, &v), 0);
    assert_int_equal(v, 7200000);
    assert_int_equal(config_parse_duration_ms("1.5s", 1, &v), 0);
    assert_int_equal(v, 1500);
    assert_int_not_equal(config_parse_duration_ms("", 0, &v), 0);
    assert_int_not_equal(config_parse_duration_ms("1d", 0, &v), 0);
    assert_int_not_equal(config_parse_duration_ms("s", 0, &v), 0);
    assert_int_equal(config_parse_size("512", &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(config_parse_size("4k", &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(config_parse_size("1.5M", &v), 0);
    assert_int_equal(v, 1572864);
    assert_int_equal(config_parse_size("2GiB", &v), 0);
    assert_true(v == 2ull << 30);
    assert_int_equal(config_parse_size("3MB", &v), 0);
    assert_int_not_equal(config_parse_size("3X", &v), 0);
    assert_int_not_equal(config_parse_size("-1", &v), 0);
    int b;
    assert_int_equal(config_parse_bool("On", &b), 0);
    assert_true(b);
    assert_int_equal(config_parse_bool("0", &b), 0);
    assert_false(b);
    assert_int_not_equal(config_parse_bool("2", &b), 0);
}

static void test_token_sources(void **state)
{
    char tok[256], text[1024];
    snprintf(tok, sizeof tok, "%s/token", dir);
    FILE *f = fopen(tok, "w");
    fputs("secret-token-123\n", f);
    fclose(f);

    /* too open: refused, naming the key's line */
    chmod(tok, 0644);
    snprintf(text, sizeof text, "[server]\nthreads = 1\n[credential c]\ntoken_file = %s\n", tok);
    expect_error(text, 4, "credential c", "token_file", "0600");
    chmod(tok, 0640);
    expect_error(text, 4, "credential c", "token_file", "0600");

    chmod(tok, 0600);
    struct hg_config *c = load(text, 1);
    if (!c)
        fail_msg("%s", err);
    const struct hg_credential *cr = config_credential(c, "c");
    assert_string_equal(cr->token.data, "secret-token-123"); /* newline trimmed */
    assert_int_equal(cr->token.len, 16);
    config_free(c);
    chmod(tok, 0400);
    c = load(text, 1);
    assert_non_null(c);
    config_free(c);

    /* environment */
    setenv("HG_TEST_TOK", "env-token", 1);
    c = load("[credential c]\ntoken_env = HG_TEST_TOK\n", 1);
    assert_non_null(c);
    assert_string_equal(config_credential(c, "c")->token.data, "env-token");
    config_free(c);

    /* systemd credential */
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    chmod(tok, 0600);
    c = load("[credential c]\ntoken_credential = token\n", 1);
    if (!c)
        fail_msg("%s", err);
    assert_string_equal(config_credential(c, "c")->token.data, "secret-token-123");
    config_free(c);
    expect_error("[credential c]\ntoken_credential = ../token\n", 2, "credential c",
                 "token_credential", NULL);
    unsetenv("CREDENTIALS_DIRECTORY");
    expect_error("[credential c]\ntoken_credential = token\n", 2, "credential c",
                 "token_credential", "CREDENTIALS_DIRECTORY");

    /* a credential needs a source; the error never echoes a token */
    expect_error("[credential c]\nrate = 1\n", 2, "credential c", "token_file", "no token");
    setenv("HG_TEST_TOK", "", 1);
    expect_error("[credential c]\ntoken_env = HG_TEST_TOK\n", 2, "credential c", "token_env",
                 "empty");
    setenv("HG_TEST_TOK", "has space", 1);
    expect_error("[credential c]\ntoken_env = HG_TEST_TOK\n", 2, "credential c", "token_env", NULL);
    assert_null(strstr(err, "has space"));
    unlink(tok);
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/hg-config-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char p[128];
    snprintf(p, sizeof p, "%s/t.conf", dir);
    unlink(p);
    rmdir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_errors_name_file_line_key),
        cmocka_unit_test(test_value_parsers),
        cmocka_unit_test(test_token_sources),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
