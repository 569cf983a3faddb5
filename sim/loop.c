/*
 * loop: timers on the event loop (tracked so shutdown can free the ones that never fired),
 * the context accessors handlers use, and the xorshift dice of the fault injector.
 *
 * Rules: loop thread only; a timer callback runs at most once, and never after shutdown.
 */
#include "sim_int.h"
#include "sim_loop.h"

#include <stdlib.h>

/* Pending timers are linked in ctx->timers so shutdown can free the ones that never fired. */
struct sim_timer {
    void (*fn)(void *);
    void (*drop)(void *);
    void *arg;
    struct sim_ctx *ctx;
    struct sim_timer *prev, *next;
};

static void sim_timer_unlink(struct sim_timer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        t->ctx->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

static void sim_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sim_timer *t = arg;
    void (*fn)(void *) = t->fn;
    void *a = t->arg;
    sim_timer_unlink(t);
    free(t);
    fn(a);
}

void sim_timer_after(struct sim_ctx *ctx, int ms, void (*fn)(void *arg), void *arg)
{
    sim_timer_after_drop(ctx, ms, fn, arg, NULL);
}

void sim_timer_after_drop(struct sim_ctx *ctx, int ms, void (*fn)(void *arg), void *arg,
                          void (*drop)(void *arg))
{
    struct sim_timer *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    t->fn = fn;
    t->drop = drop;
    t->arg = arg;
    t->ctx = ctx;
    t->next = ctx->timers;
    if (t->next)
        t->next->prev = t;
    ctx->timers = t;
    struct timeval tv = {.tv_sec = ms > 0 ? ms / 1000 : 0,
                         .tv_usec = ms > 0 ? (ms % 1000) * 1000 : 0};
    if (event_base_once(ctx->base, -1, EV_TIMEOUT, sim_timer_cb, t, &tv) != 0) {
        sim_timer_unlink(t);
        free(t);
        fn(arg);
    }
}

void sim_loop_free_timers(struct sim_ctx *ctx)
{
    while (ctx->timers) {
        struct sim_timer *t = ctx->timers;
        ctx->timers = t->next;
        if (t->drop)
            t->drop(t->arg);
        free(t);
    }
}

struct event_base *sim_base(struct sim_ctx *ctx)
{
    return ctx->base;
}

const struct sim_config *sim_cfg(struct sim_ctx *ctx)
{
    return &ctx->cfg;
}

static uint64_t sim_rng_next(struct sim_ctx *ctx)
{
    /* xorshift64*: only for fault dice and jitter, not for ids */
    uint64_t x = ctx->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ctx->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

double sim_rand01(struct sim_ctx *ctx)
{
    return (double)(sim_rng_next(ctx) >> 11) / (double)(1ULL << 53);
}
