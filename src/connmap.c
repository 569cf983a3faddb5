/*
 * connmap: see connmap.h. An open-addressing table of CONNMAP_CAPACITY*2 slots, keyed by
 * workspace + id (FNV-1a), linear probing, no deletions (emptied whole when full).
 */
#include "connmap.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SLOTS (CONNMAP_CAPACITY * 2)
#define FIELD 128 /* workspace, id and name: longer ones are not kept */

struct slot {
    char ws[FIELD], id[FIELD], name[FIELD];
    int used;
};

static struct slot g_slots[SLOTS];
static size_t g_n;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t hash(const char *ws, const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = ws; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull; /* separator: ("ab","c") != ("a","bc") */
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static int fits(const char *s)
{
    return s && *s && strlen(s) < FIELD;
}

/* The slot of ws+id, or the free slot where it would go. g_mu held. */
static struct slot *find(const char *ws, const char *id)
{
    size_t i = (size_t)(hash(ws, id) % SLOTS);
    for (;;) {
        struct slot *s = &g_slots[i];
        if (!s->used || (strcmp(s->ws, ws) == 0 && strcmp(s->id, id) == 0))
            return s;
        i = (i + 1) % SLOTS;
    }
}

void connmap_learn(const char *workspace, const char *id, const char *name)
{
    const char *ws = workspace ? workspace : "";
    if (strlen(ws) >= FIELD || !fits(id) || !fits(name))
        return;
    pthread_mutex_lock(&g_mu);
    struct slot *s = find(ws, id);
    if (!s->used) {
        if (g_n >= CONNMAP_CAPACITY) {
            /* full: start again (unknown ids only widen invalidation) */
            memset(g_slots, 0, sizeof g_slots);
            g_n = 0;
            s = find(ws, id);
        }
        s->used = 1;
        g_n++;
        snprintf(s->ws, sizeof s->ws, "%s", ws);
        snprintf(s->id, sizeof s->id, "%s", id);
    }
    snprintf(s->name, sizeof s->name, "%s", name);
    pthread_mutex_unlock(&g_mu);
}

static void learn_obj(const char *ws, json_t *o)
{
    connmap_learn(ws, json_string_value(json_object_get(o, "id")),
                  json_string_value(json_object_get(o, "name")));
}

void connmap_learn_json(const char *workspace, const char *body, size_t len)
{
    if (!body || !len)
        return;
    json_t *j = json_loadb(body, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    json_t *list = json_object_get(j, "connections");
    if (json_is_array(list)) {
        size_t i;
        json_t *o;
        json_array_foreach(list, i, o) learn_obj(workspace, o);
    } else {
        learn_obj(workspace, j);
    }
    json_decref(j);
}

bool connmap_resolve(void *ctx, const char *id, char *name, size_t cap)
{
    const char *ws = ctx ? ctx : "";
    if (!fits(id) || strlen(ws) >= FIELD || cap == 0)
        return false;
    bool ok = false;
    pthread_mutex_lock(&g_mu);
    struct slot *s = find(ws, id);
    if (s->used && strlen(s->name) < cap) {
        memcpy(name, s->name, strlen(s->name) + 1);
        ok = true;
    }
    pthread_mutex_unlock(&g_mu);
    return ok;
}

size_t connmap_size(void)
{
    pthread_mutex_lock(&g_mu);
    size_t n = g_n;
    pthread_mutex_unlock(&g_mu);
    return n;
}

void connmap_reset(void)
{
    pthread_mutex_lock(&g_mu);
    memset(g_slots, 0, sizeof g_slots);
    g_n = 0;
    pthread_mutex_unlock(&g_mu);
}
