/*
 * sq_classify: the saved-query classifier (see sim_res.h). A small SQL tokenizer feeds a
 * clause-aware scan, so words inside string literals, quoted identifiers and comments never
 * count, and a keyword only counts where it is a keyword.
 *
 * Rules: pure function, no global state, bounded work (one pass to tokenize, one to scan);
 * any input, however malformed, classifies without crashing.
 */
#include "sim_res.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum sq_tok_kind { SQ_WORD, SQ_QIDENT, SQ_STRING, SQ_NUMBER, SQ_PUNCT };

typedef struct sq_tok {
    enum sq_tok_kind kind;
    const char *s; /* points into the SQL text */
    size_t len;
} sq_tok;

typedef struct sq_toks {
    sq_tok *v;
    size_t n, cap;
} sq_toks;

static void sq_push(sq_toks *t, enum sq_tok_kind k, const char *s, size_t len)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        sq_tok *v = realloc(t->v, cap * sizeof *v);
        if (!v)
            abort();
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = (sq_tok){k, s, len};
}

static int sq_ident_start(unsigned char c)
{
    return isalpha(c) || c == '_' || c >= 0x80;
}

static int sq_ident_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

/* Tokenize: comments and whitespace vanish; literals become single tokens. */
static void sq_tokenize(const char *p, size_t len, sq_toks *t)
{
    const char *end = p + len;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (isspace(c)) {
            p++;
        } else if (c == '-' && p + 1 < end && p[1] == '-') {
            while (p < end && *p != '\n')
                p++;
        } else if (c == '/' && p + 1 < end && p[1] == '*') {
            int depth = 0; /* Postgres block comments nest */
            while (p < end) {
                if (p + 1 < end && p[0] == '/' && p[1] == '*') {
                    depth++;
                    p += 2;
                } else if (p + 1 < end && p[0] == '*' && p[1] == '/') {
                    p += 2;
                    if (--depth == 0)
                        break;
                } else {
                    p++;
                }
            }
        } else if (c == '\'' || ((c == 'E' || c == 'e') && p + 1 < end && p[1] == '\'')) {
            const char *s = p;
            int backslash = c != '\'';
            p += backslash ? 2 : 1;
            while (p < end) {
                if (backslash && *p == '\\' && p + 1 < end) {
                    p += 2;
                } else if (*p == '\'') {
                    if (p + 1 < end && p[1] == '\'') {
                        p += 2;
                    } else {
                        p++;
                        break;
                    }
                } else {
                    p++;
                }
            }
            sq_push(t, SQ_STRING, s, (size_t)(p - s));
        } else if (c == '"' || c == '`') {
            const char *s = p++;
            while (p < end) {
                if (*p == (char)c) {
                    if (p + 1 < end && p[1] == (char)c) {
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                p++;
            }
            sq_push(t, SQ_QIDENT, s, (size_t)(p - s));
        } else if (c == '$' && p + 1 < end &&
                   (p[1] == '$' || sq_ident_start((unsigned char)p[1]))) {
            /* dollar quoting $tag$ ... $tag$, or a positional parameter $1 (handled below) */
            const char *s = p;
            const char *q = p + 1;
            while (q < end && sq_ident_char((unsigned char)*q) && *q != '$')
                q++;
            if (q < end && *q == '$') {
                size_t taglen = (size_t)(q - p) + 1;
                const char *body = q + 1;
                const char *close = NULL;
                for (const char *r = body; r + taglen <= end; r++) {
                    if (memcmp(r, s, taglen) == 0) {
                        close = r;
                        break;
                    }
                }
                p = close ? close + taglen : end;
                sq_push(t, SQ_STRING, s, (size_t)(p - s));
            } else {
                p = q;
                sq_push(t, SQ_WORD, s, (size_t)(p - s));
            }
        } else if (isdigit(c) || (c == '.' && p + 1 < end && isdigit((unsigned char)p[1]))) {
            const char *s = p;
            while (p < end && (isalnum((unsigned char)*p) || *p == '.' || *p == '_'))
                p++;
            sq_push(t, SQ_NUMBER, s, (size_t)(p - s));
        } else if (sq_ident_start(c)) {
            const char *s = p;
            while (p < end && sq_ident_char((unsigned char)*p))
                p++;
            sq_push(t, SQ_WORD, s, (size_t)(p - s));
        } else {
            sq_push(t, SQ_PUNCT, p, 1);
            p++;
        }
    }
}

static int sq_is(const sq_tok *t, const char *kw)
{
    return t->kind == SQ_WORD && strlen(kw) == t->len && strncasecmp(t->s, kw, t->len) == 0;
}

static int sq_is_punct(const sq_tok *t, char c)
{
    return t->kind == SQ_PUNCT && t->s[0] == c;
}

static int sq_in_list(const sq_tok *t, const char *const *list)
{
    if (t->kind != SQ_WORD)
        return 0;
    for (size_t i = 0; list[i]; i++)
        if (sq_is(t, list[i]))
            return 1;
    return 0;
}

static const char *const sq_aggregates[] = {"count",
                                            "sum",
                                            "avg",
                                            "min",
                                            "max",
                                            "stddev",
                                            "stddev_samp",
                                            "stddev_pop",
                                            "variance",
                                            "var_samp",
                                            "var_pop",
                                            "array_agg",
                                            "string_agg",
                                            "bool_and",
                                            "bool_or",
                                            "every",
                                            "median",
                                            "mode",
                                            "listagg",
                                            "group_concat",
                                            "json_agg",
                                            "jsonb_agg",
                                            "json_object_agg",
                                            "bit_and",
                                            "bit_or",
                                            "bit_xor",
                                            "corr",
                                            "covar_pop",
                                            "covar_samp",
                                            "approx_distinct",
                                            "approx_count_distinct",
                                            "approx_percentile_cont",
                                            "approx_median",
                                            "percentile_cont",
                                            "percentile_disc",
                                            "regr_slope",
                                            "regr_intercept",
                                            "regr_count",
                                            "regr_r2",
                                            "any_value",
                                            NULL};

/* Words that end a FROM list at the current nesting depth. */
static const char *const sq_from_enders[] = {
    "where",  "group",  "order",   "limit",  "having", "union",     "intersect",
    "except", "window", "qualify", "offset", "fetch",  "returning", "on",
    "using",  "select", "set",     "values", NULL};

/* Reserved words that can never be a table name. */
static const char *const sq_reserved[] = {
    "select",    "where",  "group",    "order",  "limit",     "having", "union",
    "intersect", "except", "join",     "inner",  "left",      "right",  "full",
    "outer",     "cross",  "natural",  "on",     "using",     "as",     "values",
    "with",      "window", "qualify",  "offset", "fetch",     "and",    "or",
    "not",       "case",   "when",     "then",   "else",      "end",    "null",
    "true",      "false",  "distinct", "all",    "returning", "set",    NULL};

/* Copy a table name from tokens [i, j) into a normalised key: unquoted parts lowercased. */
static char *sq_name_key(const sq_tok *v, size_t i, size_t j)
{
    size_t total = 1;
    for (size_t k = i; k < j; k++)
        total += v[k].len;
    char *out = malloc(total);
    if (!out)
        abort();
    size_t o = 0;
    for (size_t k = i; k < j; k++) {
        for (size_t m = 0; m < v[k].len; m++) {
            char ch = v[k].s[m];
            out[o++] = v[k].kind == SQ_WORD ? (char)tolower((unsigned char)ch) : ch;
        }
    }
    out[o] = '\0';
    return out;
}

typedef struct sq_names {
    char **v;
    size_t n, cap;
} sq_names;

static int sq_names_has(const sq_names *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], name) == 0)
            return 1;
    return 0;
}

