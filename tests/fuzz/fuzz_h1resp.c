/*
 * fuzz_h1resp: libFuzzer target for the response-head reader of the native upstream client
 * (src/h1resp.c). Input: byte 0 picks HEAD or not; the rest is what an upstream sends.
 * Checks, besides no crash / leak / sanitizer report:
 *   - h1resp_head_len never points past the input or the head limit;
 *   - a parsed head has a status in 100..599 (never 101), a framing consistent with it
 *     (no body for 1xx/204/304/HEAD, Content-Length framing only with a length > 0), and
 *     only headers with valid names and control-free values;
 *   - http1_chunk_size (the upstream's rules: any number of digits) accepts only lines that start
 * with a hex digit and never yields a size above 2^62. Build and run: scripts/fuzz.sh 60
 * fuzz_h1resp.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <ctype.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>

#include "h1resp.h"
#include "http1.h"
#include "hdr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int head_request = data[0] & 1;
    const char *b = (const char *)data + 1;
    size_t n = size - 1;

    long len = h1resp_head_len(b, n);
    assert(len >= -1);
    assert(len <= (long)n && len <= (long)H1RESP_HEAD_MAX);
    if (len > 0) {
        struct evkeyvalq h;
        TAILQ_INIT(&h);
        struct h1resp_head r;
        if (h1resp_parse(b, (size_t)len, head_request, &r, &h) == 0) {
            assert(r.status >= 100 && r.status <= 599 && r.status != 101);
            assert(r.minor == 0 || r.minor == 1);
            if (r.status < 200 || r.status == 204 || r.status == 304 || head_request)
                assert(r.framing == H1F_NONE);
            if (r.framing == H1F_LENGTH)
                assert(r.length > 0);
            if (r.framing == H1F_CLOSE)
                assert(!r.keep_alive);
            struct evkeyval *kv;
            TAILQ_FOREACH(kv, &h, next)
            {
                assert(hdr_name_ok(kv->key, strlen(kv->key)));
                assert(hdr_value_ok(kv->value));
            }
        }
        evhttp_clear_headers(&h);
    }

    const char *nl = memchr(b, '\n', n);
    size_t ll = nl ? (size_t)(nl - b) : n;
    uint64_t cs;
    if (http1_chunk_size(b, ll, 0, &cs) == 0) {
        assert(ll > 0 && isxdigit((unsigned char)b[0]));
        assert(cs <= (1ull << 62));
    }
    return 0;
}
