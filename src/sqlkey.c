/*
 * sqlkey: SQL canonicalisation, classification and table references (see sqlkey.h).
 *
 * Rules: stateless and thread-safe; every scan is a single left-to-right pass over the tokens
 * with bounded lookahead, iterative (paren nesting lives in a heap stack, not the C stack), and
 * never reads outside [sql, sql+len). Owned by the sqlkey module; the cache and the route
 * module are its users.
 */
#include "sqlkey.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- lexer ------------------------------------------------------------------------------ */

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_ident_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ident_cont(unsigned char c)
{
    return is_ident_start(c) || is_digit(c) || c == '$';
}

static bool is_op_char(unsigned char c)
{
    return strchr("+-*/<>=~!@#%^&|`?", c) != NULL && c != 0;
}

/* Quoted run starting at s[i] == q: q q is an escaped q; with bs, a backslash escapes any byte. */
static size_t lex_quoted(const char *s, size_t len, size_t i, char q, bool bs, bool *unterminated)
{
    i++; /* opening quote */
    while (i < len) {
        char c = s[i];
        if (bs && c == '\\') {
            if (i + 1 >= len) {
                i = len;
                break;
            }
            i += 2;
            continue;
        }
        if (c == q) {
            if (i + 1 < len && s[i + 1] == q) {
                i += 2;
                continue;
            }
            *unterminated = false;
            return i + 1;
        }
        i++;
    }
    *unterminated = true;
    return len;
}

/* Dollar-quote opener at s[i] == '$': returns the tag length including both '$' (>= 2), or 0. */
static size_t dollar_tag(const char *s, size_t len, size_t i)
{
    size_t j = i + 1;
    if (j < len && s[j] == '$')
        return 2;
    if (j >= len || !is_ident_start((unsigned char)s[j]))
        return 0;
    j++;
    while (j < len && (is_ident_start((unsigned char)s[j]) || is_digit((unsigned char)s[j])))
        j++;
    if (j < len && s[j] == '$')
        return j - i + 1;
    return 0;
}

/* A block comment at s[i] ("/" "*", nested): its end; *unterminated when it runs off the end. */
static size_t lex_block_comment(const char *s, size_t len, size_t i, bool *unterminated)
{
    size_t depth = 1;
    i += 2;
    while (i < len && depth > 0) {
        if (s[i] == '*' && i + 1 < len && s[i + 1] == '/') {
            depth--;
            i += 2;
        } else if (s[i] == '/' && i + 1 < len && s[i + 1] == '*') {
            depth++;
            i += 2;
        } else {
            i++;
        }
    }
    *unterminated = depth > 0;
    return *unterminated ? len : i;
}

/* A '$' at s[i]: a parameter ($1), a dollar-quoted body ($tag$...$tag$) or a lone '$'. */
static size_t lex_dollar(const char *s, size_t len, size_t i, struct sqlkey_tok *t)
{
    size_t tag = dollar_tag(s, len, i);
    if (i + 1 < len && is_digit((unsigned char)s[i + 1])) {
        i++;
        while (i < len && is_digit((unsigned char)s[i]))
            i++;
        t->kind = SQLKEY_TOK_PARAM;
        return i;
    }
    if (tag == 0) {
        t->kind = SQLKEY_TOK_OTHER;
        return i + 1;
    }
    /* body runs to the next occurrence of the same tag */
    const char *open = s + i;
    size_t j = i + tag;
    t->unterminated = true;
    while (j + tag <= len) {
        const char *d = memchr(s + j, '$', len - j);
        if (!d || (size_t)(d - s) + tag > len)
            break;
        j = (size_t)(d - s);
        if (memcmp(s + j, open, tag) == 0) {
            t->unterminated = false;
            j += tag;
            break;
        }
        j++;
    }
    t->kind = SQLKEY_TOK_DOLLAR;
    return t->unterminated ? len : j;
}

/* A number at s[i] (digits, '.', '_', letters, an exponent's sign): its end. */
static size_t lex_number(const char *s, size_t len, size_t i)
{
    while (i < len) {
        unsigned char d = (unsigned char)s[i];
        if (!(is_digit(d) || d == '.' || d == '_' || (d >= 'a' && d <= 'z') ||
              (d >= 'A' && d <= 'Z')))
            break;
        i++;
        if ((d == 'e' || d == 'E') && i + 1 < len && (s[i] == '+' || s[i] == '-') &&
            is_digit((unsigned char)s[i + 1]))
            i++;
    }
    return i;
}

/* An operator at s[i]: its end (a comment opener inside ends it). */
static size_t lex_operator(const char *s, size_t len, size_t i)
{
    i++;
    while (i < len && is_op_char((unsigned char)s[i])) {
        if ((s[i] == '-' && i + 1 < len && s[i + 1] == '-') ||
            (s[i] == '/' && i + 1 < len && s[i + 1] == '*'))
            break;
        i++;
    }
    return i;
}

/* A quoted token with a prefix at s[i] (E'', B'', X'', N'', U&'' / U&""): its end, or 0 when
 * s[i] starts none. */
static size_t lex_prefixed_quote(const char *s, size_t len, size_t i, struct sqlkey_tok *t)
{
    unsigned char c = (unsigned char)s[i];
    if ((c == 'e' || c == 'E') && i + 1 < len && s[i + 1] == '\'') {
        t->kind = SQLKEY_TOK_STRING;
        return lex_quoted(s, len, i + 1, '\'', true, &t->unterminated);
    }
    if ((c == 'b' || c == 'B' || c == 'x' || c == 'X' || c == 'n' || c == 'N') && i + 1 < len &&
        s[i + 1] == '\'') {
        t->kind = SQLKEY_TOK_STRING;
        return lex_quoted(s, len, i + 1, '\'', false, &t->unterminated);
    }
    if ((c == 'u' || c == 'U') && i + 2 < len && s[i + 1] == '&' &&
        (s[i + 2] == '\'' || s[i + 2] == '"')) {
        t->kind = s[i + 2] == '\'' ? SQLKEY_TOK_STRING : SQLKEY_TOK_QIDENT;
        return lex_quoted(s, len, i + 2, s[i + 2], false, &t->unterminated);
    }
    return 0;
}

