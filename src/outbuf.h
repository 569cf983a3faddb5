/*
 * outbuf: a stack staging buffer in front of an evbuffer, for text assembled on hot paths
 * (response heads, access log lines) without printf: pieces are copied into b[] and handed
 * to the evbuffer in one evbuffer_add when b[] is full and at outbuf_flush().
 *
 * Rules: an outbuf lives on its user's stack and is used by one thread; it allocates
 * nothing itself. Call outbuf_flush() once at the end, or the tail is lost.
 */
#ifndef HG_OUTBUF_H
#define HG_OUTBUF_H

#include <event2/buffer.h>
#include <stdint.h>
#include <string.h>

struct outbuf {
    struct evbuffer *out;
    size_t n;
    char b[2048];
};

static inline void outbuf_init(struct outbuf *ob, struct evbuffer *out)
{
    ob->out = out;
    ob->n = 0;
}

static inline void outbuf_put(struct outbuf *ob, const char *s, size_t len)
{
    if (ob->n + len > sizeof ob->b) {
        evbuffer_add(ob->out, ob->b, ob->n);
        ob->n = 0;
        if (len > sizeof ob->b) {
            evbuffer_add(ob->out, s, len);
            return;
        }
    }
    memcpy(ob->b + ob->n, s, len);
    ob->n += len;
}

#define OUTBUF_LIT(ob, lit) outbuf_put((ob), (lit), sizeof(lit) - 1)

static inline void outbuf_str(struct outbuf *ob, const char *s)
{
    outbuf_put(ob, s, strlen(s));
}

static inline void outbuf_u64(struct outbuf *ob, uint64_t v)
{
    char d[24];
    size_t i = sizeof d;
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    outbuf_put(ob, d + i, sizeof d - i);
}

static inline void outbuf_i64(struct outbuf *ob, int64_t v)
{
    if (v < 0) {
        OUTBUF_LIT(ob, "-");
        outbuf_u64(ob, (uint64_t)0 - (uint64_t)v);
    } else {
        outbuf_u64(ob, (uint64_t)v);
    }
}

static inline void outbuf_flush(struct outbuf *ob)
{
    if (ob->n)
        evbuffer_add(ob->out, ob->b, ob->n);
    ob->n = 0;
}

#endif
