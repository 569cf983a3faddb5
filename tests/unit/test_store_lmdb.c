/*
 * test_store_lmdb: the LMDB cache backend (src/store_lmdb.c) on real LMDB files in a
 * temporary directory: put/get/del, restart keeps entries, the tag index, expiry and LRU
 * eviction under a tiny map (usage stays under the high-water mark, puts never fail with
 * MAP_FULL), generations persisted, a byte flipped in the data file is detected by the
 * entry checksum (a miss, never served), and readers on several threads during writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "entry.h"
#include "store.h"
#include "store_lmdb.h"
#include "util.h"

static int rm_cb(const char *p, const struct stat *sb, int f, struct FTW *ftw)
{
    (void)sb;
    (void)f;
    (void)ftw;
    return remove(p);
}

static char *tmpdir(void)
{
    char *d = strdup("/tmp/hg-store-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rmdir_r(char *d)
{
    nftw(d, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    free(d);
}

static store *open_store(const char *dir, uint64_t size)
{
    store_opts o;
    memset(&o, 0, sizeof o);
    o.dir = dir;
    o.map_size = size;
    o.high_water = 0.9;
    o.sync_mode = STORE_SYNC_NONE;
    store *s = NULL;
    char err[256];
    int rc = store_lmdb_api.open(&s, &o, err, sizeof err);
    if (rc)
        fprintf(stderr, "open: %s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static void mkkey(uint8_t k[32], unsigned i)
{
    char buf[32];
    snprintf(buf, sizeof buf, "key-%u", i);
    util_sha256(buf, strlen(buf), k);
}

/* an encoded entry whose body is body_len bytes of a marker pattern */
static unsigned char *mkentry(const char *marker, size_t body_len, size_t *len, uint32_t fresh_s)
{
    char *body = malloc(body_len + 1);
    size_t ml = strlen(marker);
    for (size_t i = 0; i < body_len; i++)
        body[i] = marker[i % ml];
    entry_in in;
    memset(&in, 0, sizeof in);
    in.status = 200;
    in.stored_ms = util_wall_ms();
    in.fresh_ms = fresh_s ? (uint64_t)fresh_s * 1000 : ENTRY_FRESH_FOREVER;
    in.body = body;
    in.body_len = body_len;
    unsigned char *b;
    assert_int_equal(entry_encode(&in, &b, len), ENTRY_OK);
    free(body);
    return b;
}

static int get_body(store *s, const uint8_t *k, char *out, size_t cap)
{
    store_val v;
    int rc = store_get(s, k, &v);
    if (rc != 0) {
        store_release(s);
        return rc;
    }
    entry_view ev;
    rc = entry_decode(v.data, v.len, &ev);
    if (rc != ENTRY_OK) {
        store_release(s);
        return 2;
    }
    size_t n = ev.body_len < cap - 1 ? ev.body_len : cap - 1;
    memcpy(out, ev.body, n);
    out[n] = '\0';
    store_release(s);
    return 0;
}

static void test_put_get_del(void **state)
{
    (void)state;
    char *d = tmpdir();
    store *s = open_store(d, 16 << 20);
    uint8_t k[32];
    mkkey(k, 1);
    char body[64];
    assert_int_equal(get_body(s, k, body, sizeof body), 1);
    size_t len;
    unsigned char *e = mkentry("hello", 5, &len, 60);
    const char *tags[] = {"ws:a"};
    assert_int_equal(store_put(s, k, e, len, 0, tags, 1), 0);
    free(e);
    assert_int_equal(store_flush(s), 0);
    assert_int_equal(get_body(s, k, body, sizeof body), 0);
    assert_string_equal(body, "hello");
    /* overwrite */
    e = mkentry("world", 5, &len, 60);
    assert_int_equal(store_put(s, k, e, len, 0, tags, 1), 0);
    free(e);
    store_flush(s);
    assert_int_equal(get_body(s, k, body, sizeof body), 0);
    assert_string_equal(body, "world");
    store_stats st;
    s->api->stats(s, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.puts, 2);
    assert_int_equal(store_del(s, k), 0);
    store_flush(s);
    assert_int_equal(get_body(s, k, body, sizeof body), 1);
    s->api->stats(s, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.dels, 1);
    store_close(s);
    rmdir_r(d);
}

