/*
 * test_auth: client key lookup by hash, workspace rules and modes (auth.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "route.h"
#include "auth.h"
#include "util.h"

static struct hg_config *cfg;

static int setup(void **state)
{
    char path[] = "/tmp/hg-auth-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    char a[65], b[65], c[65];
    util_sha256_hex("ck_alice", 8, a);
    util_sha256_hex("ck_bob", 6, b);
    util_sha256_hex("ck_carol", 8, c);
    fprintf(f,
            "[credential main]\ntoken_env = HG_TEST_TOKEN\n"
            "[client alice]\nkey_sha256 = %s\ncredential = main\nworkspaces = ws_a, ws_b\n"
            "default_workspace = ws_a\nmode = full\n"
            "[client bob]\nkey_sha256 = %s\ncredential = main\nworkspaces = ws_a\n"
            "mode = read-only\n"
            "[client carol]\nkey_sha256 = %s\ncredential = main\nworkspaces = *\n",
            a, b, c);
    fclose(f);
    char err[2048];
    cfg = config_load(path, 0, err, sizeof err);
    unlink(path);
    if (!cfg)
        fprintf(stderr, "%s", err);
    return cfg ? 0 : -1;
}

static int teardown(void **state)
{
    config_free(cfg);
    return 0;
}

static void test_key_lookup(void **state)
{
    const struct hg_client *cl = auth_client(cfg, "Bearer ck_alice");
    assert_non_null(cl);
    assert_string_equal(cl->name, "alice");
    cl = auth_client(cfg, "bearer   ck_bob  ");
    assert_non_null(cl);
    assert_string_equal(cl->name, "bob");
    assert_string_equal(auth_client(cfg, "Bearer ck_carol")->name, "carol");
    assert_null(auth_client(cfg, "Bearer ck_alicE"));
    assert_null(auth_client(cfg, "Bearer ck_alice2"));
    assert_null(auth_client(cfg, "Bearer "));
    assert_null(auth_client(cfg, "Bearer"));
    assert_null(auth_client(cfg, "Basic Y2tfYWxpY2U6"));
    assert_null(auth_client(cfg, "Bearerck_alice"));
    assert_null(auth_client(cfg, NULL));
    assert_null(auth_client(cfg, ""));
    /* the configured hash itself is not a key */
    char h[65];
    util_sha256_hex("ck_alice", 8, h);
    char hdr[80];
    snprintf(hdr, sizeof hdr, "Bearer %s", h);
    assert_null(auth_client(cfg, hdr));
}

static void test_key_memo(void **state)
{
    struct auth_memo m;
    memset(&m, 0, sizeof m);
    assert_string_equal(auth_client_memo(cfg, "Bearer ck_alice", &m)->name, "alice");
    assert_int_equal(m.len, 8);
    assert_memory_equal(m.key, "ck_alice", 8);
    /* a hit, and the same answers as auth_client for everything else */
    assert_string_equal(auth_client_memo(cfg, "Bearer  ck_alice ", &m)->name, "alice");
    assert_null(auth_client_memo(cfg, "Bearer ck_alicE", &m));
    assert_null(auth_client_memo(cfg, "Bearer ck_alic", &m));
    assert_null(auth_client_memo(cfg, "Bearer ck_alice2", &m));
    assert_null(auth_client_memo(cfg, "Basic ck_alice", &m));
    assert_null(auth_client_memo(cfg, NULL, &m));
    assert_string_equal(m.client->name, "alice"); /* failures keep the memo */
    assert_string_equal(auth_client_memo(cfg, "Bearer ck_bob", &m)->name, "bob");
    assert_int_equal(m.len, 6);
    assert_string_equal(auth_client_memo(cfg, "Bearer ck_alice", &m)->name, "alice");
    auth_memo_wipe(&m);
    assert_null(m.client);
    assert_int_equal(m.len, 0);
    for (size_t i = 0; i < sizeof m.key; i++)
        assert_int_equal(m.key[i], 0);
}

/* A memo is tied to its config snapshot's generation: after a reload that removed the key
 * (a new snapshot, even at the same address) the key is looked up again, not trusted. */
