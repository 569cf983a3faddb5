/*
 * sim_faults (sim/faults.c): fault injection. The configuration (a global fault set plus
 * per-route overrides, one-shot 429s, the async delay override) in and out of JSON for
 * /_sim/faults, and the fault stage of the request pipeline: one-shot 429, stall, drop
 * before the response, drop mid-response (a flag the reply writer honours), injected
 * errors, latency and jitter.
 *
 * Rules: loop thread only. POST /_sim/faults replaces the whole configuration; an invalid
 * one leaves the old one in place.
 */
#ifndef SIM_FAULTS_H
#define SIM_FAULTS_H

#include "sim_int.h"

/* Everything off (frees per-route overrides). */
void sim_faults_clear(struct sim_faults *f);
/* Replace *f by the configuration j. -1 with err set (f unchanged) when j is invalid. */
int sim_faults_from_json(struct sim_faults *f, json_t *j, char *err, size_t errlen);
json_t *sim_faults_to_json(const struct sim_faults *f);

/*
 * The fault stage for a routed, admitted request. Returns 0 when next(req) should run now;
 * otherwise the stage took the request (answered it, dropped or stalled its connection, or
 * holds it on a latency timer that calls next(req) later) and returns -1.
 */
int sim_faults_apply(struct sim_req *req, void (*next)(struct sim_req *req));

#endif
