/*
 * sim_loop (sim/loop.c): the event loop as handlers see it: the event base, the
 * configuration, one-shot timers, and the random dice of the fault injector.
 *
 * Rules: loop thread only. A timer still pending when the simulator stops never runs: its
 * drop function (if any) frees its argument in sim_loop_free_timers.
 */
#ifndef SIM_LOOP_H
#define SIM_LOOP_H

#include "sim_types.h"

/* One-shot timer on the loop: fn(arg) after ms milliseconds. */
void sim_timer_after(struct sim_ctx *ctx, int ms, void (*fn)(void *arg), void *arg);
/* The same; when the simulator stops with the timer still pending, drop(arg) frees arg
 * instead (fn never runs then; nothing may be replied or written to a database). */
void sim_timer_after_drop(struct sim_ctx *ctx, int ms, void (*fn)(void *arg), void *arg,
                          void (*drop)(void *arg));
/* At shutdown, after the event base is freed: drop every timer that never fired. */
void sim_loop_free_timers(struct sim_ctx *ctx);

struct event_base *sim_base(struct sim_ctx *ctx);
const struct sim_config *sim_cfg(struct sim_ctx *ctx);

/* Uniform in [0, 1) from the context's xorshift generator (fault dice and jitter only,
 * never ids). */
double sim_rand01(struct sim_ctx *ctx);

#endif
