/*
 * fuzz_config: libFuzzer target for src/config.c: config_load() on arbitrary INI text
 * (load_secrets = 0: no token files are read) and the value parsers.
 *
 * Input: byte 0 picks the mode.
 *   even  the rest is a config file (written to a memfd and loaded through its
 *         /proc/self/fd path). Checks: no crash, no leak (config_free frees everything),
 *         NULL exactly when errors were written, a loaded config passes its own invariants
 *         (resolved credentials and classes, sane limits).
 *   odd   the rest is a value for config_parse_duration_ms / _size / _bool. Checks: an
 *         accepted size or duration is the number the text says (within rounding).
 * Build: CC=clang BUILD_DIR=build-fuzz ./scripts/build.sh -DHG_FUZZ=ON (scripts/fuzz.sh).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

static void check_loaded(const struct hg_config *c)
{
    if (!c->upstream.url || c->server.max_header_size == 0)
        abort();
    for (size_t i = 0; i < c->n_clients; i++) {
        const struct hg_client *cl = &c->clients[i];
        if (!cl->name || !cl->credential || !cl->cls || cl->cls->weight < 1)
            abort();
        if (config_credential(c, cl->credential_name) != cl->credential)
            abort();
    }
    for (size_t i = 0; i < c->n_classes; i++)
        if (config_class(c, c->classes[i].name) != &c->classes[i])
            abort();
    if (c->cache.high_water <= 0 || c->cache.high_water > 1)
        abort();
}

static void value_mode(const char *s)
{
    uint64_t v = 0;
    int b;
    config_parse_bool(s, &b);
    char *end;
    double num = strtod(s, &end);
    if (config_parse_size(s, &v) == 0) {
        /* the multiplier from the suffix */
        double mult = 1;
        switch (*end) {
        case 'k':
        case 'K':
            mult = 1024.0;
            break;
        case 'm':
        case 'M':
            mult = 1024.0 * 1024;
            break;
        case 'g':
        case 'G':
            mult = 1024.0 * 1024 * 1024;
            break;
        case 't':
        case 'T':
            mult = 1024.0 * 1024 * 1024 * 1024;
            break;
        }
        double want = num * mult;
        if (fabs((double)v - want) > 1.0 + want * 1e-12)
            abort(); /* accepted, but not the number written */
    }
    for (int bare_ms = 0; bare_ms <= 1; bare_ms++)
        if (config_parse_duration_ms(s, bare_ms, &v) == 0) {
            double mult = 1;
            if (*end == '\0')
                mult = bare_ms ? 1 : 1000;
            else if (strcmp(end, "s") == 0)
                mult = 1000;
            else if (strcmp(end, "m") == 0)
                mult = 60000;
            else if (strcmp(end, "h") == 0)
                mult = 3600000;
            double want = num * mult;
            if (fabs((double)v - want) > 1.0 + want * 1e-12)
                abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        log_init(3 /* LOG_ERR */, "off");
        quiet = 1;
    }
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    if (mode & 1) {
        char *s = malloc(size + 1);
        memcpy(s, data, size);
        s[size] = '\0';
        value_mode(s);
        free(s);
        return 0;
    }
    int fd = memfd_create("fuzz_config", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    char err[4096];
    err[0] = '\0';
    struct hg_config *c = config_load(path, 0, err, sizeof err);
    if (c) {
        check_loaded(c);
        config_free(c);
    } else if (!err[0]) {
        abort(); /* refused without a word */
    }
    close(fd);
    return 0;
}