void sqlkey_lex(const char *s, size_t len, size_t off, struct sqlkey_tok *t)
{
    size_t i = off;
    unsigned char c = (unsigned char)s[i];
    size_t end;
    t->off = off;
    t->unterminated = false;

    if (is_space(c)) {
        while (i < len && is_space((unsigned char)s[i]))
            i++;
        t->kind = SQLKEY_TOK_SPACE;
    } else if (c == '-' && i + 1 < len && s[i + 1] == '-') {
        while (i < len && s[i] != '\n')
            i++;
        t->kind = SQLKEY_TOK_COMMENT;
    } else if (c == '/' && i + 1 < len && s[i + 1] == '*') {
        i = lex_block_comment(s, len, i, &t->unterminated);
        t->kind = SQLKEY_TOK_COMMENT;
    } else if (c == '\'') {
        i = lex_quoted(s, len, i, '\'', false, &t->unterminated);
        t->kind = SQLKEY_TOK_STRING;
    } else if ((end = lex_prefixed_quote(s, len, i, t)) != 0) {
        i = end;
    } else if (c == '"') {
        i = lex_quoted(s, len, i, '"', false, &t->unterminated);
        t->kind = SQLKEY_TOK_QIDENT;
    } else if (is_ident_start(c)) {
        while (i < len && is_ident_cont((unsigned char)s[i]))
            i++;
        t->kind = SQLKEY_TOK_WORD;
    } else if (c == '$') {
        i = lex_dollar(s, len, i, t);
    } else if (is_digit(c) || (c == '.' && i + 1 < len && is_digit((unsigned char)s[i + 1]))) {
        i = lex_number(s, len, i);
        t->kind = SQLKEY_TOK_NUMBER;
    } else if (c == ':') {
        i += (i + 1 < len && s[i + 1] == ':') ? 2 : 1;
        t->kind = SQLKEY_TOK_OPERATOR;
    } else if (is_op_char(c)) {
        i = lex_operator(s, len, i);
        t->kind = SQLKEY_TOK_OPERATOR;
    } else if (strchr("()[],;.", c) != NULL && c != 0) {
        i++;
        t->kind = SQLKEY_TOK_PUNCT;
    } else {
        i++;
        t->kind = SQLKEY_TOK_OTHER;
    }
    t->len = i - off;
}

/* ---- canonical form --------------------------------------------------------------------- */

static bool in_list(const char *w, const char *const *list);

/* Output sink: a caller buffer, or a SHA-256 context fed through a small staging buffer. */
struct sink {
    char *out;
    size_t n;
    EVP_MD_CTX *md;
    char stage[4096];
    size_t staged;
};

static void sink_put(struct sink *k, const char *p, size_t n)
{
    if (k->out) {
        memcpy(k->out + k->n, p, n);
        k->n += n;
        return;
    }
    k->n += n;
    if (k->staged + n > sizeof(k->stage)) {
        EVP_DigestUpdate(k->md, k->stage, k->staged);
        k->staged = 0;
        if (n > sizeof(k->stage)) {
            EVP_DigestUpdate(k->md, p, n);
            return;
        }
    }
    memcpy(k->stage + k->staged, p, n);
    k->staged += n;
}

static bool is_string_tok(const struct sqlkey_tok *t)
{
    return t->kind == SQLKEY_TOK_STRING;
}

/*
 * Tokens whose extent another SQL lexer could see differently, so that what we call a literal
 * could hide a statement there: a block comment with a nested opener (SQLite and many parsers
 * do not nest), a line comment holding a carriage return (Postgres ends it there, others at the
 * newline), and a plain '...' (or N'...') string holding a backslash (an escape when
 * standard_conforming_strings is off, and in MySQL-style dialects). E'...' is not ambiguous:
 * every lexer that accepts the E prefix gives the backslash its escape meaning.
 */
static bool tok_lex_ambiguous(const char *s, const struct sqlkey_tok *t)
{
    const char *p = s + t->off;
    switch (t->kind) {
    case SQLKEY_TOK_COMMENT:
        if (p[0] == '-')
            return memchr(p, '\r', t->len) != NULL;
        return t->len > 4 && memmem(p + 2, t->len - 2, "/*", 2) != NULL;
    case SQLKEY_TOK_STRING:
        return (p[0] == '\'' || p[0] == 'n' || p[0] == 'N') && memchr(p, '\\', t->len) != NULL;
    default:
        return false;
    }
}

/*
 * A '[' is certain when the span up to the next ']' holds only bytes that no dialect reads
 * differently whether the brackets quote an identifier (T-SQL, and dialects that borrow it) or
 * subscript / build a list (Postgres, DuckDB, Snowflake): letters, digits, '_', '.', ',', ':'
 * and bytes >= 0x80. Anything else (whitespace, '-', '/', quotes, ...) could be a comment or a
 * literal in one reading and part of a name in the other.
 */
static bool bracket_certain(const char *s, size_t len, size_t off)
{
    for (size_t i = off + 1; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ']')
            return true;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
              c == '.' || c == ',' || c == ':' || c >= 0x80))
            return false;
    }
    return false;
}

/*
 * Tokens the lexer is not certain of for every dialect a query may be in (hotsql, duckdb,
 * postgres, snowflake, and the MySQL/T-SQL habits some of them accept): what tok_lex_ambiguous
 * names, and also dollar quotes (not every lexer has them), any string or quoted identifier
 * with a backslash, \v and \f in whitespace, a backtick (a quoted identifier in MySQL-style
 * dialects: `k--` is a name there, a comment here), '#' and '//' (line comments in Snowflake
 * and MySQL), a backslash outside a literal, and a '[' whose span is not bracket_certain. From
 * such a token on, canonicalisation stops: the cache keys the exact bytes and does not judge
 * the statement at all (sqlkey_canon_digest, SQLKEY_AMBIGUOUS).
 */
static bool tok_uncertain(const char *s, size_t len, const struct sqlkey_tok *t)
{
    const char *p = s + t->off;
    switch (t->kind) {
    case SQLKEY_TOK_DOLLAR:
        return true;
    case SQLKEY_TOK_SPACE:
        return memchr(p, '\v', t->len) != NULL || memchr(p, '\f', t->len) != NULL;
    case SQLKEY_TOK_STRING:
    case SQLKEY_TOK_QIDENT:
        return memchr(p, '\\', t->len) != NULL;
    case SQLKEY_TOK_OPERATOR:
        return memchr(p, '`', t->len) != NULL || memchr(p, '#', t->len) != NULL ||
               (t->len >= 2 && memmem(p, t->len, "//", 2) != NULL);
    case SQLKEY_TOK_PUNCT:
        return p[0] == '[' && !bracket_certain(s, len, t->off);
    case SQLKEY_TOK_OTHER:
        return p[0] == '\\';
    default:
        return tok_lex_ambiguous(s, t);
    }
}

/* ---- select lists: where whitespace is part of the answer ---- */

/*
 * Engines name an unaliased output column after the text of its expression (SQLite, which backs
 * hotdata-sim, answers `SELECT 1  +  1` with a column named "1  +  1", comments included;
 * Snowflake likewise), so a gap INSIDE a select-list item is part of the answer and is kept
 * byte for byte. Gaps between items, around SELECT, FROM, WHERE ... and everywhere else are
 * formatting and collapse. Tracked per parenthesis level: sel (a select list is open at this
 * level) and item (its current item has begun); a gap is inside an item when some enclosing
 * level has an item begun, or the current level has one and the next token does not end it.
 * Deeper than SEL_LEVELS: every gap is kept (conservative).
 */
#define SEL_LEVELS 64

