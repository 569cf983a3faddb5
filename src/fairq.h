/*
 * fairq: the queue of requests waiting for upstream budget, fair across clients and
 * weighted by class.
 *
 * Algorithm: start-time fair queuing (SFQ, Goyal et al. 1996). Each client is a flow with a
 * weight w. An item pushed on flow f gets the virtual start tag S = max(V, F_f) and moves the
 * flow's finish tag to F_f = S + 1/w; fairq_pop serves the head with the smallest start tag
 * (ties: earliest arrival) and advances the virtual time V to that tag. With both flows
 * backlogged, weight 4 against weight 1 is served 4:1; a client that was idle starts at V,
 * so a flood from a batch client that queued earlier cannot push a newcomer behind its
 * backlog: it waits at most for the items already tagged <= V (one per other flow) plus
 * its own earlier items. A retried item goes back at the front (fairq_push_front) keeping
 * its original tag and deadline, so it is the next one served.
 *
 * Bounds: per flow (max_queued) and in total (max_total); 0 means unbounded. Deadlines: every
 * item carries one; a binary min-heap over all items gives the next deadline in O(1) and
 * expires in O(log n), so one timer can drive both pacing and expiry.
 *
 * Rules: items are intrusive and owned by the caller (fairq never allocates or frees
 * them); flows are owned by the queue. No locking: the caller serialises access (budget.c
 * holds its per-credential mutex). Time is whatever monotonic unit the caller uses.
 */
#ifndef HG_FAIRQ_H
#define HG_FAIRQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct fairq_flow fairq_flow;

typedef struct fairq_item {
    struct fairq_item *next, *prev; /* in the flow's FIFO */
    fairq_flow *flow;               /* set while queued, NULL otherwise */
    double vstart;                  /* SFQ start tag, kept across fairq_push_front */
    uint64_t deadline;
    uint64_t seq; /* arrival order, for ties */
    size_t heap_idx;
} fairq_item;

struct fairq_flow {
    char *name;
    double weight;       /* > 0 */
    unsigned max_queued; /* 0: only the total bound applies */
    fairq_item *head, *tail;
    unsigned count;
    double vfinish;
    void *user; /* the owner's per-flow state (budget.c: counters, client bucket) */
};

typedef struct fairq {
    fairq_flow **flows;
    size_t nflows, capflows;
    fairq_item **heap; /* by deadline */
    size_t nheap, capheap;
    unsigned count, max_total;
    double vtime;
    uint64_t seq;
} fairq;

typedef enum {
    FAIRQ_OK = 0,
    FAIRQ_FULL_FLOW,  /* the client's own bound */
    FAIRQ_FULL_TOTAL, /* the queue's bound */
} fairq_status;

void fairq_init(fairq *q, unsigned max_total);
/* Frees the flows; the queue must be empty (items belong to the caller). */
void fairq_destroy(fairq *q);

/* The flow called name, created with weight and max_queued when absent. */
fairq_flow *fairq_flow_get(fairq *q, const char *name, double weight, unsigned max_queued);
fairq_flow *fairq_flow_find(const fairq *q, const char *name);

/* Queue it at the back of flow f, bounded; the item must not be queued. */
fairq_status fairq_push(fairq *q, fairq_flow *f, fairq_item *it, uint64_t deadline);
/* Put back an item that fairq_pop returned, at the front of its flow, with its original tag
 * and deadline; bounds are not checked (it was admitted before). */
void fairq_push_front(fairq *q, fairq_flow *f, fairq_item *it);
/* The next item to serve (removed), or NULL when empty. */
fairq_item *fairq_pop(fairq *q);
/* Take a queued item out (client gone, deadline passed). */
void fairq_remove(fairq *q, fairq_item *it);
/* The earliest deadline, UINT64_MAX when empty. */
uint64_t fairq_next_deadline(const fairq *q);
/* An item whose deadline is <= now (removed), or NULL. */
fairq_item *fairq_pop_expired(fairq *q, uint64_t now);
/* How many queued items would be served before one tagged vstart: an estimate of a queue
 * position. For a new item on flow f use fairq_position_new. O(n). */
unsigned fairq_position(const fairq *q, const fairq_item *it);
unsigned fairq_position_new(const fairq *q, const fairq_flow *f);

static inline int fairq_queued(const fairq_item *it)
{
    return it->flow != NULL;
}

#endif
