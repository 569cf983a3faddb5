/*
 * cfgsnap: configuration snapshots for live reload (see cfgsnap.h).
 *
 * The current pointer is guarded by a mutex: cfgsnap_acquire() takes it briefly; the hot
 * path (server.c) keeps one reference per worker and only comes here when the generation
 * changed, so a request costs an atomic increment and decrement on its snapshot.
 */
#include "cfgsnap.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "config.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct hg_config *current;
static struct hg_config *boot;
static _Atomic uint64_t generation;
static atomic_uint alive;

void cfgsnap_init(struct hg_config *b)
{
    pthread_mutex_lock(&mu);
    boot = b;
    current = b;
    b->generation = 1;
    __atomic_store_n(&b->refs, 1, __ATOMIC_RELAXED); /* the "current" reference */
    atomic_store(&generation, 1);
    atomic_store(&alive, 1);
    pthread_mutex_unlock(&mu);
}

const struct hg_config *cfgsnap_boot(void)
{
    return boot;
}

uint64_t cfgsnap_generation(void)
{
    return atomic_load_explicit(&generation, memory_order_acquire);
}

void cfgsnap_hold(const struct hg_config *cfg)
{
    if (!cfg || cfg->generation == 0) /* not a snapshot (tests drive the server without) */
        return;
    __atomic_add_fetch(&((struct hg_config *)cfg)->refs, 1, __ATOMIC_RELAXED);
}

const struct hg_config *cfgsnap_acquire(void)
{
    pthread_mutex_lock(&mu);
    struct hg_config *c = current;
    if (c)
        cfgsnap_hold(c);
    pthread_mutex_unlock(&mu);
    return c;
}

void cfgsnap_release(const struct hg_config *cfg)
{
    if (!cfg || cfg->generation == 0)
        return;
    struct hg_config *c = (struct hg_config *)cfg;
    if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    /* the last holder: nobody can acquire it any more (it is not current) */
    atomic_fetch_sub(&alive, 1);
    if (c == boot)
        config_wipe_secrets(c);
    else
        config_free(c);
}

void cfgsnap_publish(struct hg_config *next)
{
    pthread_mutex_lock(&mu);
    struct hg_config *old = current;
    next->generation = (old ? old->generation : 0) + 1;
    __atomic_store_n(&next->refs, 1, __ATOMIC_RELAXED);
    current = next;
    atomic_fetch_add(&alive, 1);
    atomic_store_explicit(&generation, next->generation, memory_order_release);
    pthread_mutex_unlock(&mu);
    cfgsnap_release(old);
}

unsigned cfgsnap_alive(void)
{
    return atomic_load(&alive);
}

void cfgsnap_shutdown(void)
{
    pthread_mutex_lock(&mu);
    struct hg_config *c = current;
    current = NULL;
    pthread_mutex_unlock(&mu);
    cfgsnap_release(c);
    config_free(boot);
    boot = NULL;
}