struct selstate {
    size_t depth;
    bool sel[SEL_LEVELS], item[SEL_LEVELS];
    char prev_word[16]; /* the previous significant token, lower-cased, if a short word */
};

static const char *const sel_enders[] = {
    "from",  "into",      "where",  "group", "having", "order",   "limit",     "offset", "window",
    "union", "intersect", "except", "fetch", "for",    "qualify", "returning", NULL};

static void lower_word(const char *s, const struct sqlkey_tok *t, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (t->kind != SQLKEY_TOK_WORD || t->len >= cap)
        return;
    for (size_t i = 0; i < t->len; i++) {
        char c = s[t->off + i];
        buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    buf[t->len] = '\0';
}

/* Does t end the current select-list item at this level? */
static bool sel_ends_item(const struct selstate *st, const char *s, const struct sqlkey_tok *t,
                          const char *w)
{
    if (t->kind == SQLKEY_TOK_PUNCT)
        return s[t->off] == ',' || s[t->off] == ')' || s[t->off] == ';';
    if (!in_list(w, sel_enders))
        return false;
    /* `a IS DISTINCT FROM b`, `WITHIN GROUP (...)` are inside an expression */
    if (strcmp(w, "from") == 0 && strcmp(st->prev_word, "distinct") == 0)
        return false;
    if (strcmp(w, "group") == 0 && strcmp(st->prev_word, "within") == 0)
        return false;
    return true;
}

/* Is the gap before t inside a select-list item (to be kept verbatim)? */
static bool sel_gap_kept(const struct selstate *st, const char *s, const struct sqlkey_tok *t,
                         const char *w)
{
    if (st->depth >= SEL_LEVELS)
        return true;
    for (size_t l = 0; l < st->depth; l++)
        if (st->sel[l] && st->item[l])
            return true;
    return st->sel[st->depth] && st->item[st->depth] && !sel_ends_item(st, s, t, w);
}

static void sel_step(struct selstate *st, const char *s, const struct sqlkey_tok *t, const char *w)
{
    size_t d = st->depth;
    if (d >= SEL_LEVELS) {
        if (t->kind == SQLKEY_TOK_PUNCT && s[t->off] == '(')
            st->depth++;
        else if (t->kind == SQLKEY_TOK_PUNCT && s[t->off] == ')')
            st->depth--;
        goto out;
    }
    if (t->kind == SQLKEY_TOK_PUNCT && s[t->off] == ';') {
        memset(st->sel, 0, sizeof st->sel);
        memset(st->item, 0, sizeof st->item);
        st->depth = 0;
        goto out;
    }
    if (t->kind == SQLKEY_TOK_PUNCT && s[t->off] == '(') {
        if (st->sel[d])
            st->item[d] = true;
        st->depth++;
        if (st->depth < SEL_LEVELS)
            st->sel[st->depth] = st->item[st->depth] = false;
        goto out;
    }
    if (t->kind == SQLKEY_TOK_PUNCT && s[t->off] == ')') {
        if (d > 0)
            st->depth--;
        if (st->sel[st->depth])
            st->item[st->depth] = true;
        goto out;
    }
    if (strcmp(w, "select") == 0) {
        st->sel[d] = true;
        st->item[d] = false;
        goto out;
    }
    if (!st->sel[d])
        goto out;
    if (t->kind == SQLKEY_TOK_PUNCT && s[t->off] == ',') {
        st->item[d] = false;
    } else if (sel_ends_item(st, s, t, w)) {
        st->sel[d] = st->item[d] = false;
    } else if (!st->item[d] && (strcmp(w, "distinct") == 0 || strcmp(w, "all") == 0)) {
        /* not yet an item */
    } else {
        st->item[d] = true;
    }
out:
    snprintf(st->prev_word, sizeof st->prev_word, "%s", w);
}

/*
 * Emit the canonical form; returns false when it stopped at an uncertain token (the rest, from
 * that token, was copied verbatim). Gap = whitespace/comment run between two tokens: emitted as
 * one separator (a newline when it follows a string literal and contains a newline), or byte
 * for byte inside a select-list item (see above). Leading and trailing gaps vanish; ';' is a
 * token like any other (a trailing one is kept: whether the upstream accepts it is its call).
 */
static bool canonicalise(const char *s, size_t len, struct sink *k)
{
    size_t off = 0;
    bool any = false;      /* something emitted */
    bool gap = false;      /* gap since the last significant token */
    bool gap_nl = false;   /* ... containing a newline */
    bool prev_str = false; /* last significant token was a string literal */
    size_t gap_off = 0;    /* where the gap began */
    struct selstate st;
    memset(&st, 0, sizeof st);

    while (off < len) {
        struct sqlkey_tok t;
        sqlkey_lex(s, len, off, &t);
        off += t.len;
        if (tok_uncertain(s, len, &t)) {
            /* the rest verbatim: injective whichever way another lexer reads it */
            if (any && gap)
                sink_put(k, s + gap_off, t.off - gap_off);
            sink_put(k, s + t.off, len - t.off);
            return false;
        }
        if (t.kind == SQLKEY_TOK_SPACE || (t.kind == SQLKEY_TOK_COMMENT && !t.unterminated)) {
            if (!gap)
                gap_off = t.off;
            gap = true;
            if (!gap_nl) {
                if (s[t.off] == '-' && off < len) /* line comment ends at a newline */
                    gap_nl = true;
                else
                    gap_nl = memchr(s + t.off, '\n', t.len) || memchr(s + t.off, '\r', t.len);
            }
            continue;
        }
        char w[16];
        lower_word(s, &t, w, sizeof w);
        if (any && gap) {
            if (sel_gap_kept(&st, s, &t, w)) {
                sink_put(k, s + gap_off, t.off - gap_off);
            } else {
                char sep = (prev_str && gap_nl) ? '\n' : ' ';
                sink_put(k, &sep, 1);
            }
        }
        sink_put(k, s + t.off, t.len);
        sel_step(&st, s, &t, w);
        any = true;
        gap = gap_nl = false;
        prev_str = is_string_tok(&t);
    }
    return true;
}

size_t sqlkey_canonical(const char *sql, size_t len, char *out)
{
    struct sink k = {.out = out};
    canonicalise(sql, len, &k);
    out[k.n] = '\0';
    return k.n;
}

void sqlkey_hash(const char *sql, size_t len, char out[65])
{
    util_sha256_hex(sql, len, out);
}

static bool canon_hash(const char *sql, size_t len, unsigned char md[32])
{
    unsigned int mdlen = 0;
    struct sink sk = {0}, *k = &sk;
    k->md = EVP_MD_CTX_new();
    if (!k->md || EVP_DigestInit_ex(k->md, EVP_sha256(), NULL) != 1)
        abort();
    bool certain = canonicalise(sql, len, k);
    if (k->staged)
        EVP_DigestUpdate(k->md, k->stage, k->staged);
    EVP_DigestFinal_ex(k->md, md, &mdlen);
    EVP_MD_CTX_free(k->md);
    return certain;
}

void sqlkey_cache_key(const char *sql, size_t len, char out[65])
{
    unsigned char md[32];
    canon_hash(sql, len, md);
    util_hex(md, 32, out);
}

bool sqlkey_canon_digest(const char *sql, size_t len, uint8_t out[32])
{
    if (canon_hash(sql, len, out))
        return true;
    /* not certain: the exact bytes, in a domain of their own */
    unsigned int mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1)
        abort();
    EVP_DigestUpdate(c, "sqlkey-exact\0", 13);
    EVP_DigestUpdate(c, sql, len);
    EVP_DigestFinal_ex(c, out, &mdlen);
    EVP_MD_CTX_free(c);
    return false;
}

