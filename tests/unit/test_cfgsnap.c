/*
 * test_cfgsnap: counted config snapshots. A reference taken before a publish keeps the old
 * snapshot (and its token) alive; the last release wipes the token (the boot config keeps
 * its other settings, a later snapshot is freed); generations never repeat. Also
 * reload_static_diff: the settings that need a restart.
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
#include <unistd.h>

#include "cfgsnap.h"
#include "config.h"
#include "reload.h"

static char dir[64];

static struct hg_config *load(const char *token, const char *extra)
{
    char tok[128], conf[128], text[1024], err[4096];
    snprintf(tok, sizeof tok, "%s/token", dir);
    snprintf(conf, sizeof conf, "%s/t.conf", dir);
    FILE *f = fopen(tok, "w");
    fputs(token, f);
    fclose(f);
    chmod(tok, 0600);
    snprintf(text, sizeof text,
             "[server]\nthreads = 2\n%s\n[credential main]\ntoken_file = %s\n"
             "[client a]\nkey_sha256 = %064d\ncredential = main\nworkspaces = *\n",
             extra ? extra : "", tok, 1);
    f = fopen(conf, "w");
    fputs(text, f);
    fclose(f);
    struct hg_config *c = config_load(conf, 1, err, sizeof err);
    if (!c)
        fprintf(stderr, "%s", err);
    return c;
}

static void test_snapshots(void **state)
{
    (void)state;
    struct hg_config *boot = load("tok_one", NULL);
    assert_non_null(boot);
    char id1[33];
    memcpy(id1, boot->credentials[0].cache_id, sizeof id1);
    assert_int_equal(strlen(id1), 32);
    cfgsnap_init(boot);
    assert_int_equal(cfgsnap_generation(), 1);
    assert_ptr_equal(cfgsnap_boot(), boot);

    const struct hg_config *held = cfgsnap_acquire(); /* a request running on boot */
    assert_ptr_equal(held, boot);
    struct hg_config *two = load("tok_two", NULL);
    assert_non_null(two);
    assert_string_not_equal(two->credentials[0].cache_id, id1); /* new token, own entries */
    cfgsnap_publish(two);
    assert_int_equal(cfgsnap_generation(), 2);
    assert_int_equal(two->generation, 2);
    assert_int_equal(cfgsnap_alive(), 2);
    /* the running request still has its token */
    assert_non_null(held->credentials[0].token.data);
    assert_string_equal(held->credentials[0].token.data, "tok_one");
    const struct hg_config *now = cfgsnap_acquire();
    assert_ptr_equal(now, two);
    assert_string_equal(now->credentials[0].token.data, "tok_two");
    cfgsnap_release(held); /* the last user of boot: its token is wiped, the rest stays */
    assert_int_equal(cfgsnap_alive(), 1);
    assert_null(boot->credentials[0].token.data);
    assert_int_equal(boot->server.threads, 2);

    cfgsnap_hold(now); /* two references now */
    struct hg_config *three = load("tok_three", NULL);
    cfgsnap_publish(three);
    assert_int_equal(cfgsnap_generation(), 3);
    cfgsnap_release(now);
    assert_int_equal(cfgsnap_alive(), 2);
    cfgsnap_release(now); /* two is freed (ASan would see a use after this) */
    assert_int_equal(cfgsnap_alive(), 1);
    cfgsnap_shutdown();
    assert_int_equal(cfgsnap_alive(), 0);
}

static void test_static_diff(void **state)
{
    (void)state;
    struct hg_config *a = load("t", NULL);
    struct hg_config *b = load("t", "listen = 127.0.0.1:9999\nlog_level = debug");
    struct hg_config *c = load("t", "log_level = debug");
    char out[512];
    assert_int_equal(reload_static_diff(a, a, out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(reload_static_diff(a, c, out, sizeof out), 0); /* log level reloads */
    assert_int_equal(reload_static_diff(a, b, out, sizeof out), 1);
    assert_string_equal(out, "[server] listen");
    config_free(a);
    config_free(b);
    config_free(c);
    assert_true(reload_key_is_live("server", "log_level"));
    assert_false(reload_key_is_live("server", "listen"));
    assert_false(reload_key_is_live("upstream", "url"));
    assert_true(reload_key_is_live("cache", "ttl.connections"));
    assert_false(reload_key_is_live("cache", "size"));
    assert_true(reload_key_is_live("client", "key_sha256"));
    assert_true(reload_key_is_live("credential", "rate"));
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/hg-cfgsnap-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshots),
        cmocka_unit_test(test_static_diff),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