static void test_restart_keeps_entries(void **state)
{
    (void)state;
    char *d = tmpdir();
    store *s = open_store(d, 16 << 20);
    size_t len;
    unsigned char *e = mkentry("persist", 7, &len, 0);
    for (unsigned i = 0; i < 50; i++) {
        uint8_t k[32];
        mkkey(k, i);
        assert_int_equal(store_put(s, k, e, len, 0, NULL, 0), 0);
    }
    free(e);
    uint32_t slots[] = {3, 4000};
    uint64_t gens[] = {17, 99};
    assert_int_equal(s->api->gens_save(s, slots, gens, 2), 0);
    store_close(s); /* close drains the queue */
    s = open_store(d, 16 << 20);
    char body[64];
    for (unsigned i = 0; i < 50; i++) {
        uint8_t k[32];
        mkkey(k, i);
        assert_int_equal(get_body(s, k, body, sizeof body), 0);
        assert_string_equal(body, "persist");
    }
    uint64_t table[5000] = {0};
    assert_int_equal(s->api->gens_load(s, table, 5000), 0);
    assert_true(table[3] == 17);
    assert_true(table[4000] == 99);
    assert_true(table[5] == 0);
    store_close(s);
    rmdir_r(d);
}

static void test_tags(void **state)
{
    (void)state;
    char *d = tmpdir();
    store *s = open_store(d, 16 << 20);
    size_t len;
    unsigned char *e = mkentry("t", 10, &len, 60);
    char longtag[600];
    memset(longtag, 'z', sizeof longtag - 1);
    longtag[sizeof longtag - 1] = '\0';
    for (unsigned i = 0; i < 30; i++) {
        uint8_t k[32];
        mkkey(k, i);
        const char *tags[3] = {"ws:a", i % 3 == 0 ? "conn:x" : "conn:y", longtag};
        assert_int_equal(store_put(s, k, e, len, 0, tags, i % 5 == 0 ? 3 : 2), 0);
    }
    free(e);
    store_flush(s);
    assert_int_equal(store_del_tag(s, "conn:x"), 0);
    store_flush(s);
    char body[64];
    for (unsigned i = 0; i < 30; i++) {
        uint8_t k[32];
        mkkey(k, i);
        assert_int_equal(get_body(s, k, body, sizeof body), i % 3 == 0 ? 1 : 0);
    }
    store_del_tag(s, longtag); /* long tags are hashed in the index */
    store_flush(s);
    for (unsigned i = 0; i < 30; i++) {
        uint8_t k[32];
        mkkey(k, i);
        assert_int_equal(get_body(s, k, body, sizeof body), (i % 3 == 0 || i % 5 == 0) ? 1 : 0);
    }
    store_del_tag(s, "ws:a");
    store_del_tag(s, "no-such-tag");
    store_flush(s);
    store_stats st;
    s->api->stats(s, &st);
    assert_int_equal(st.entries, 0);
    /* purge everything */
    e = mkentry("p", 10, &len, 60);
    for (unsigned i = 0; i < 10; i++) {
        uint8_t k[32];
        mkkey(k, i);
        store_put(s, k, e, len, 0, NULL, 0);
    }
    free(e);
    s->api->purge_all(s);
    store_flush(s);
    s->api->stats(s, &st);
    assert_int_equal(st.entries, 0);
    store_close(s);
    rmdir_r(d);
}