/* Takes ownership of name. Returns 1 when it was new. */
static int sq_names_add(sq_names *s, char *name)
{
    if (sq_names_has(s, name)) {
        free(name);
        return 0;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v)
            abort();
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = name;
    return 1;
}

static void sq_names_free(sq_names *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

/* Names defined by WITH: `name AS (`, `name AS [NOT] MATERIALIZED (`, `name (cols) AS (`. */
static void sq_collect_ctes(const sq_toks *t, sq_names *ctes)
{
    for (size_t i = 1; i + 1 < t->n; i++) {
        if (!sq_is(&t->v[i], "as"))
            continue;
        size_t k = i + 1;
        if (k < t->n && sq_is(&t->v[k], "not"))
            k++;
        if (k < t->n && sq_is(&t->v[k], "materialized"))
            k++;
        if (k >= t->n || !sq_is_punct(&t->v[k], '('))
            continue;
        size_t name = i - 1;
        if (sq_is_punct(&t->v[name], ')')) {
            int depth = 0;
            size_t m = name;
            for (;;) {
                if (sq_is_punct(&t->v[m], ')'))
                    depth++;
                else if (sq_is_punct(&t->v[m], '(') && --depth == 0)
                    break;
                if (m == 0)
                    break;
                m--;
            }
            if (depth != 0 || m == 0)
                continue;
            name = m - 1;
        }
        if ((t->v[name].kind == SQ_WORD && !sq_in_list(&t->v[name], sq_reserved)) ||
            t->v[name].kind == SQ_QIDENT)
            sq_names_add(ctes, sq_name_key(t->v, name, name + 1));
    }
}

#define SQ_MAX_DEPTH 64

void sim_sq_classify(const char *sql, size_t len, sim_sq_class *out)
{
    memset(out, 0, sizeof *out);
    sq_toks t = {0};
    if (sql)
        sq_tokenize(sql, len, &t);
    sq_names ctes = {0}, tables = {0};
    sq_collect_ctes(&t, &ctes);

    int depth = 0;
    int in_from[SQ_MAX_DEPTH] = {0};
    int from_refs[SQ_MAX_DEPTH] = {0};    /* table refs in the current FROM list at a depth */
    int window_depth[SQ_MAX_DEPTH] = {0}; /* 1 when the paren at that depth follows OVER */
    int is_query[SQ_MAX_DEPTH] = {1};     /* 1 when the paren holds a query, not a call */
    int expect_table = 0;
    int saw_from = 0;

    for (size_t i = 0; i < t.n; i++) {
        const sq_tok *k = &t.v[i];
        int d = depth < SQ_MAX_DEPTH ? depth : SQ_MAX_DEPTH - 1;
        if (k->kind == SQ_PUNCT) {
            char c = k->s[0];
            if (c == '(') {
                if (expect_table && ++from_refs[d] > 1)
                    out->has_join = 1; /* FROM a, (SELECT ...) s */
                expect_table = 0;
                depth++;
                if (depth < SQ_MAX_DEPTH) {
                    is_query[depth] =
                        i + 1 < t.n && (sq_is(&t.v[i + 1], "select") ||
                                        sq_is(&t.v[i + 1], "with") || sq_is(&t.v[i + 1], "values"));
                    in_from[depth] = 0;
                    from_refs[depth] = 0;
                    window_depth[depth] = i > 0 && sq_is(&t.v[i - 1], "over");
                }
            } else if (c == ')') {
                expect_table = 0;
                if (depth > 0)
                    depth--;
            } else if (c == ',') {
                expect_table = in_from[d];
            } else if (c == ';') {
                expect_table = 0;
                in_from[d] = 0;
                from_refs[d] = 0;
            } else {
                expect_table = 0;
            }
            continue;
        }
        if (expect_table) {
            expect_table = 0;
            if (sq_is(k, "lateral") || sq_is(k, "only")) {
                expect_table = 1;
                continue;
            }
            if ((k->kind == SQ_WORD && !sq_in_list(k, sq_reserved)) || k->kind == SQ_QIDENT) {
                size_t j = i + 1;
                while (j + 1 < t.n && sq_is_punct(&t.v[j], '.') &&
                       (t.v[j + 1].kind == SQ_WORD || t.v[j + 1].kind == SQ_QIDENT))
                    j += 2;
                int is_function = j < t.n && sq_is_punct(&t.v[j], '(');
                if (!is_function) {
                    char *key = sq_name_key(t.v, i, j);
                    int is_cte = j == i + 1 && sq_names_has(&ctes, key);
                    if (is_cte)
                        free(key);
                    else
                        sq_names_add(&tables, key);
                    if (++from_refs[d] > 1)
                        out->has_join = 1; /* FROM a, b: an implicit join */
                    i = j - 1;
                    continue;
                }
            }
        }
        if (k->kind != SQ_WORD)
            continue;
        if (sq_is(k, "from")) {
            if (!is_query[d])
                continue; /* EXTRACT(x FROM y), SUBSTRING(s FROM 2), TRIM(... FROM s) */
            saw_from = 1;
            in_from[d] = 1;
            from_refs[d] = 0;
            expect_table = 1;
        } else if (sq_is(k, "join")) {
            out->has_join = 1;
            in_from[d] = 1;
            expect_table = 1;
        } else if (sq_in_list(k, sq_from_enders)) {
            in_from[d] = 0;
            if (sq_is(k, "where") || sq_is(k, "having") || sq_is(k, "qualify")) {
                out->has_predicate = 1;
            } else if (sq_is(k, "group") && i + 1 < t.n && sq_is(&t.v[i + 1], "by")) {
                out->has_group_by = 1;
                out->has_aggregation = 1;
            } else if (sq_is(k, "order") && i + 1 < t.n && sq_is(&t.v[i + 1], "by")) {
                if (!window_depth[d])
                    out->has_order_by = 1;
            } else if (sq_is(k, "limit") || sq_is(k, "fetch")) {
                out->has_limit = 1;
            }
        } else if (sq_is(k, "top") && i > 0 && sq_is(&t.v[i - 1], "select")) {
            out->has_limit = 1;
        } else if (sq_in_list(k, sq_aggregates) && i + 1 < t.n && sq_is_punct(&t.v[i + 1], '(') &&
                   !(i > 0 && sq_is_punct(&t.v[i - 1], '.'))) {
            out->has_aggregation = 1;
        }
    }

    out->num_tables = (int)tables.n;
    if (out->has_join)
        out->category = "join";
    else if (out->has_aggregation)
        out->category = "aggregation";
    else if (out->has_predicate)
        out->category = "filtered_scan";
    else if (saw_from && tables.n > 0)
        out->category = "scan";
    else
        out->category = "other";
    sq_names_free(&ctes);
    sq_names_free(&tables);
    free(t.v);
}