static void test_key_memo_generation(void **state)
{
    struct auth_memo m;
    memset(&m, 0, sizeof m);
    struct hg_config *c = (struct hg_config *)cfg;
    uint64_t gen = c->generation;
    assert_string_equal(auth_client_memo(cfg, "Bearer ck_alice", &m)->name, "alice");
    struct hg_client *alice = NULL;
    for (size_t i = 0; i < c->n_clients; i++)
        if (strcmp(c->clients[i].name, "alice") == 0)
            alice = &c->clients[i];
    assert_non_null(alice);
    alice->key_sha256[0] ^= 1; /* "the reload removed alice's key" */
    assert_string_equal(auth_client_memo(cfg, "Bearer ck_alice", &m)->name, "alice"); /* same gen */
    c->generation = gen + 1;
    assert_null(auth_client_memo(cfg, "Bearer ck_alice", &m));
    alice->key_sha256[0] ^= 1;
    assert_string_equal(auth_client_memo(cfg, "Bearer ck_alice", &m)->name, "alice");
    c->generation = gen;
    auth_memo_wipe(&m);
}

static void test_workspaces(void **state)
{
    const struct hg_client *alice = auth_client(cfg, "Bearer ck_alice");
    const struct hg_client *bob = auth_client(cfg, "Bearer ck_bob");
    const struct hg_client *carol = auth_client(cfg, "Bearer ck_carol");
    const char *eff, *why;
    assert_int_equal(auth_workspace(alice, "/v1/connections", "ws_b", &eff, &why), 0);
    assert_string_equal(eff, "ws_b");
    assert_int_equal(auth_workspace(alice, "/v1/connections", "ws_c", &eff, &why), -1);
    assert_non_null(why);
    /* default injected */
    assert_int_equal(auth_workspace(alice, "/v1/connections", NULL, &eff, &why), 0);
    assert_string_equal(eff, "ws_a");
    /* ... but not for /v1/workspaces */
    assert_int_equal(auth_workspace(alice, "/v1/workspaces", NULL, &eff, &why), 0);
    assert_null(eff);
    /* a listed workspace on /v1/workspaces still checked */
    assert_int_equal(auth_workspace(bob, "/v1/workspaces", "ws_b", &eff, &why), -1);
    /* restricted without default must name one */
    assert_int_equal(auth_workspace(bob, "/v1/connections", NULL, &eff, &why), -1);
    assert_int_equal(auth_workspace(bob, "/v1/connections", "ws_a", &eff, &why), 0);
    /* "*" */
    assert_int_equal(auth_workspace(carol, "/v1/connections", "anything", &eff, &why), 0);
    assert_string_equal(eff, "anything");
    assert_int_equal(auth_workspace(carol, "/v1/connections", NULL, &eff, &why), 0);
    assert_null(eff);
}

/* The mode check over the routing table's row of method + path. */
static int mode_allows(enum hg_mode mode, const char *method, const char *path)
{
    struct route_policy p;
    route_match(method, path, NULL, &p);
    return auth_mode_allows(mode, &p);
}

static void test_modes(void **state)
{
    assert_true(mode_allows(HG_MODE_READ_ONLY, "GET", "/v1/connections"));
    assert_true(mode_allows(HG_MODE_READ_ONLY, "HEAD", "/v1/results/r1"));
    assert_true(mode_allows(HG_MODE_READ_ONLY, "POST", "/v1/query"));
    assert_true(mode_allows(HG_MODE_READ_ONLY, "POST", "/v1/queries/sq_1/execute"));
    assert_false(mode_allows(HG_MODE_READ_ONLY, "POST", "/v1/queries/sq_1/x/execute"));
    assert_false(mode_allows(HG_MODE_READ_ONLY, "POST", "/v1/queries//execute"));
    assert_false(mode_allows(HG_MODE_READ_ONLY, "POST", "/v1/queries"));
    assert_false(mode_allows(HG_MODE_READ_ONLY, "POST", "/v1/query/x"));
    assert_false(mode_allows(HG_MODE_READ_ONLY, "POST", "/v1/connections"));
    assert_false(mode_allows(HG_MODE_READ_ONLY, "PUT", "/v1/secrets/x"));
    assert_false(mode_allows(HG_MODE_READ_ONLY, "DELETE", "/v1/connections/c1"));
    assert_false(mode_allows(HG_MODE_READ_ONLY, "PATCH", "/v1/datasets/d"));
    assert_false(mode_allows(HG_MODE_READ_ONLY, "POST", "/v1/files"));
    assert_true(mode_allows(HG_MODE_FULL, "DELETE", "/v1/connections/c1"));
    assert_true(mode_allows(HG_MODE_FULL, "POST", "/v1/files"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_lookup),
        cmocka_unit_test(test_key_memo),
        cmocka_unit_test(test_key_memo_generation),
        cmocka_unit_test(test_workspaces),
        cmocka_unit_test(test_modes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