static void test_eviction_tiny_map(void **state)
{
    (void)state;
    char *d = tmpdir();
    uint64_t map = 2 << 20; /* 2 MiB */
    store *s = open_store(d, map);
    size_t len;
    unsigned char *e = mkentry("evict-me", 3000, &len, 600);
    uint8_t hot[32];
    mkkey(hot, 999999);
    assert_int_equal(store_put(s, hot, e, len, 0, NULL, 0), 0);
    store_flush(s);
    for (unsigned i = 0; i < 3000; i++) {
        uint8_t k[32];
        mkkey(k, i);
        const char *tags[] = {"ws:evict", i % 2 ? "odd" : "even"};
        /* every put is accepted: MAP_FULL is handled inside the store */
        assert_int_equal(store_put(s, k, e, len, util_wall_ms() / 1000 + 600, tags, 2), 0);
        if (i % 100 == 0) {
            store_flush(s);
            store_stats st;
            s->api->stats(s, &st);
            assert_true(st.bytes_used <= (uint64_t)(0.9 * (double)map) + 8 * 4096);
        }
    }
    free(e);
    store_flush(s);
    store_stats st;
    s->api->stats(s, &st);
    fprintf(stderr,
            "  tiny map: entries=%llu used=%llu/%llu evictions=%llu map_full=%llu "
            "skipped=%llu\n",
            (unsigned long long)st.entries, (unsigned long long)st.bytes_used,
            (unsigned long long)st.map_size, (unsigned long long)st.evictions,
            (unsigned long long)st.map_full, (unsigned long long)st.put_skipped);
    assert_true(st.evictions > 0);
    assert_true(st.bytes_used <= (uint64_t)(0.9 * (double)map) + 8 * 4096);
    assert_true(st.entries > 100);
    /* the latest entry is there, the oldest ones went first */
    char body[16];
    uint8_t k[32];
    mkkey(k, 2999);
    assert_int_equal(get_body(s, k, body, sizeof body), 0);
    mkkey(k, 0);
    assert_int_equal(get_body(s, k, body, sizeof body), 1);
    store_close(s);
    rmdir_r(d);
}

static void test_expired_first_and_lru(void **state)
{
    (void)state;
    char *d = tmpdir();
    store *s = open_store(d, 16 << 20);
    size_t len;
    unsigned char *e = mkentry("x", 100, &len, 60);
    uint32_t now = (uint32_t)(util_wall_ms() / 1000);
    uint8_t k[32];
    for (unsigned i = 0; i < 10; i++) {
        mkkey(k, i);
        /* half already expired */
        store_put(s, k, e, len, i % 2 ? now - 5 : now + 600, NULL, 0);
    }
    free(e);
    store_flush(s);
    assert_int_equal(s->api->evict(s), 0);
    char body[128];
    for (unsigned i = 0; i < 10; i++) {
        mkkey(k, i);
        assert_int_equal(get_body(s, k, body, sizeof body), i % 2 ? 1 : 0);
    }
    store_stats st;
    s->api->stats(s, &st);
    assert_true(st.expired >= 5);
    store_close(s);
    rmdir_r(d);
}

/* flip one byte of the body inside the LMDB data file: the checksum must catch it */
static void test_corrupt_entry_is_miss(void **state)
{
    (void)state;
    char *d = tmpdir();
    store *s = open_store(d, 16 << 20);
    uint8_t k[32];
    mkkey(k, 7);
    size_t len;
    unsigned char *e = mkentry("CORRUPTME-", 200, &len, 60);
    store_put(s, k, e, len, 0, NULL, 0);
    free(e);
    store_close(s);
    char path[512];
    snprintf(path, sizeof path, "%s/data.mdb", d);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat sb;
    fstat(fd, &sb);
    char *buf = malloc((size_t)sb.st_size);
    assert_int_equal(pread(fd, buf, (size_t)sb.st_size, 0), sb.st_size);
    char *hit = memmem(buf, (size_t)sb.st_size, "CORRUPTME-CORRUPTME-", 20);
    assert_non_null(hit);
    char c = (char)(hit[3] ^ 0x20);
    assert_int_equal(pwrite(fd, &c, 1, hit - buf + 3), 1);
    close(fd);
    free(buf);
    s = open_store(d, 16 << 20);
    char body[256];
    assert_int_equal(get_body(s, k, body, sizeof body), 2); /* found, but corrupt */
    store_close(s);
    rmdir_r(d);
}