/* ---- token window ----------------------------------------------------------------------- */

/* Significant tokens only (no whitespace, no complete comments), with one token of lookahead. */
struct sigit {
    const char *s;
    size_t len, off;
    bool ambiguous; /* a token another lexer could read differently was seen */
};

static bool sig_next(struct sigit *it, struct sqlkey_tok *t)
{
    while (it->off < it->len) {
        sqlkey_lex(it->s, it->len, it->off, t);
        it->off += t->len;
        if (tok_uncertain(it->s, it->len, t))
            it->ambiguous = true;
        if (t->kind == SQLKEY_TOK_SPACE || (t->kind == SQLKEY_TOK_COMMENT && !t->unterminated))
            continue;
        return true;
    }
    return false;
}

/* Lower-cased copy of a word token into buf[cap] (empty when it does not fit or is no word). */
static const char *word(const char *s, const struct sqlkey_tok *t, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (t->kind != SQLKEY_TOK_WORD || t->len >= cap)
        return buf;
    for (size_t i = 0; i < t->len; i++) {
        char c = s[t->off + i];
        buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    buf[t->len] = '\0';
    return buf;
}

static bool is_punct(const char *s, const struct sqlkey_tok *t, char c)
{
    return t->kind == SQLKEY_TOK_PUNCT && s[t->off] == c;
}

static bool in_list(const char *w, const char *const *list)
{
    if (!w[0])
        return false;
    for (size_t i = 0; list[i]; i++)
        if (strcmp(w, list[i]) == 0)
            return true;
    return false;
}

/* Volatile or side-effecting functions that are only calls when followed by '('. */
static const char *const volatile_funcs[] = {"now",
                                             "clock_timestamp",
                                             "statement_timestamp",
                                             "transaction_timestamp",
                                             "timeofday",
                                             "random",
                                             "random_normal",
                                             "rand",
                                             "setseed",
                                             "uuid",
                                             "gen_random_uuid",
                                             "uuid_generate_v1",
                                             "uuid_generate_v1mc",
                                             "uuid_generate_v4",
                                             "uuidv4",
                                             "uuidv7",
                                             "newid",
                                             "nextval",
                                             "currval",
                                             "setval",
                                             "lastval",
                                             "pg_sleep",
                                             "pg_sleep_for",
                                             "pg_sleep_until",
                                             "txid_current",
                                             "txid_current_if_assigned",
                                             "pg_current_xact_id",
                                             "pg_current_xact_id_if_assigned",
                                             "pg_backend_pid",
                                             "inet_client_addr",
                                             "inet_client_port",
                                             "pg_postmaster_start_time",
                                             "pg_conf_load_time",
                                             "set_config",
                                             "pg_advisory_lock",
                                             "pg_advisory_xact_lock",
                                             "pg_try_advisory_lock",
                                             "pg_try_advisory_xact_lock",
                                             "pg_notify",
                                             "pg_cancel_backend",
                                             "pg_terminate_backend",
                                             "lo_import",
                                             "lo_export",
                                             "dblink",
                                             "dblink_exec",
                                             "pg_read_file",
                                             "pg_ls_dir",
                                             "today",
                                             "get_current_time",
                                             "get_current_timestamp",
                                             "current_localtime",
                                             "current_localtimestamp",
                                             "getdate",
                                             "sysdate",
                                             "systimestamp",
                                             "unix_timestamp",
                                             "utc_timestamp",
                                             "utc_date",
                                             "utc_time",
                                             "curdate",
                                             "curtime",
                                             "current_timestamp",
                                             "current_date",
                                             "current_time",
                                             "localtimestamp",
                                             "localtime",
                                             NULL};

/* SQL-standard value functions written without parentheses (also volatile with them). */
static const char *const volatile_keywords[] = {
    "current_timestamp", "current_date", "current_time", "localtimestamp", "localtime",
    "current_user",      "session_user", "current_role", "tablesample",    NULL};

static const char *const datetime_types[] = {"timestamp", "timestamptz", "date",     "time",
                                             "timetz",    "zone",        "interval", NULL};

static const char *const special_inputs[] = {"now", "today", "tomorrow", "yesterday", NULL};

/* Content of a plain '...' literal, trimmed and lower-cased, if short; else "". */
static const char *literal_word(const char *s, const struct sqlkey_tok *t, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (t->kind != SQLKEY_TOK_STRING || t->unterminated || s[t->off] != '\'' || t->len < 2)
        return buf;
    size_t a = t->off + 1, b = t->off + t->len - 1;
    while (a < b && is_space((unsigned char)s[a]))
        a++;
    while (b > a && is_space((unsigned char)s[b - 1]))
        b--;
    if (b - a >= cap)
        return buf;
    for (size_t i = a; i < b; i++) {
        char c = s[i];
        buf[i - a] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    buf[b - a] = '\0';
    return buf;
}

/* Quoted identifier equal to a volatile function name ("now"). */
static bool qident_volatile(const char *s, const struct sqlkey_tok *t)
{
    char buf[40];
    if (t->kind != SQLKEY_TOK_QIDENT || t->unterminated || s[t->off] != '"' || t->len < 3 ||
        t->len - 2 >= sizeof(buf))
        return false;
    memcpy(buf, s + t->off + 1, t->len - 2);
    buf[t->len - 2] = '\0';
    return in_list(buf, volatile_funcs) || in_list(buf, volatile_keywords);
}

/* ---- classification --------------------------------------------------------------------- */

const char *sqlkey_reason_str(enum sqlkey_reason r)
{
    switch (r) {
    case SQLKEY_OK:
        return "ok";
    case SQLKEY_EMPTY:
        return "empty";
    case SQLKEY_UNTERMINATED:
        return "unterminated";
    case SQLKEY_AMBIGUOUS:
        return "ambiguous_lexing";
    case SQLKEY_MULTI_STATEMENT:
        return "multi_statement";
    case SQLKEY_NOT_READ_ONLY:
        return "not_read_only";
    case SQLKEY_DATA_MODIFYING:
        return "data_modifying";
    case SQLKEY_SELECT_INTO:
        return "select_into";
    case SQLKEY_LOCKING_CLAUSE:
        return "locking_clause";
    case SQLKEY_EXPLAIN_ANALYZE:
        return "explain_analyze";
    case SQLKEY_VOLATILE:
        return "volatile";
    case SQLKEY_REASON__COUNT:
        break;
    }
    return "unknown";
}

bool sqlkey_reason_may_write(enum sqlkey_reason r)
{
    switch (r) {
    case SQLKEY_UNTERMINATED:
    case SQLKEY_AMBIGUOUS:
    case SQLKEY_MULTI_STATEMENT:
    case SQLKEY_NOT_READ_ONLY:
    case SQLKEY_DATA_MODIFYING:
    case SQLKEY_SELECT_INTO:
        return true;
    default:
        return false;
    }
}

static const char *const read_starts[] = {"select", "values", "table", "show", "with", NULL};

/* The state of sqlkey_is_cacheable's walk over the significant tokens. */
struct cscan {
    const char *sql;
    bool flags[SQLKEY_REASON__COUNT]; /* flags[r]: reason r applies */
    struct sqlkey_tok prev2, prev, cur, next;
    bool have_prev, have_prev2, have_next;
    bool first_word_seen, explain, explain_opts, after_semicolon, any;
    size_t explain_depth, depth;
    char w[40], pw[40], ppw[40], nw[40]; /* the words of cur, prev, prev2 and next */
};

static void cscan_words(struct cscan *c)
{
    word(c->sql, &c->cur, c->w, sizeof(c->w));
    word(c->sql, c->have_prev ? &c->prev : &c->cur, c->pw, sizeof(c->pw));
    if (!c->have_prev)
        c->pw[0] = '\0';
    word(c->sql, c->have_prev2 ? &c->prev2 : &c->cur, c->ppw, sizeof(c->ppw));
    if (!c->have_prev2)
        c->ppw[0] = '\0';
    if (c->have_next)
        word(c->sql, &c->next, c->nw, sizeof(c->nw));
    else
        c->nw[0] = '\0';
}

/* The first word (after any opening parentheses): the statement's kind. */
static void cscan_statement(struct cscan *c)
{
    if (is_punct(c->sql, &c->cur, '('))
        return;
    c->first_word_seen = true;
    if (strcmp(c->w, "explain") == 0) {
        c->explain = c->explain_opts = true;
        c->explain_depth = c->depth;
    } else if (!in_list(c->w, read_starts)) {
        c->flags[SQLKEY_NOT_READ_ONLY] = true;
    }
}

/* EXPLAIN [ ( options ) ] [ANALYZE] [VERBOSE] statement: the options, then the statement's
 * kind. */
static void cscan_explain(struct cscan *c)
{
    const char *w = c->w;
    if (strcmp(w, "analyze") == 0 || strcmp(w, "analyse") == 0)
        c->flags[SQLKEY_EXPLAIN_ANALYZE] = true;
    if (c->depth > c->explain_depth || is_punct(c->sql, &c->cur, ')'))
        return;
    if (strcmp(w, "verbose") == 0 || strcmp(w, "analyze") == 0 || strcmp(w, "analyse") == 0 ||
        is_punct(c->sql, &c->cur, '('))
        return;
    c->explain_opts = false;
    if (!in_list(w, read_starts) || strcmp(w, "show") == 0)
        c->flags[SQLKEY_NOT_READ_ONLY] = true;
}

/* A word of the statement: writes, locking clauses, SELECT INTO, volatile keywords and calls. */
static void cscan_word(struct cscan *c)
{
    const char *w = c->w, *pw = c->pw, *nw = c->nw;
    if (strcmp(w, "insert") == 0 || strcmp(w, "delete") == 0 || strcmp(w, "merge") == 0) {
        c->flags[SQLKEY_DATA_MODIFYING] = true;
    } else if (strcmp(w, "update") == 0) {
        if (strcmp(pw, "for") == 0 || strcmp(pw, "key") == 0)
            c->flags[SQLKEY_LOCKING_CLAUSE] = true;
        else
            c->flags[SQLKEY_DATA_MODIFYING] = true;
    } else if (strcmp(w, "for") == 0 && (strcmp(nw, "update") == 0 || strcmp(nw, "share") == 0 ||
                                         strcmp(nw, "no") == 0 || strcmp(nw, "key") == 0)) {
        c->flags[SQLKEY_LOCKING_CLAUSE] = true;
    } else if (strcmp(w, "into") == 0) {
        c->flags[SQLKEY_SELECT_INTO] = true;
    } else if (in_list(w, volatile_keywords)) {
        c->flags[SQLKEY_VOLATILE] = true;
    } else if (c->have_next && is_punct(c->sql, &c->next, '(') && in_list(w, volatile_funcs)) {
        c->flags[SQLKEY_VOLATILE] = true;
    }
}

/* A string literal of the statement: a special input ('now', 'today', ...) read as a date or
 * time is volatile. */
static void cscan_string(struct cscan *c)
{
    char lw[16];
    if (!in_list(literal_word(c->sql, &c->cur, lw, sizeof(lw)), special_inputs))
        return;
    bool cast = c->have_next && c->next.kind == SQLKEY_TOK_OPERATOR && c->next.len == 2 &&
                c->sql[c->next.off] == ':';
    if (cast || in_list(c->pw, datetime_types) ||
        (c->have_prev && is_punct(c->sql, &c->prev, '(') && strcmp(c->ppw, "cast") == 0))
        c->flags[SQLKEY_VOLATILE] = true;
}

/* One significant token. */
static void cscan_token(struct cscan *c)
{
    if (c->cur.unterminated)
        c->flags[SQLKEY_UNTERMINATED] = true;
    if (c->after_semicolon)
        c->flags[SQLKEY_MULTI_STATEMENT] = true;
    if (is_punct(c->sql, &c->cur, ';')) {
        c->after_semicolon = true;
        return;
    }
    c->any = true;
    if (is_punct(c->sql, &c->cur, '('))
        c->depth++;
    else if (is_punct(c->sql, &c->cur, ')') && c->depth > 0)
        c->depth--;
    if (!c->first_word_seen)
        cscan_statement(c);
    else if (c->explain_opts)
        cscan_explain(c);
    else if (c->cur.kind == SQLKEY_TOK_WORD)
        cscan_word(c);
    else if (c->cur.kind == SQLKEY_TOK_QIDENT) {
        if (c->have_next && is_punct(c->sql, &c->next, '(') && qident_volatile(c->sql, &c->cur))
            c->flags[SQLKEY_VOLATILE] = true;
    } else if (c->cur.kind == SQLKEY_TOK_STRING)
        cscan_string(c);
}

/* The verdict of a finished walk: the most severe reason (lowest enum after OK). */
static enum sqlkey_reason cscan_verdict(struct cscan *c, bool ambiguous)
{
    if (ambiguous)
        c->flags[SQLKEY_AMBIGUOUS] = true;
    if (!c->any)
        return c->flags[SQLKEY_UNTERMINATED] ? SQLKEY_UNTERMINATED
               : c->flags[SQLKEY_AMBIGUOUS]  ? SQLKEY_AMBIGUOUS
                                             : SQLKEY_EMPTY;
    for (int i = 1; i < SQLKEY_REASON__COUNT; i++)
        if (c->flags[i])
            return (enum sqlkey_reason)i;
    if (c->explain && c->explain_opts)
        return SQLKEY_NOT_READ_ONLY; /* EXPLAIN without a statement */
    return SQLKEY_OK;
}

bool sqlkey_is_cacheable(const char *sql, size_t len, enum sqlkey_reason *reason)
{
    struct cscan c;
    memset(&c, 0, sizeof c);
    c.sql = sql;
    struct sigit it = {sql, len, 0, false};
    c.have_next = sig_next(&it, &c.next);
    while (c.have_next) {
        c.cur = c.next;
        c.have_next = sig_next(&it, &c.next);
        cscan_words(&c);
        cscan_token(&c);
        c.prev2 = c.prev;
        c.have_prev2 = c.have_prev;
        c.prev = c.cur;
        c.have_prev = true;
    }
    enum sqlkey_reason r = cscan_verdict(&c, it.ambiguous);
    if (reason)
        *reason = r;
    return r == SQLKEY_OK;
}

/* ---- table references ------------------------------------------------------------------- */

#define MAX_REFS 1024
#define MAX_CTES 256

/* A name part: lower-cased when unquoted, dequoted ("" -> ") when quoted. malloc'd. */
static char *name_part(const char *s, const struct sqlkey_tok *t)
{
    char *p;
    if (t->kind == SQLKEY_TOK_QIDENT) {
        size_t a = t->off, n = t->len;
        if (s[a] != '"') { /* U&"..." keeps its escapes, lower-case nothing */
            p = malloc(n + 1);
            if (p) {
                memcpy(p, s + a, n);
                p[n] = '\0';
            }
            return p;
        }
        size_t end = t->unterminated ? a + n : a + n - 1;
        p = malloc(n + 1);
        if (!p)
            return NULL;
        size_t k = 0;
        for (size_t i = a + 1; i < end; i++) {
            p[k++] = s[i];
            if (s[i] == '"' && i + 1 < end && s[i + 1] == '"')
                i++;
        }
        p[k] = '\0';
        return p;
    }
    p = malloc(t->len + 1);
    if (!p)
        return NULL;
    for (size_t i = 0; i < t->len; i++) {
        char c = s[t->off + i];
        p[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    p[t->len] = '\0';
    return p;
}

static bool is_name_tok(const struct sqlkey_tok *t)
{
    return t->kind == SQLKEY_TOK_WORD || t->kind == SQLKEY_TOK_QIDENT;
}

/* Hash of the three parts, for deduplication without a quadratic scan. */
static uint32_t parts_hash(char *parts[3])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        h = (h ^ 0xff) * 16777619u; /* part separator */
    }
    return h;
}

#define REFS_HT 4096 /* power of two, > 2 * MAX_REFS */

static int refs_add(struct sqlkey_refs *r, uint16_t *ht, char *parts[3])
{
    uint32_t slot = parts_hash(parts) & (REFS_HT - 1);
    for (; ht[slot]; slot = (slot + 1) & (REFS_HT - 1)) {
        const struct sqlkey_table *e = &r->v[ht[slot] - 1];
        if (strcmp(e->conn, parts[0]) == 0 && strcmp(e->schema, parts[1]) == 0 &&
            strcmp(e->table, parts[2]) == 0) {
            free(parts[0]);
            free(parts[1]);
            free(parts[2]);
            return 0;
        }
    }
    if (r->n >= MAX_REFS) {
        r->unknown = true; /* too many to tag precisely: treat as unknown */
        free(parts[0]);
        free(parts[1]);
        free(parts[2]);
        return 0;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        struct sqlkey_table *v = realloc(r->v, cap * sizeof(*v));
        if (!v)
            goto oom;
        r->v = v;
        r->cap = cap;
    }
    size_t a = strlen(parts[0]), b = strlen(parts[1]), c = strlen(parts[2]);
    char *full = malloc(a + b + c + 3);
    if (!full)
        goto oom;
    snprintf(full, a + b + c + 3, "%s.%s.%s", parts[0], parts[1], parts[2]);
    r->v[r->n++] = (struct sqlkey_table){parts[0], parts[1], parts[2], full};
    ht[slot] = (uint16_t)r->n;
    return 0;
oom:
    free(parts[0]);
    free(parts[1]);
    free(parts[2]);
    return -1;
}

void sqlkey_refs_free(struct sqlkey_refs *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].conn);
        free(r->v[i].schema);
        free(r->v[i].table);
        free(r->v[i].full);
    }
    free(r->v);
    memset(r, 0, sizeof(*r));
}

