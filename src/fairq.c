/*
 * fairq: see fairq.h. Flows are few (one per configured client), so picking the smallest
 * head tag is a linear scan over flows; the deadline heap is the only per-item structure.
 */
#include "fairq.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n)
{
    void *r = realloc(p, n);
    if (!r)
        abort();
    return r;
}

void fairq_init(fairq *q, unsigned max_total)
{
    memset(q, 0, sizeof *q);
    q->max_total = max_total;
}

void fairq_destroy(fairq *q)
{
    assert(q->count == 0 && q->nheap == 0);
    for (size_t i = 0; i < q->nflows; i++) {
        free(q->flows[i]->name);
        free(q->flows[i]);
    }
    free(q->flows);
    free(q->heap);
    memset(q, 0, sizeof *q);
}

fairq_flow *fairq_flow_find(const fairq *q, const char *name)
{
    for (size_t i = 0; i < q->nflows; i++)
        if (strcmp(q->flows[i]->name, name) == 0)
            return q->flows[i];
    return NULL;
}

fairq_flow *fairq_flow_get(fairq *q, const char *name, double weight, unsigned max_queued)
{
    fairq_flow *f = fairq_flow_find(q, name);
    if (f)
        return f;
    assert(weight > 0);
    f = calloc(1, sizeof *f);
    if (!f)
        abort();
    f->name = strdup(name);
    if (!f->name)
        abort();
    f->weight = weight;
    f->max_queued = max_queued;
    f->vfinish = q->vtime;
    if (q->nflows == q->capflows) {
        q->capflows = q->capflows ? q->capflows * 2 : 8;
        q->flows = xrealloc(q->flows, q->capflows * sizeof *q->flows);
    }
    q->flows[q->nflows++] = f;
    return f;
}

/* ---- deadline heap ---- */

static int heap_less(const fairq_item *a, const fairq_item *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_set(fairq *q, size_t i, fairq_item *it)
{
    q->heap[i] = it;
    it->heap_idx = i;
}

static void heap_up(fairq *q, size_t i)
{
    fairq_item *it = q->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(it, q->heap[parent]))
            break;
        heap_set(q, i, q->heap[parent]);
        i = parent;
    }
    heap_set(q, i, it);
}

static void heap_down(fairq *q, size_t i)
{
    fairq_item *it = q->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const fairq_item *best = it;
        if (l < q->nheap && heap_less(q->heap[l], best)) {
            m = l;
            best = q->heap[l];
        }
        if (r < q->nheap && heap_less(q->heap[r], best))
            m = r;
        if (m == i)
            break;
        heap_set(q, i, q->heap[m]);
        i = m;
    }
    heap_set(q, i, it);
}

static void heap_insert(fairq *q, fairq_item *it)
{
    if (q->nheap == q->capheap) {
        q->capheap = q->capheap ? q->capheap * 2 : 64;
        q->heap = xrealloc(q->heap, q->capheap * sizeof *q->heap);
    }
    heap_set(q, q->nheap++, it);
    heap_up(q, it->heap_idx);
}

static void heap_delete(fairq *q, fairq_item *it)
{
    size_t i = it->heap_idx;
    assert(i < q->nheap && q->heap[i] == it);
    fairq_item *last = q->heap[--q->nheap];
    if (last != it) {
        heap_set(q, i, last);
        if (i > 0 && heap_less(last, q->heap[(i - 1) / 2]))
            heap_up(q, i);
        else
            heap_down(q, i);
    }
    it->heap_idx = (size_t)-1;
}

/* ---- queue ---- */

static void link_back(fairq_flow *f, fairq_item *it)
{
    it->next = NULL;
    it->prev = f->tail;
    if (f->tail)
        f->tail->next = it;
    else
        f->head = it;
    f->tail = it;
    f->count++;
    it->flow = f;
}

static void link_front(fairq_flow *f, fairq_item *it)
{
    it->prev = NULL;
    it->next = f->head;
    if (f->head)
        f->head->prev = it;
    else
        f->tail = it;
    f->head = it;
    f->count++;
    it->flow = f;
}

static void unlink_item(fairq *q, fairq_item *it)
{
    fairq_flow *f = it->flow;
    assert(f && f->count > 0 && q->count > 0);
    if (it->prev)
        it->prev->next = it->next;
    else
        f->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        f->tail = it->prev;
    it->next = it->prev = NULL;
    it->flow = NULL;
    f->count--;
    q->count--;
    heap_delete(q, it);
    if (q->count == 0) {
        /* Idle: forget the tags of items that left without being served, so that a client
         * whose requests were cancelled or expired does not carry a debt into the next busy
         * period. */
        for (size_t i = 0; i < q->nflows; i++)
            q->flows[i]->vfinish = q->vtime;
    }
}

fairq_status fairq_push(fairq *q, fairq_flow *f, fairq_item *it, uint64_t deadline)
{
    assert(!fairq_queued(it));
    if (f->max_queued && f->count >= f->max_queued)
        return FAIRQ_FULL_FLOW;
    if (q->max_total && q->count >= q->max_total)
        return FAIRQ_FULL_TOTAL;
    double s = f->vfinish > q->vtime ? f->vfinish : q->vtime;
    it->vstart = s;
    f->vfinish = s + 1.0 / f->weight;
    it->deadline = deadline;
    it->seq = q->seq++;
    link_back(f, it);
    q->count++;
    heap_insert(q, it);
    return FAIRQ_OK;
}

void fairq_push_front(fairq *q, fairq_flow *f, fairq_item *it)
{
    assert(!fairq_queued(it));
    /* Keep vstart (<= V) and seq (older than anything queued after it), so it wins every
     * tie and is served next; keep the deadline. The flow's finish tag is not charged again. */
    link_front(f, it);
    q->count++;
    heap_insert(q, it);
}

fairq_item *fairq_pop(fairq *q)
{
    fairq_item *best = NULL;
    for (size_t i = 0; i < q->nflows; i++) {
        fairq_item *h = q->flows[i]->head;
        if (h && (!best || h->vstart < best->vstart ||
                  (h->vstart == best->vstart && h->seq < best->seq)))
            best = h;
    }
    if (!best)
        return NULL;
    if (best->vstart > q->vtime)
        q->vtime = best->vstart;
    unlink_item(q, best);
    return best;
}

void fairq_remove(fairq *q, fairq_item *it)
{
    if (fairq_queued(it))
        unlink_item(q, it);
}

uint64_t fairq_next_deadline(const fairq *q)
{
    return q->nheap ? q->heap[0]->deadline : UINT64_MAX;
}

fairq_item *fairq_pop_expired(fairq *q, uint64_t now)
{
    if (!q->nheap || q->heap[0]->deadline > now)
        return NULL;
    fairq_item *it = q->heap[0];
    unlink_item(q, it);
    return it;
}

static unsigned count_before(const fairq *q, double vstart, uint64_t seq)
{
    unsigned n = 0;
    for (size_t i = 0; i < q->nflows; i++)
        for (const fairq_item *it = q->flows[i]->head; it; it = it->next)
            if (it->vstart < vstart || (it->vstart == vstart && it->seq < seq))
                n++;
    return n;
}

unsigned fairq_position(const fairq *q, const fairq_item *it)
{
    return count_before(q, it->vstart, it->seq);
}

unsigned fairq_position_new(const fairq *q, const fairq_flow *f)
{
    double s = f->vfinish > q->vtime ? f->vfinish : q->vtime;
    return count_before(q, s, q->seq);
}
