/*
 * budget_stage: the budget stage of hotgate's request pipeline (server.h), between the
 * cache stage and the upstream stage; the glue between struct hg_req and budget.h.
 *
 * Job. For a request that really goes upstream: ask the credential's budget (budget_admit)
 * and either go on now, wait in the fair queue (HG_ASYNC; the grant resumes the pipeline
 * on the request's own worker thread), or answer API-shaped 503 QUEUE_FULL/QUEUE_TIMEOUT or
 * 429 OVERLOADED with Retry-After. A response tap watches the upstream's answer: a 429 (or
 * 503 with Retry-After) starts the credential's cooldown and lowers its rate (AIMD); when
 * the request is safe to send again (GET/HEAD, POST /v1/query, POST
 * /v1/queries/{id}/execute, with a replayable body) the shed answer is swallowed and the
 * request goes back to the front of its client's queue with its original deadline; any
 * other request gets the upstream's 429 with its Retry-After. The ticket is given back
 * when the upstream exchange ends (tap on_done) or the request is freed.
 *
 * A client may shorten its queue deadline with X-Hotgate-Queue-Timeout: <seconds>; the
 * header is not forwarded upstream.
 *
 * Threading: budget_stage_init/shutdown on the main thread around server_start/stop;
 * budget_stage_run and the taps on the request's worker thread. The budget itself is
 * shared by all workers (see budget.h).
 */
#ifndef HG_BUDGET_STAGE_H
#define HG_BUDGET_STAGE_H

#include "pipeline.h"

struct hg_config;
struct budget_ticket;

/* Build the budget from cfg's [credential]/[client]/[class]/[queue] sections, start its
 * pacing thread, register GET /admin/budget and the metrics. Before server_start(). 0 or
 * -1 (logged). */
int budget_stage_init(const struct hg_config *cfg);
/* A reload: new rates, caps, classes and queue limits (budget_reconfigure); -1 when it
 * could not be applied (too many credentials added: restart). Main thread. */
int budget_stage_reconfigure(const struct hg_config *cfg);

/* After server_stop(): stop the pacing thread and free the budget. */
void budget_stage_shutdown(void);

/* The stage itself (the pipeline runs it: stages.c). */
enum hg_stage_result budget_stage_run(struct hg_req *req);

/* The client went away while its request waited in the queue: leave the queue now. Safe to
 * call for any request (no-op when it holds no queued ticket). */
void budget_stage_client_gone(struct hg_req *req);

/* The upstream module is sending req again (a GET answered 502/503; upstream.h on_retry):
 * charge it to the credential's budget (budget_charge). */
void budget_stage_charge(struct hg_req *req);

/* Background work for req's credential and client (a stale-while-revalidate refresh): 1 and
 * *t (NULL when nothing is budgeted) when it may go upstream now, 0 when the budget has no
 * room right now (a token, a slot, nobody queued): skip it, foreground requests come first.
 * A ticket goes back through budget_stage_background_done. */
int budget_stage_background(struct hg_req *req, struct budget_ticket **t);

/* The background exchange of t ended: status 0 when nothing came back; retry_after: the
 * answer's Retry-After value (NULL if none), for a shed answer. Frees t (NULL: no-op). */
void budget_stage_background_done(struct budget_ticket *t, int status, const char *retry_after);

/* The process-wide budget (NULL before init), for tests and the admin view. */
struct budget *budget_stage_budget(void);

#endif