/* Per parenthesis level state. */
struct level {
    bool in_from;     /* inside a FROM list at this level: ',' starts another table item */
    bool func_from;   /* paren of extract/substring/trim/overlay/position: FROM is no table */
    bool table_cand;  /* paren opened where a table was expected: first name may be a table */
    bool cte_pending; /* a CTE body closes back to this level: ',' introduces another CTE */
};

/* CTE declaration state machine */
enum cte_state { CTE_NONE, CTE_NAME, CTE_AFTER_NAME, CTE_COLS, CTE_AS };

/* The state of sqlkey_table_refs's walk over the significant tokens. */
struct refs_ctx {
    uint16_t ht[REFS_HT]; /* index + 1 into r->v, 0 = empty */
    const char *s;
    struct sqlkey_refs *r;
    char **ctes;
    size_t nctes;
    bool cte_overflow;
    struct level *lv; /* per parenthesis level, lv[0..depth] */
    size_t lcap, depth;
    struct sigit it;
    struct sqlkey_tok cur, next, prev, prev2;
    bool have_next, have_prev, have_prev2;
    bool expect_table; /* a table name is expected next */
    enum cte_state cs;
    size_t cte_cols_depth;
    char *cte_cand;                      /* the name of the CTE being declared */
    char w[40], pw[40], nw[40], ppw[40]; /* the words of cur, prev, next and prev2 */
};

