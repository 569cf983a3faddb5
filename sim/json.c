/*
 * json: the JSON text writer behind every reply (see sim_json.h): compact, keys in the
 * object's order, strings escaped like jansson, reals in their shortest round-trip form.
 *
 * Rules: pure; aborts on OOM like the rest of the simulator.
 */
#include "sim_json.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sim_jbuf {
    char *p;
    size_t n, cap;
};

static void sim_jbuf_put(struct sim_jbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void sim_jbuf_str(struct sim_jbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sim_jbuf_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sim_jbuf_put(b, s + run, i - run);
        run = i + 1;
        /* the two-character escapes jansson writes, else \u00XX */
        static const char named[] = "\"\\\b\f\n\r\t", letter[] = "\"\\bfnrt";
        const char *k = c ? strchr(named, c) : NULL;
        char esc[6] = {'\\', k ? letter[k - named] : 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        size_t el = k ? 2 : 6;
        sim_jbuf_put(b, esc, el);
    }
    sim_jbuf_put(b, s + run, n - run);
    sim_jbuf_put(b, "\"", 1);
}

int sim_json_real_str(double v, char out[32])
{
    int len = 0;
    for (int prec = 15; prec <= 17; prec++) {
        len = snprintf(out, 32, "%.*g", prec, v);
        if (prec == 17 || strtod(out, NULL) == v)
            break;
    }
    /* a real stays a real: "2" -> "2.0"; exponents as jansson writes them: "1e+20" -> "1e20" */
    char *e = strchr(out, 'e');
    if (e) {
        char *d = e + 1;
        if (*d == '+')
            memmove(d, d + 1, strlen(d));
        else if (*d == '-')
            d++;
        while (d[0] == '0' && d[1])
            memmove(d, d + 1, strlen(d));
        len = (int)strlen(out);
    } else if (!strchr(out, '.') && !strchr(out, 'n') && !strchr(out, 'N')) {
        memcpy(out + len, ".0", 3);
        len += 2;
    }
    return len;
}

static void sim_json_put(struct sim_jbuf *b, const json_t *j)
{
    char num[40];
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        sim_jbuf_put(b, "{", 1);
        bool first = true;
        for (void *it = json_object_iter((json_t *)j); it;
             it = json_object_iter_next((json_t *)j, it)) {
            if (!first)
                sim_jbuf_put(b, ",", 1);
            first = false;
            sim_jbuf_str(b, json_object_iter_key(it), json_object_iter_key_len(it));
            sim_jbuf_put(b, ":", 1);
            sim_json_put(b, json_object_iter_value(it));
        }
        sim_jbuf_put(b, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        sim_jbuf_put(b, "[", 1);
        size_t n = json_array_size(j);
        for (size_t i = 0; i < n; i++) {
            if (i)
                sim_jbuf_put(b, ",", 1);
            sim_json_put(b, json_array_get(j, i));
        }
        sim_jbuf_put(b, "]", 1);
        break;
    }
    case JSON_STRING:
        sim_jbuf_str(b, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER: {
        int l = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        sim_jbuf_put(b, num, (size_t)l);
        break;
    }
    case JSON_REAL: {
        int l = sim_json_real_str(json_real_value(j), num);
        sim_jbuf_put(b, num, (size_t)l);
        break;
    }
    case JSON_TRUE:
        sim_jbuf_put(b, "true", 4);
        break;
    case JSON_FALSE:
        sim_jbuf_put(b, "false", 5);
        break;
    case JSON_NULL:
        sim_jbuf_put(b, "null", 4);
        break;
    }
}

char *sim_json_dumps(const json_t *j, size_t *len)
{
    struct sim_jbuf b = {0};
    sim_json_put(&b, j ? j : json_null());
    b.p[b.n] = '\0';
    if (len)
        *len = b.n;
    return b.p;
}
