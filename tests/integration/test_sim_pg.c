/*
 * test_sim_pg: hotdata-sim answers the PostgreSQL SQL a Hotdata user writes, with the right
 * rows. The simulator seeds its demo data from a fixed pseudo-random sequence; this test
 * regenerates the same data in C (the generator is restated here, not shared) and computes
 * every expected answer itself, so a wrong engine, a wrong type mapping or a wrong
 * rewrite of the three-part names fails the table. Also: PostgreSQL's errors as the API's
 * 400, writes refused, one statement per query, workspaces kept apart, the statement timeout.
 */
#include <math.h>
#include <time.h>

#include "sim_core_it.h"

#define NC 1000
#define NP 200
#define NO 2000

struct cust {
    char name[64], email[96];
    const char *first, *country, *segment;
    int64_t created;
    bool active;
};
struct prod {
    char sku[32];
    const char *cat;
    double price;
};
struct ord {
    long cust, prod, qty;
    double amount;
    const char *status;
    int64_t ts;
    bool note;
};

static struct cust C[NC + 1];
static struct prod P[NP + 1];
static struct ord O[NO + 1];

static uint64_t prng_s;
static uint64_t prng(void)
{
    uint64_t z = (prng_s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static const char *const FIRST[] = {"Ada",     "Grace",   "Alan",  "Edsger",    "Barbara",
                                    "Linus",   "Ken",     "Donna", "Radia",     "Margaret",
                                    "Niklaus", "Frances", "John",  "Katherine", "Leslie"};
static const char *const LAST[] = {"Lovelace", "Hopper",   "Turing",     "Dijkstra", "Liskov",
                                   "Torvalds", "Thompson", "Strickland", "Perlman",  "Hamilton",
                                   "Wirth",    "Allen",    "Backus",     "Johnson",  "Lamport"};
static const char *const COUNTRY[] = {"US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "NL", "SE"};
static const char *const SEGMENT[] = {"enterprise", "smb", "consumer"};
static const char *const CATEGORY[] = {"books", "electronics", "garden",
                                       "toys",  "grocery",     "sports"};
static const char *const STATUS[] = {"pending", "paid", "shipped", "delivered", "cancelled"};

static int64_t seed_ts(uint64_t r)
{
    return 1735689600 + (int64_t)(r % (365ULL * 86400ULL));
}

static void generate(void)
{
    prng_s = 20260101;
    for (long i = 1; i <= NC; i++) {
        uint64_t r = prng();
        struct cust *c = &C[i];
        c->first = FIRST[r % 15];
        const char *l = LAST[(r >> 8) % 15];
        snprintf(c->name, sizeof c->name, "%s %s", c->first, l);
        snprintf(c->email, sizeof c->email, "%c.%s%ld@example.com", c->first[0] | 0x20, l, i);
        for (char *p = c->email; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p | 0x20);
        c->country = COUNTRY[(r >> 16) % 10];
        c->segment = (r >> 24) % 8 == 0 ? NULL : SEGMENT[(r >> 28) % 3];
        c->created = seed_ts(prng());
        c->active = (r >> 36) % 10 != 0;
    }
    for (long i = 1; i <= NP; i++) {
        uint64_t r = prng();
        P[i].cat = CATEGORY[r % 6];
        snprintf(P[i].sku, sizeof P[i].sku, "SKU-%05ld", i);
        P[i].price = 5.0 + (double)((i * 37) % 200) + 0.99;
    }
    for (long i = 1; i <= NO; i++) {
        uint64_t r = prng();
        struct ord *o = &O[i];
        o->cust = 1 + (long)(r % NC);
        o->prod = 1 + (long)((r >> 16) % NP);
        o->qty = 1 + (long)((r >> 32) % 5);
        double unit = 5.0 + (double)((o->prod * 37) % 200) + 0.99;
        o->amount = (double)((long)(unit * (double)o->qty * 100.0 + 0.5)) / 100.0;
        o->status = STATUS[(r >> 40) % 5];
        o->ts = seed_ts(prng());
        o->note = (r >> 48) % 10 == 0;
    }
}

/* ---- expected answers ---- */

static json_t *row1(json_t *v)
{
    return json_pack("[[o]]", v);
}

static json_t *count_rows(long (*pred)(long i), long n)
{
    long k = 0;
    for (long i = 1; i <= n; i++)
        k += pred(i);
    return row1(json_integer(k));
}

static void rfc3339(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int month_of(int64_t t)
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    return tm.tm_mon + 1;
}

static json_t *e_month_counts(void)
{
    long n[13] = {0};
    for (long i = 1; i <= NO; i++)
        n[month_of(O[i].ts)]++;
    json_t *rows = json_array();
    for (int m = 1; m <= 12; m++) {
        if (!n[m])
            continue;
        char ts[40];
        snprintf(ts, sizeof ts, "2025-%02d-01T00:00:00Z", m);
        json_array_append_new(rows, json_pack("[s,I]", ts, (json_int_t)n[m]));
    }
    return rows;
}

static json_t *e_zero(void)
{
    return row1(json_integer(0));
}

static long p_last30(long i)
{
    return O[i].ts >= 1767139200 - 30 * 86400;
}
static json_t *e_last30(void)
{
    return count_rows(p_last30, NO);
}

static double round2(double v)
{
    return round(v * 100.0) / 100.0;
}

static json_t *e_paid_sum(void)
{
    double s = 0;
    for (long i = 1; i <= NO; i++)
        if (!strcmp(O[i].status, "paid"))
            s += O[i].amount;
    return row1(json_real(round2(s)));
}

static long p_ada(long i)
{
    return !strcmp(C[i].first, "Ada");
}
static json_t *e_ada(void)
{
    return count_rows(p_ada, NC);
}

/* order ids by amount desc, id asc */
static long ord_by_amount[NO];
static int cmp_amount(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    if (O[x].amount != O[y].amount)
        return O[x].amount < O[y].amount ? 1 : -1;
    return x < y ? -1 : 1;
}
static void sort_by_amount(void)
{
    for (long i = 0; i < NO; i++)
        ord_by_amount[i] = i + 1;
    qsort(ord_by_amount, NO, sizeof(long), cmp_amount);
}

static json_t *e_top3(void)
{
    json_t *rows = json_array();
    for (int k = 0; k < 3; k++) {
        long id = ord_by_amount[k];
        json_array_append_new(
            rows, json_pack("[I,f,I]", (json_int_t)id, O[id].amount, (json_int_t)(k + 1)));
    }
    return rows;
}

static json_t *e_distinct_on(void)
{
    /* statuses in alphabetical order, top order by amount desc, id */
    static const char *const sorted[] = {"cancelled", "delivered", "paid", "pending", "shipped"};
    json_t *rows = json_array();
    for (int s = 0; s < 5; s++) {
        for (long k = 0; k < NO; k++) {
            long id = ord_by_amount[k];
            if (strcmp(O[id].status, sorted[s]) == 0) {
                json_array_append_new(
                    rows, json_pack("[s,I,f]", sorted[s], (json_int_t)id, O[id].amount));
                break;
            }
        }
    }
    return rows;
}

static json_t *e_running(void)
{
    json_t *rows = json_array();
    long s = 0;
    for (long i = 1; i <= 5; i++) {
        s += O[i].qty;
        json_array_append_new(rows, json_pack("[I,I]", (json_int_t)i, (json_int_t)s));
    }
    return rows;
}

static json_t *e_lag(void)
{
    return json_pack("[[I,n],[I,f],[I,f]]", (json_int_t)1, (json_int_t)2, O[2].amount - O[1].amount,
                     (json_int_t)3, O[3].amount - O[2].amount);
}

static json_t *e_big_customers(void)
{
    static double tot[NC + 1];
    memset(tot, 0, sizeof tot);
    for (long i = 1; i <= NO; i++)
        tot[O[i].cust] += O[i].amount;
    long k = 0;
    for (long c = 1; c <= NC; c++)
        k += tot[c] > 1000;
    return row1(json_integer(k));
}

static json_t *e_55(void)
{
    return row1(json_integer(55));
}

static json_t *e_info_columns(void)
{
    return json_pack("[[s,s],[s,s],[s,s],[s,s],[s,s],[s,s],[s,s],[s,s],[s,s]]", "id", "bigint",
                     "customer_id", "bigint", "product_id", "bigint", "quantity", "bigint",
                     "amount", "double precision", "status", "text", "ordered_at",
                     "timestamp with time zone", "note", "text", "synced_at",
                     "timestamp with time zone");
}

static json_t *e_info_tables(void)
{
    return json_pack("[[s],[s],[s]]", "customers", "orders", "products");
}

static json_t *e_json_literal(void)
{
    return row1(json_string("2"));
}

static json_t *e_status1(void)
{
    return row1(json_string(O[1].status));
}

static json_t *e_200(void)
{
    return row1(json_integer(NP));
}

static json_t *e_string_agg(void)
{
    static const char *const sorted[] = {"books",   "electronics", "garden",
                                         "grocery", "sports",      "toys"};
    char buf[256] = "";
    for (int k = 0; k < 6; k++) {
        bool seen = false;
        for (long i = 1; i <= NP && !seen; i++)
            seen = strcmp(P[i].cat, sorted[k]) == 0;
        if (!seen)
            continue;
        if (buf[0])
            strcat(buf, ",");
        strcat(buf, sorted[k]);
    }
    return row1(json_string(buf));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static json_t *e_median_price(void)
{
    double v[NP];
    for (long i = 1; i <= NP; i++)
        v[i - 1] = P[i].price;
    qsort(v, NP, sizeof(double), cmp_double);
    return row1(json_real((v[NP / 2 - 1] + v[NP / 2]) / 2.0));
}

static json_t *e_100(void)
{
    return row1(json_integer(100));
}

static json_t *e_dates(void)
{
    return json_pack("[[s],[s],[s]]", "2025-01-01", "2025-01-02", "2025-01-03");
}

static long p_no_segment(long i)
{
    return C[i].segment == NULL;
}
static json_t *e_no_segment(void)
{
    return count_rows(p_no_segment, NC);
}

static long p_qty3(long i)
{
    return O[i].qty >= 3;
}
static json_t *e_qty3(void)
{
    return count_rows(p_qty3, NO);
}

static json_t *e_filter(void)
{
    long a = 0, b = 0;
    for (long i = 1; i <= NO; i++) {
        a += !strcmp(O[i].status, "cancelled");
        b += O[i].note;
    }
    return json_pack("[[I,I]]", (json_int_t)a, (json_int_t)b);
}

static json_t *e_active(void)
{
    long t = 0;
    for (long i = 1; i <= NC; i++)
        t += C[i].active;
    return json_pack("[[b,I],[b,I]]", 0, (json_int_t)(NC - t), 1, (json_int_t)t);
}

static long p_active_de(long i)
{
    return C[i].active && !strcmp(C[i].country, "DE");
}
static json_t *e_active_de(void)
{
    return count_rows(p_active_de, NC);
}

static json_t *e_q1_months(void)
{
    long n[4] = {0};
    for (long i = 1; i <= NO; i++)
        if (month_of(O[i].ts) <= 3)
            n[month_of(O[i].ts)]++;
    return json_pack("[[i,I],[i,I],[i,I]]", 1, (json_int_t)n[1], 2, (json_int_t)n[2], 3,
                     (json_int_t)n[3]);
}

static json_t *e_to_char1(void)
{
    struct tm tm;
    time_t t = (time_t)O[1].ts;
    gmtime_r(&t, &tm);
    char buf[40];
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
    return row1(json_string(buf));
}

static json_t *e_top_countries(void)
{
    long n[10] = {0};
    for (long i = 1; i <= NO; i++)
        for (int k = 0; k < 10; k++)
            if (!strcmp(C[O[i].cust].country, COUNTRY[k]))
                n[k]++;
    json_t *rows = json_array();
    bool used[10] = {0};
    for (int r = 0; r < 3; r++) {
        int best = -1;
        for (int k = 0; k < 10; k++) {
            if (used[k])
                continue;
            if (best < 0 || n[k] > n[best] ||
                (n[k] == n[best] && strcmp(COUNTRY[k], COUNTRY[best]) < 0))
                best = k;
        }
        used[best] = true;
        json_array_append_new(rows, json_pack("[s,I]", COUNTRY[best], (json_int_t)n[best]));
    }
    return rows;
}

static json_t *e_never_ordered(void)
{
    bool ordered[NP + 1] = {0};
    for (long i = 1; i <= NO; i++)
        ordered[O[i].prod] = true;
    long k = 0;
    for (long p = 1; p <= NP; p++)
        k += !ordered[p];
    return row1(json_integer(k));
}

static json_t *e_having6(void)
{
    static long n[NC + 1];
    memset(n, 0, sizeof n);
    for (long i = 1; i <= NO; i++)
        n[O[i].cust]++;
    long k = 0;
    for (long c = 1; c <= NC; c++)
        k += n[c] >= 6;
    return row1(json_integer(k));
}

static long p_enterprise(long i)
{
    return C[O[i].cust].segment && !strcmp(C[O[i].cust].segment, "enterprise");
}
static json_t *e_enterprise(void)
{
    return count_rows(p_enterprise, NO);
}

static json_t *e_exists_cancelled(void)
{
    bool has[NC + 1] = {0};
    for (long i = 1; i <= NO; i++)
        if (!strcmp(O[i].status, "cancelled"))
            has[O[i].cust] = true;
    long k = 0;
    for (long c = 1; c <= NC; c++)
        k += has[c];
    return row1(json_integer(k));
}

static json_t *e_intersect(void)
{
    bool paid[NC + 1] = {0}, canc[NC + 1] = {0};
    for (long i = 1; i <= NO; i++) {
        if (!strcmp(O[i].status, "paid"))
            paid[O[i].cust] = true;
        if (!strcmp(O[i].status, "cancelled"))
            canc[O[i].cust] = true;
    }
    long k = 0;
    for (long c = 1; c <= NC; c++)
        k += paid[c] && canc[c];
    return row1(json_integer(k));
}

static json_t *e_cust1_strings(void)
{
    return json_pack("[[s,i]]", "EXAMPLE.COM", (int)strlen(C[1].name));
}

static long p_email_a(long i)
{
    return C[i].email[0] == 'a' && C[i].email[1] == '.';
}
static json_t *e_email_a(void)
{
    return count_rows(p_email_a, NC);
}

static json_t *e_42(void)
{
    return row1(json_integer(42));
}

static json_t *e_avg_price(void)
{
    double s = 0;
    for (long i = 1; i <= NP; i++)
        s += P[i].price;
    return row1(json_real(round2(s / NP)));
}

static json_t *e_amount1(void)
{
    return row1(json_real(O[1].amount));
}

static json_t *e_59(void)
{
    return row1(json_integer(59));
}

static long p_first_week(long i)
{
    return O[i].ts < 1735689600 + 7 * 86400;
}
static json_t *e_first_week(void)
{
    return count_rows(p_first_week, NO);
}

static long p_books(long i)
{
    return !strcmp(P[i].cat, "books");
}
static json_t *e_books(void)
{
    return count_rows(p_books, NP);
}

static json_t *e_nullif(void)
{
    long k = 0;
    for (long i = 1; i <= NO; i++)
        k += O[i].note;
    return json_pack("[[i,I]]", 0, (json_int_t)k);
}

static json_t *e_rollup(void)
{
    static const char *const sorted[] = {"cancelled", "delivered", "paid", "pending", "shipped"};
    json_t *rows = json_array();
    for (int s = 0; s < 5; s++) {
        long k = 0;
        for (long i = 1; i <= NO; i++)
            k += !strcmp(O[i].status, sorted[s]);
        json_array_append_new(rows, json_pack("[s,I]", sorted[s], (json_int_t)k));
    }
    json_array_append_new(rows, json_pack("[n,I]", (json_int_t)NO));
    return rows;
}

static json_t *e_dense_rank(void)
{
    long n[6] = {0};
    for (long i = 1; i <= NP; i++)
        for (int k = 0; k < 6; k++)
            if (!strcmp(P[i].cat, CATEGORY[k]))
                n[k]++;
    /* order by count desc, category asc; dense_rank over (count desc) */
    json_t *rows = json_array();
    bool used[6] = {0};
    long prev = -1;
    int rank = 0;
    for (int r = 0; r < 6; r++) {
        int best = -1;
        for (int k = 0; k < 6; k++) {
            if (used[k] || !n[k])
                continue;
            if (best < 0 || n[k] > n[best] ||
                (n[k] == n[best] && strcmp(CATEGORY[k], CATEGORY[best]) < 0))
                best = k;
        }
        if (best < 0)
            break;
        used[best] = true;
        if (n[best] != prev)
            rank++;
        prev = n[best];
        json_array_append_new(rows,
                              json_pack("[s,I,i]", CATEGORY[best], (json_int_t)n[best], rank));
    }
    return rows;
}

static json_t *e_concat7(void)
{
    char buf[96];
    snprintf(buf, sizeof buf, "%s/%s", P[7].sku, P[7].cat);
    return row1(json_string(buf));
}

static json_t *e_values(void)
{
    return json_pack("[[i],[i],[i]]", 3, 2, 1);
}

static json_t *e_first_day(void)
{
    int64_t m = O[1].ts;
    for (long i = 2; i <= NO; i++)
        if (O[i].ts < m)
            m = O[i].ts;
    char ts[32];
    rfc3339(m, ts);
    ts[10] = '\0';
    return row1(json_string(ts));
}

static json_t *e_minmax_qty(void)
{
    long hi = 0, lo = 99;
    for (long i = 1; i <= NO; i++) {
        if (O[i].qty > hi)
            hi = O[i].qty;
        if (O[i].qty < lo)
            lo = O[i].qty;
    }
    return json_pack("[[I,I]]", (json_int_t)hi, (json_int_t)lo);
}

static json_t *e_case_labels(void)
{
    long small = 0, big = 0;
    for (long i = 1; i <= NO; i++) {
        if (O[i].amount >= 500)
            big++;
        else
            small++;
    }
    return json_pack("[[s,I],[s,I]]", "big", (json_int_t)big, "small", (json_int_t)small);
}

static json_t *e_created1(void)
{
    char ts[32];
    rfc3339(C[1].created, ts);
    return json_pack("[[s,b]]", ts, C[1].active);
}

/* ---- the table ---- */

struct pgq {
    const char *sql;
    json_t *(*expect)(void);
};

static const struct pgq QUERIES[] = {
    {"SELECT date_trunc('month', ordered_at) AS m, count(*) FROM demo.public.orders GROUP BY 1"
     " ORDER BY 1",
     e_month_counts},
    {"SELECT count(*) FROM demo.public.orders WHERE ordered_at >= now() - INTERVAL '30 days'",
     e_zero},
    {"SELECT count(*) FROM demo.public.orders WHERE ordered_at >= TIMESTAMPTZ"
     " '2025-12-31T00:00:00Z' - INTERVAL '30 days'",
     e_last30},
    {"SELECT sum(amount)::numeric(12,2) AS total FROM demo.public.orders WHERE status = 'paid'",
     e_paid_sum},
    {"SELECT count(*) FROM demo.public.customers WHERE name ILIKE 'ada%'", e_ada},
    {"SELECT count(*) FROM demo.public.customers WHERE name LIKE 'ada%'", e_zero},
    {"SELECT count(*) FROM demo.public.customers WHERE name LIKE 'Ada%'", e_ada},
    {"SELECT id, amount, row_number() OVER (ORDER BY amount DESC, id) AS rn FROM"
     " demo.public.orders ORDER BY rn LIMIT 3",
     e_top3},
    {"SELECT DISTINCT ON (status) status, id, amount FROM demo.public.orders ORDER BY status,"
     " amount DESC, id",
     e_distinct_on},
    {"SELECT id, sum(quantity) OVER (ORDER BY id) FROM demo.public.orders WHERE id <= 5 ORDER BY"
     " id",
     e_running},
    {"SELECT id, amount - lag(amount) OVER (ORDER BY id) AS d FROM demo.public.orders WHERE id"
     " <= 3 ORDER BY id",
     e_lag},
    {"WITH s AS (SELECT customer_id, sum(amount) AS t FROM demo.public.orders GROUP BY 1)"
     " SELECT count(*) FROM s WHERE t > 1000",
     e_big_customers},
    {"WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10) SELECT"
     " sum(x) FROM n",
     e_55},
    {"SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = 'demo'"
     " AND table_schema = 'public' AND table_name = 'orders' ORDER BY ordinal_position",
     e_info_columns},
    {"SELECT table_name FROM information_schema.tables WHERE table_catalog = 'demo' ORDER BY 1",
     e_info_tables},
    {"SELECT '{\"a\":{\"b\":2}}'::json -> 'a' ->> 'b' AS b", e_json_literal},
    {"SELECT json_build_object('id', id, 'status', status) ->> 'status' FROM demo.public.orders"
     " WHERE id = 1",
     e_status1},
    {"SELECT (jsonb_build_object('n', count(*)) ->> 'n')::int FROM demo.public.products", e_200},
    {"SELECT string_agg(DISTINCT category, ',' ORDER BY category) FROM demo.public.products",
     e_string_agg},
    {"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY price) FROM demo.public.products",
     e_median_price},
    {"SELECT count(*) FROM generate_series(1, 100) AS g", e_100},
    {"SELECT g::date FROM generate_series('2025-01-01'::date, '2025-01-03'::date, INTERVAL"
     " '1 day') AS g",
     e_dates},
    {"SELECT count(*) FROM demo.public.customers WHERE COALESCE(segment, 'none') = 'none'",
     e_no_segment},
    {"SELECT sum(CASE WHEN quantity >= 3 THEN 1 ELSE 0 END) FROM demo.public.orders", e_qty3},
    {"SELECT count(*) FILTER (WHERE status = 'cancelled'), count(*) FILTER (WHERE note IS NOT"
     " NULL) FROM demo.public.orders",
     e_filter},
    {"SELECT is_active, count(*) FROM demo.public.customers GROUP BY 1 ORDER BY 1", e_active},
    {"SELECT count(*) FROM demo.public.customers WHERE is_active AND country = 'DE'", e_active_de},
    {"SELECT extract(month FROM ordered_at)::int AS m, count(*) FROM demo.public.orders WHERE"
     " extract(quarter FROM ordered_at) = 1 GROUP BY 1 ORDER BY 1",
     e_q1_months},
    {"SELECT to_char(ordered_at, 'YYYY-MM-DD HH24:MI') FROM demo.public.orders WHERE id = 1",
     e_to_char1},
    {"SELECT c.country, count(*) FROM demo.public.orders o JOIN demo.public.customers c ON c.id"
     " = o.customer_id GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3",
     e_top_countries},
    {"SELECT count(*) FROM demo.public.products p LEFT JOIN demo.public.orders o ON"
     " o.product_id = p.id WHERE o.id IS NULL",
     e_never_ordered},
    {"SELECT count(*) FROM (SELECT customer_id FROM demo.public.orders GROUP BY 1 HAVING"
     " count(*) >= 6) AS s",
     e_having6},
    {"SELECT count(*) FROM demo.public.orders WHERE customer_id IN (SELECT id FROM"
     " demo.public.customers WHERE segment = 'enterprise')",
     e_enterprise},
    {"SELECT count(*) FROM demo.public.customers c WHERE EXISTS (SELECT 1 FROM"
     " demo.public.orders o WHERE o.customer_id = c.id AND o.status = 'cancelled')",
     e_exists_cancelled},
    {"SELECT count(*) FROM (SELECT customer_id FROM demo.public.orders WHERE status = 'paid'"
     " INTERSECT SELECT customer_id FROM demo.public.orders WHERE status = 'cancelled') AS x",
     e_intersect},
    {"SELECT upper(split_part(email, '@', 2)), length(name) FROM demo.public.customers WHERE"
     " id = 1",
     e_cust1_strings},
    {"SELECT count(*) FROM demo.public.customers WHERE email ~ '^a\\.'", e_email_a},
    {"SELECT substring(sku FROM 5)::int FROM demo.public.products WHERE id = 42", e_42},
    {"SELECT round(avg(price)::numeric, 2) FROM demo.public.products", e_avg_price},
    {"SELECT amount::numeric(10,2) FROM demo.public.orders WHERE id = 1", e_amount1},
    {"SELECT DATE '2025-03-01' - DATE '2025-01-01'", e_59},
    {"SELECT count(*) FROM demo.public.orders WHERE ordered_at < TIMESTAMPTZ"
     " '2025-01-01T00:00:00Z' + INTERVAL '7 days'",
     e_first_week},
    {"SELECT array_length(array_agg(id), 1) FROM demo.public.products WHERE category = 'books'",
     e_books},
    {"SELECT count(nullif(note, 'gift wrap')), count(note) FROM demo.public.orders", e_nullif},
    {"SELECT status, count(*) FROM demo.public.orders GROUP BY ROLLUP (status) ORDER BY status"
     " NULLS LAST",
     e_rollup},
    {"SELECT category, count(*), dense_rank() OVER (ORDER BY count(*) DESC) FROM"
     " demo.public.products GROUP BY 1 ORDER BY 2 DESC, 1",
     e_dense_rank},
    {"SELECT sku || '/' || lower(category) FROM demo.public.products WHERE id = 7", e_concat7},
    {"SELECT x FROM (VALUES (3), (1), (2)) AS v(x) ORDER BY x DESC", e_values},
    {"SELECT date_trunc('day', min(ordered_at))::date FROM demo.public.orders", e_first_day},
    {"SELECT greatest(max(quantity), 0), least(min(quantity), 9) FROM demo.public.orders",
     e_minmax_qty},
    {"SELECT CASE WHEN amount >= 500 THEN 'big' ELSE 'small' END AS size, count(*) FROM"
     " demo.public.orders GROUP BY 1 ORDER BY 1",
     e_case_labels},
    {"SELECT created_at, is_active FROM \"demo\".\"public\".\"customers\" WHERE id = 1 /* a"
     " /* nested */ comment */ -- and a line comment",
     e_created1},
};

/* JSON values equal; numbers compare as numbers (1e-9 relative). */
static bool jeq(json_t *a, json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        double x = json_number_value(a), y = json_number_value(b);
        return fabs(x - y) <= 1e-9 * fmax(1.0, fabs(y));
    }
    if (json_is_array(a) && json_is_array(b)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!jeq(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    return json_equal(a, b);
}

static void test_query_table(void **state)
{
    (void)state;
    size_t n = sizeof QUERIES / sizeof QUERIES[0];
    assert_true(n >= 40);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_pack("{s:s}", "sql", QUERIES[i].sql);
        char *body = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        long st = 0;
        json_t *j = sci("POST", "/v1/query", body, &st);
        free(body);
        json_t *want = QUERIES[i].expect();
        json_t *rows = json_object_get(j, "rows");
        bool ok = st == 200 && jeq(rows, want);
        /* every row as long as its columns */
        size_t ncol = json_array_size(json_object_get(j, "columns"));
        for (size_t r = 0; ok && r < json_array_size(rows); r++)
            ok = json_array_size(json_array_get(rows, r)) == ncol;
        if (!ok) {
            char *got = j ? json_dumps(j, JSON_COMPACT) : NULL;
            char *exp = json_dumps(want, JSON_COMPACT);
            fprintf(stderr, "query %zu: %s\n  status %ld\n  got  %.600s\n  want %.600s\n", i,
                    QUERIES[i].sql, st, got ? got : "(none)", exp);
            free(got);
            free(exp);
            bad++;
        }
        json_decref(want);
        json_decref(j);
    }
    assert_int_equal(bad, 0);
}

/* Column types as the API shows them: booleans, timestamps, numeric. */
static void test_demo_types(void **state)
{
    (void)state;
    json_t *j = sci_query_ok("SELECT is_active, created_at, name FROM demo.public.customers"
                             " WHERE id = 1");
    json_t *row = json_array_get(json_object_get(j, "rows"), 0);
    assert_true(json_is_boolean(json_array_get(row, 0)));
    const char *ts = json_string_value(json_array_get(row, 1));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 20);
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[19], 'Z');
    json_decref(j);
}

static void assert_400_with(const char *sql, const char *needle)
{
    json_t *b = json_pack("{s:s}", "sql", sql);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    long st = 0;
    json_t *j = sci("POST", "/v1/query", body, &st);
    free(body);
    sci_assert_error(j, 400, "BAD_REQUEST");
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    if (!strstr(m, needle))
        fprintf(stderr, "%s: message '%s' lacks '%s'\n", sql, m, needle);
    assert_non_null(strstr(m, needle));
    json_decref(j);
}

static void test_errors(void **state)
{
    (void)state;
    /* PostgreSQL's own messages */
    assert_400_with("SELEC 1", "syntax error at or near \"SELEC\"");
    assert_400_with("SELECT nope FROM demo.public.orders", "column \"nope\" does not exist");
    assert_400_with("SELECT 1/0", "division by zero");
    assert_400_with("SELECT * FROM demo.public.nope", "demo.public.nope");
    /* nothing writes: the transaction is read only (and the role may only read) */
    assert_400_with("DELETE FROM demo.public.orders", "read-only transaction");
    assert_400_with("UPDATE demo.public.orders SET amount = 0", "read-only transaction");
    assert_400_with("CREATE TABLE t1 (a int)", "read-only transaction");
    /* one statement per query: no COMMIT; <write> */
    assert_400_with("COMMIT; DELETE FROM demo.public.orders", "multiple commands");
    assert_400_with("SELECT 1; SELECT 2", "multiple commands");
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders"), NO);
}

/* Another workspace's schemas are out of reach even by their PostgreSQL names. */
static void test_workspace_isolation(void **state)
{
    (void)state;
    json_t *j = sci_query_ok("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'hd%' AND"
                             " NOT has_schema_privilege(oid, 'USAGE') ORDER BY 1");
    json_t *rows = json_object_get(j, "rows");
    assert_true(json_array_size(rows) >= 1); /* ws_other's demo schema at least */
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\".orders",
             json_string_value(json_array_get(json_array_get(rows, 0), 0)));
    assert_400_with(sql, "permission denied");
    json_decref(j);
    /* no way to become someone else inside a query */
    assert_400_with("SELECT set_config('role', 'hotdata', true)", "permission denied");
    assert_400_with("SELECT set_config('session_authorization', 'hotdata', true)",
                    "permission denied");
    /* COPY is refused and the engine goes on */
    assert_400_with("COPY (SELECT 1) TO STDOUT", "COPY");
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.products"), NP);
}

static void test_statement_timeout(void **state)
{
    (void)state;
    assert_400_with("SELECT pg_sleep(5)", "statement timeout");
    /* the connection is fine afterwards */
    assert_int_equal(sci_query_int("SELECT 41 + 1"), 42);
}

/* A dataset from a PostgreSQL-only query lives in PostgreSQL too, typed (m a timestamp). */
static void test_dataset_from_pg_query(void **state)
{
    (void)state;
    long st = 0;
    json_t *d = sci("POST", "/v1/datasets",
                    "{\"label\":\"monthly\",\"source\":{\"type\":\"sql_query\",\"sql\":"
                    "\"SELECT date_trunc('month', ordered_at) AS m, count(*) AS n,"
                    " sum(amount)::numeric(12,2) AS total FROM demo.public.orders GROUP BY 1\"}}",
                    &st);
    assert_int_equal(st, 201);
    json_decref(d);
    json_t *j = sci_query_ok("SELECT to_char(m, 'YYYY-MM-01\"T00:00:00Z\"'), n FROM"
                             " datasets.main.monthly ORDER BY m");
    json_t *want = e_month_counts();
    assert_true(jeq(json_object_get(j, "rows"), want));
    json_decref(want);
    json_decref(j);
    /* a write as a dataset query is refused */
    d = sci("POST", "/v1/datasets",
            "{\"label\":\"bad\",\"source\":{\"type\":\"sql_query\",\"sql\":"
            "\"DELETE FROM demo.public.orders\"}}",
            &st);
    assert_int_equal(st, 400);
    json_decref(d);
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders"), NO);
}

static int setup(void **state)
{
    (void)state;
    generate();
    sort_by_amount();
    static const char *const extra[] = {"--seed-rows", "2000", "--query-timeout-ms", "500", NULL};
    return sci_start(extra);
}

static int teardown(void **state)
{
    (void)state;
    sci_stop();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_table),
        cmocka_unit_test(test_demo_types),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_workspace_isolation),
        cmocka_unit_test(test_statement_timeout),
        cmocka_unit_test(test_dataset_from_pg_query),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