static bool is_cte(struct refs_ctx *c, const char *name)
{
    for (size_t i = 0; i < c->nctes; i++)
        if (strcmp(c->ctes[i], name) == 0)
            return true;
    return false;
}

static const char *const from_func_parens[] = {"extract", "substring", "trim",
                                               "overlay", "position",  NULL};
static const char *const from_enders[] = {
    "where",  "group", "having", "order",     "limit",   "offset", "window", "union", "intersect",
    "except", "fetch", "for",    "returning", "qualify", "select", "values", "set",   NULL};
static const char *const table_skip[] = {"lateral", "only", "rows", NULL};
static const char *const subquery_starts[] = {"select", "values", "with", "table", NULL};

/* What a step of the walk tells it. */
enum rstep {
    R_NEXT,   /* not decided: the next step looks at the token */
    R_SHIFT,  /* the token is done */
    R_DOTTED, /* scan the token as a (possibly dotted) name */
    R_DONE,   /* the token (and the chain after it) is done and shifted */
    R_OOM,
};

static void rs_words(struct refs_ctx *c)
{
    word(c->s, &c->cur, c->w, sizeof(c->w));
    if (c->have_next)
        word(c->s, &c->next, c->nw, sizeof(c->nw));
    else
        c->nw[0] = '\0';
    if (c->have_prev)
        word(c->s, &c->prev, c->pw, sizeof(c->pw));
    else
        c->pw[0] = '\0';
    if (c->have_prev2)
        word(c->s, &c->prev2, c->ppw, sizeof(c->ppw));
    else
        c->ppw[0] = '\0';
}