/* a pinned read view keeps its bytes valid past release(), across later writes */
static void test_pin_zero_copy(void **state)
{
    (void)state;
    char *d = tmpdir();
    store *s = open_store(d, 16 << 20);
    uint8_t k[32];
    mkkey(k, 42);
    size_t len;
    unsigned char *e = mkentry("PINNED-", 64 * 1024, &len, 60);
    store_put(s, k, e, len, 0, NULL, 0);
    store_flush(s);
    store_val v;
    assert_int_equal(store_get(s, k, &v), 0);
    assert_int_equal(v.len, len);
    void *pin = s->api->pin(s);
    assert_non_null(pin);
    store_release(s);
    /* overwrite and delete while pinned */
    unsigned char *e2 = mkentry("OTHER-", 64 * 1024, &len, 60);
    store_put(s, k, e2, len, 0, NULL, 0);
    store_flush(s);
    char body[16];
    assert_int_equal(get_body(s, k, body, sizeof body), 0);
    assert_memory_equal(body, "OTHER-", 6);
    store_del(s, k);
    store_flush(s);
    assert_memory_equal(v.data, e, v.len); /* the pinned view is untouched */
    s->api->unpin(s, pin);
    assert_int_equal(get_body(s, k, body, sizeof body), 1);
    /* many pins: beyond the per-thread limit pin() says no, and all unpin cleanly */
    store_put(s, k, e, len, 0, NULL, 0);
    store_flush(s);
    void *pins[40];
    int n = 0;
    for (int i = 0; i < 40; i++) {
        assert_int_equal(store_get(s, k, &v), 0);
        pins[i] = s->api->pin(s);
        if (pins[i])
            n++;
        store_release(s);
    }
    assert_true(n >= 1 && n < 40);
    for (int i = 0; i < 40; i++)
        if (pins[i])
            s->api->unpin(s, pins[i]);
    assert_int_equal(get_body(s, k, body, sizeof body), 0);
    free(e);
    free(e2);
    store_close(s);
    rmdir_r(d);
}

struct rd_arg {
    store *s;
    int stop;
    unsigned reads;
};

static void *reader(void *p)
{
    struct rd_arg *a = p;
    char body[64];
    /* at least one pass whatever the scheduler does (a loaded box may not run us before
     * the writer is done) */
    do {
        for (unsigned i = 0; i < 100; i++) {
            uint8_t k[32];
            mkkey(k, i);
            int rc = get_body(a->s, k, body, sizeof body);
            if (rc == 0 && strncmp(body, "rw", 2) != 0)
                abort();
            if (rc == 2)
                abort();
            a->s->api->touch(a->s, k);
            a->reads++;
        }
    } while (!__atomic_load_n(&a->stop, __ATOMIC_RELAXED));
    return NULL;
}

static void test_concurrent_readers(void **state)
{
    (void)state;
    char *d = tmpdir();
    store *s = open_store(d, 32 << 20);
    struct rd_arg a[2] = {{s, 0, 0}, {s, 0, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, reader, &a[i]);
    size_t len;
    unsigned char *e = mkentry("rw", 40, &len, 60);
    for (unsigned round = 0; round < 20; round++) {
        for (unsigned i = 0; i < 100; i++) {
            uint8_t k[32];
            mkkey(k, i);
            store_put(s, k, e, len, 0, NULL, 0);
        }
        store_flush(s);
    }
    free(e);
    for (int i = 0; i < 2; i++) {
        __atomic_store_n(&a[i].stop, 1, __ATOMIC_RELAXED);
        pthread_join(t[i], NULL);
    }
    assert_true(a[0].reads > 0 && a[1].reads > 0);
    store_close(s);
    rmdir_r(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_del),
        cmocka_unit_test(test_restart_keeps_entries),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_eviction_tiny_map),
        cmocka_unit_test(test_expired_first_and_lru),
        cmocka_unit_test(test_corrupt_entry_is_miss),
        cmocka_unit_test(test_pin_zero_copy),
        cmocka_unit_test(test_concurrent_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
