/*
 * sim: the framework of hotdata-sim, the local stand-in for the Hotdata /v1 API.
 *
 * Job: the one include of an API area file (sim/connections.c, sim/datasets.c, ...): the
 * handler framework it needs to serve its routes like the live service, gathered from the
 * modules that own it: the types (sim_types.h: config, workspace, request), the router
 * (sim_router.h: method + path pattern with {param} segments), the request's parameters and
 * body (sim_req.h: auth done, workspace resolved, JSON body parsed), replies (sim_reply.h:
 * JSON, 204, API-shaped errors, raw bytes), ids and timestamps (sim_util.h), timers
 * (sim_loop.h), and per-workspace SQLite with a prepared-statement cache and the registry
 * of SQL-queryable tables (sim_store.h). What an area takes from another area (jobs,
 * databases, queries, uploads, ...) it includes from that area's sim_<file>.h.
 *
 * Include rule (scripts/check-sim-includes.sh): no module whose header is listed below
 * includes sim.h, so sim.h never closes an include cycle. The modules behind it include
 * exactly the headers they use.
 *
 * Threading: one thread, one libevent loop. Every function here must be called on the
 * loop thread; handlers must not block for long (no sleeps: use sim_timer_after).
 *
 * Storage: --data-dir DIR holds
 *     DIR/sim.db              global: runtime-created workspaces (POST /v1/workspaces)
 *     DIR/ws/<ws_id>.db       one SQLite file per workspace: seeded demo tables, the core
 *                             catalog (connections, sim_tables), query_runs, results,
 *                             sim_jobs, plus whatever schema areas add (sim_router_add_schema)
 *     DIR/uploads/            raw upload bodies streamed to disk (sim/stream.c)
 * Workspace data separation is by file: a handler only ever sees req->ws->db.
 * Keep no per-workspace state outside SQLite (POST /_sim/reset?data=1 recreates the files;
 * areas with in-memory caches register a hook with sim_router_on_reset).
 *
 * Ownership: the framework owns struct sim_req and frees it after the reply is sent (or
 * when the client goes away). A handler must eventually call exactly one sim_reply_*
 * function for its request, either before returning or later from a timer; the request and
 * every string in it are gone after that call, so format messages from params before or
 * in the reply call and touch nothing afterwards. A request kept for a later reply whose
 * client disconnected gets req->ev == NULL; the reply then only frees it. Strings in
 * sim_req (params, query values, token, ids) are owned by the request. json_t bodies handed
 * to sim_reply_json are stolen (decref'd by the framework).
 *
 * Core per-workspace schema (created by the framework, shared by areas; add columns only
 * via a small edit here + sim/store.c, owner: sim core):
 *   connections(id TEXT PK, name TEXT UNIQUE NOT NULL, source_type TEXT NOT NULL,
 *               config TEXT NOT NULL DEFAULT '{}' -- JSON, secret_id TEXT,
 *               created_at TEXT NOT NULL, discovered_at TEXT)
 *   sim_tables(catalog TEXT, schema_name TEXT, table_name TEXT -- PK (catalog,schema,table)
 *              NOCASE; kind TEXT 'connection'|'dataset'; owner_id TEXT (connection id or
 *              dataset id); sqlite_table TEXT (real SQLite table name); synced INTEGER 0/1;
 *              last_sync TEXT NULL; discovered_at TEXT)
 *   query_runs, results, sim_jobs: owned by sim/query.c and sim/jobs.c (sim_query.h,
 *   sim_jobs.h).
 * The seeded connection "demo" (id conn_demo, source_type postgres) and its tables
 * demo.public.customers / orders / products exist in every workspace.
 */
#ifndef SIM_H
#define SIM_H

#include "sim_loop.h"
#include "sim_reply.h"
#include "sim_req.h"
#include "sim_router.h"
#include "sim_store.h"
#include "sim_types.h"
#include "sim_util.h"

#endif