static void rs_shift(struct refs_ctx *c, const struct sqlkey_tok *last)
{
    c->prev2 = c->prev;
    c->have_prev2 = c->have_prev;
    c->prev = *last;
    c->have_prev = true;
}

/* AS ( of a CTE: its name is a CTE from now on. */
static enum rstep rs_cte_body(struct refs_ctx *c)
{
    if (c->nctes < MAX_CTES) {
        char **n = realloc(c->ctes, (c->nctes + 1) * sizeof(*n));
        if (!n)
            return R_OOM;
        c->ctes = n;
        c->ctes[c->nctes++] = c->cte_cand;
    } else {
        free(c->cte_cand);
        c->cte_overflow = true;
        c->r->unknown = true;
    }
    c->cte_cand = NULL;
    c->lv[c->depth].cte_pending = true;
    return R_NEXT;
}

/* CTE declarations: WITH [RECURSIVE] name [(cols)] AS [NOT] [MATERIALIZED] ( */
static enum rstep rs_cte(struct refs_ctx *c)
{
    const struct sqlkey_tok *cur = &c->cur;
    switch (c->cs) {
    case CTE_NAME:
        if (strcmp(c->w, "recursive") == 0 || is_punct(c->s, cur, ','))
            return R_SHIFT;
        if (is_name_tok(cur)) {
            free(c->cte_cand);
            c->cte_cand = name_part(c->s, cur);
            if (!c->cte_cand)
                return R_OOM;
            c->cs = CTE_AFTER_NAME;
            return R_DOTTED; /* still scan it as a possible dotted name */
        }
        c->cs = CTE_NONE;
        break;
    case CTE_AFTER_NAME:
        if (strcmp(c->w, "as") == 0) {
            c->cs = CTE_AS;
            return R_SHIFT;
        }
        c->cs = is_punct(c->s, cur, '(') ? CTE_COLS : CTE_NONE;
        c->cte_cols_depth = c->depth; /* the paren is still pushed below */
        break;
    case CTE_COLS:
        if (is_punct(c->s, cur, ')') && c->depth == c->cte_cols_depth + 1) {
            c->cs = CTE_AFTER_NAME;
            c->depth--;
            return R_SHIFT;
        }
        break;
    case CTE_AS:
        if (strcmp(c->w, "not") == 0 || strcmp(c->w, "materialized") == 0)
            return R_SHIFT;
        if (is_punct(c->s, cur, '(') && c->cte_cand && rs_cte_body(c) == R_OOM)
            return R_OOM;
        c->cs = CTE_NONE;
        break;
    case CTE_NONE:
        break;
    }
    if (c->cs == CTE_NONE && strcmp(c->w, "with") == 0 && c->have_next && is_name_tok(&c->next) &&
        strcmp(c->nw, "time") != 0 && strcmp(c->nw, "ordinality") != 0 &&
        strcmp(c->nw, "ties") != 0) {
        c->cs = CTE_NAME;
        return R_SHIFT;
    }
    return R_NEXT;
}

/* '(' opens a level (a table may start it when one was expected). */
static enum rstep rs_open(struct refs_ctx *c)
{
    if (c->depth + 1 >= c->lcap) {
        struct level *n = realloc(c->lv, c->lcap * 2 * sizeof(*n));
        if (!n)
            return R_OOM;
        c->lv = n;
        memset(c->lv + c->lcap, 0, c->lcap * sizeof(*n));
        c->lcap *= 2;
    }
    struct level *lv = c->lv;
    size_t d = ++c->depth;
    lv[d] = (struct level){0};
    lv[d].func_from = in_list(c->pw, from_func_parens);
    lv[d].table_cand = c->expect_table || lv[d - 1].table_cand;
    lv[d - 1].table_cand = false;
    c->expect_table = false;
    return R_SHIFT;
}

/* Parentheses, and the first name of a level opened where a table was expected. */
static enum rstep rs_paren(struct refs_ctx *c)
{
    if (is_punct(c->s, &c->cur, '('))
        return rs_open(c);
    struct level *lv = c->lv;
    if (is_punct(c->s, &c->cur, ')')) {
        c->expect_table = false;
        if (c->depth > 0)
            c->depth--;
        if (lv[c->depth].cte_pending) {
            lv[c->depth].cte_pending = false;
            if (c->have_next && is_punct(c->s, &c->next, ','))
                c->cs = CTE_NAME;
        }
        return R_SHIFT;
    }
    if (lv[c->depth].table_cand) {
        lv[c->depth].table_cand = false;
        if (in_list(c->w, subquery_starts)) {
            /* a subquery: its own FROM will be seen */
        } else if (is_name_tok(&c->cur)) {
            lv[c->depth].in_from = true;
            c->expect_table = true;
        }
    }
    if (c->cs == CTE_NAME && is_punct(c->s, &c->cur, ','))
        return R_SHIFT;
    return R_NEXT;
}

/* FROM / JOIN / TABLE / INTO / UPDATE positions, and ',' in a FROM list. */
static enum rstep rs_position(struct refs_ctx *c)
{
    const char *w = c->w, *pw = c->pw, *ppw = c->ppw;
    struct level *lv = &c->lv[c->depth];
    if (c->cur.kind == SQLKEY_TOK_WORD) {
        if (strcmp(w, "from") == 0) {
            bool distinct_from =
                strcmp(pw, "distinct") == 0 && (strcmp(ppw, "is") == 0 || strcmp(ppw, "not") == 0);
            bool rows_from = strcmp(pw, "rows") == 0;
            if (!lv->func_from && !distinct_from && !rows_from) {
                lv->in_from = true;
                c->expect_table = true;
                return R_SHIFT;
            }
        } else if (strcmp(w, "join") == 0 || strcmp(w, "into") == 0 || strcmp(w, "update") == 0 ||
                   strcmp(w, "truncate") == 0 || strcmp(w, "copy") == 0) {
            c->expect_table =
                strcmp(w, "update") != 0 ||
                (strcmp(pw, "for") != 0 && strcmp(pw, "key") != 0 && strcmp(pw, "do") != 0);
            return R_SHIFT;
        } else if (strcmp(w, "table") == 0) {
            c->expect_table = true;
            return R_SHIFT;
        } else if (in_list(w, from_enders)) {
            lv->in_from = false;
            c->expect_table = false;
        }
    }
    if (is_punct(c->s, &c->cur, ',') && lv->in_from) {
        c->expect_table = true;
        return R_SHIFT;
    }
    return R_NEXT;
}

