/*
 * sim_control (sim/control.c): the control plane under /_sim/ (stats, reset, faults).
 *
 * Rules: loop thread only; the caller (sim/server.c) has checked that the peer is loopback.
 */
#ifndef SIM_CONTROL_H
#define SIM_CONTROL_H

#include "sim_types.h"

void sim_control_handle(struct sim_ctx *ctx, struct evhttp_request *ev, const char *path);

#endif