/* Consume a chain a.b.c[.d...] starting at cur: up to three parts in parts[], *np the count,
 * *last its last token; 1 when a call follows it. */
static int rs_chain(struct refs_ctx *c, struct sqlkey_tok parts[3], size_t *np,
                    struct sqlkey_tok *last)
{
    *np = 1;
    parts[0] = *last = c->cur;
    while (c->have_next && is_punct(c->s, &c->next, '.')) {
        c->have_next = sig_next(&c->it, &c->next);
        if (!c->have_next || !is_name_tok(&c->next))
            break;
        if (*np < 3)
            parts[*np] = c->next;
        (*np)++;
        *last = c->next;
        c->have_next = sig_next(&c->it, &c->next);
    }
    return c->have_next && is_punct(c->s, &c->next, '(');
}

/* A name of np parts: three (or more) is a table reference; a one- or two-part name in a
 * table position (not a call) is one the cache cannot place, unless it names a CTE. */
static enum rstep rs_record(struct refs_ctx *c, const struct sqlkey_tok parts[3], size_t np,
                            bool table_pos, bool func)
{
    if (np >= 3) {
        char *p[3] = {name_part(c->s, &parts[0]), name_part(c->s, &parts[1]),
                      name_part(c->s, &parts[2])};
        if (!p[0] || !p[1] || !p[2]) {
            free(p[0]);
            free(p[1]);
            free(p[2]);
            return R_OOM;
        }
        return refs_add(c->r, c->ht, p) < 0 ? R_OOM : R_DONE;
    }
    if (!table_pos || func)
        return R_DONE;
    if (np == 2) {
        c->r->unknown = true;
        return R_DONE;
    }
    char *n = name_part(c->s, &parts[0]);
    if (!n)
        return R_OOM;
    if (!is_cte(c, n))
        c->r->unknown = true;
    free(n);
    return R_DONE;
}

/* Dotted names: a.b.c[.d...]; then anything else where a table was expected. */
static enum rstep rs_dotted(struct refs_ctx *c)
{
    bool skip = c->cur.kind == SQLKEY_TOK_WORD && in_list(c->w, table_skip);
    if (is_name_tok(&c->cur) && !(c->have_prev && is_punct(c->s, &c->prev, '.'))) {
        bool table_pos = c->expect_table;
        if (c->expect_table && skip && !(c->have_next && is_punct(c->s, &c->next, '.')))
            return R_SHIFT; /* LATERAL, ONLY, ROWS: the table (or function) follows */
        c->expect_table = false;
        struct sqlkey_tok parts[3], last;
        size_t np;
        bool func = rs_chain(c, parts, &np, &last);
        enum rstep st = rs_record(c, parts, np, table_pos, func);
        if (st != R_OOM)
            rs_shift(c, &last);
        return st;
    }
    if (c->expect_table && !skip) {
        /* something other than a name or '(' where a table was expected */
        if (!is_punct(c->s, &c->cur, ','))
            c->r->unknown = true;
        c->expect_table = false;
    }
    return R_SHIFT;
}

static enum rstep rs_token(struct refs_ctx *c)
{
    enum rstep st = rs_cte(c);
    if (st == R_NEXT)
        st = rs_paren(c);
    if (st == R_NEXT)
        st = rs_position(c);
    if (st == R_NEXT || st == R_DOTTED)
        st = rs_dotted(c);
    return st;
}

int sqlkey_table_refs(const char *s, size_t len, struct sqlkey_refs *r)
{
    memset(r, 0, sizeof(*r));
    struct refs_ctx c = {.s = s, .r = r, .lcap = 16, .it = {s, len, 0, false}};
    c.lv = calloc(c.lcap, sizeof(*c.lv));
    if (!c.lv) {
        r->unknown = true;
        return -1;
    }
    int rc = 0;
    c.have_next = sig_next(&c.it, &c.next);
    while (c.have_next) {
        c.cur = c.next;
        c.have_next = sig_next(&c.it, &c.next);
        rs_words(&c);
        enum rstep st = rs_token(&c);
        if (st == R_OOM) {
            rc = -1;
            r->unknown = true;
            break;
        }
        if (st != R_DONE)
            rs_shift(&c, &c.cur);
    }
    if (c.expect_table)
        r->unknown = true; /* truncated right where a table was expected */
    if (c.it.ambiguous)
        r->unknown = true; /* another lexer could see other tables */
    free(c.cte_cand);
    for (size_t i = 0; i < c.nctes; i++)
        free(c.ctes[i]);
    free(c.ctes);
    free(c.lv);
    return rc;
}

/* ---- POST /v1/query body ---------------------------------------------------------------- */

static int body_err(struct sqlkey_query_req *req, char *err, size_t errlen, const char *msg)
{
    free(req->sql);
    memset(req, 0, sizeof(*req));
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return -1;
}

int sqlkey_parse_query_body(const char *body, size_t len, struct sqlkey_query_req *req, char *err,
                            size_t errlen)
{
    memset(req, 0, sizeof(*req));
    json_error_t jerr;
    json_t *root = json_loadb(body ? body : "", body ? len : 0,
                              JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
    int rc = 0;
    if (!root)
        return body_err(req, err, errlen, "invalid JSON body");
    if (!json_is_object(root)) {
        json_decref(root);
        return body_err(req, err, errlen, "body must be a JSON object");
    }
    json_t *sql = json_object_get(root, "sql");
    json_t *async = json_object_get(root, "async");
    json_t *after = json_object_get(root, "async_after_ms");
    if (!json_is_string(sql)) {
        rc = body_err(req, err, errlen, "\"sql\" must be a string");
        goto out;
    }
    if (async && !json_is_boolean(async) && !json_is_null(async)) {
        rc = body_err(req, err, errlen, "\"async\" must be a boolean");
        goto out;
    }
    if (after && !json_is_integer(after) && !json_is_null(after)) {
        rc = body_err(req, err, errlen, "\"async_after_ms\" must be an integer or null");
        goto out;
    }
    req->sql_len = json_string_length(sql);
    req->sql = malloc(req->sql_len + 1);
    if (!req->sql) {
        rc = body_err(req, err, errlen, "out of memory");
        goto out;
    }
    memcpy(req->sql, json_string_value(sql), req->sql_len);
    req->sql[req->sql_len] = '\0';
    req->async = json_is_true(async);
    if (json_is_integer(after)) {
        req->has_async_after_ms = true;
        req->async_after_ms = (int64_t)json_integer_value(after);
    }
out:
    json_decref(root);
    return rc;
}

void sqlkey_query_req_free(struct sqlkey_query_req *req)
{
    if (!req)
        return;
    free(req->sql);
    memset(req, 0, sizeof(*req));
}
