/*
 * sim_sqlrewrite (sim/sqlrewrite.c): the pure SQL rewriter that maps the three-part table
 * names of user SQL (catalog.schema.table) to the engine's real tables.
 *
 * Rules: pure (no simulator state); unit tested in tests/unit/test_sim_sqlrewrite.c.
 */
#ifndef SIM_SQLREWRITE_H
#define SIM_SQLREWRITE_H

#include <stdbool.h>

/*
 * Every three-part name a.b.c (each part bare or "double-quoted") outside string literals,
 * quoted identifiers of other shapes and comments is passed to resolve(); a non-NULL
 * malloc'd answer replaces it as a quoted SQLite identifier. When resolve returns NULL the
 * name is left as is, unless is_catalog(first part) says it names a known catalog: then it
 * is an error "Table 'a.b.c' not found". Returns 0 and *out (malloc'd) or -1 and *err
 * (malloc'd).
 */
typedef char *(*sim_sql_resolve_fn)(void *ud, const char *a, const char *b, const char *c);
typedef bool (*sim_sql_is_catalog_fn)(void *ud, const char *a);
int sim_sql_rewrite(const char *sql, sim_sql_resolve_fn resolve, sim_sql_is_catalog_fn is_catalog,
                    void *ud, char **out, char **err);
/*
 * The same with unqualified names: a one-part (table) or two-part (schema.table) name in
 * table position (right after FROM or JOIN, or after a comma in a FROM list) is passed to
 * resolve_short (b NULL for one part); a non-NULL answer replaces it like resolve's.
 */
typedef char *(*sim_sql_resolve_short_fn)(void *ud, const char *schema, const char *table);
int sim_sql_rewrite_ex(const char *sql, sim_sql_resolve_fn resolve,
                       sim_sql_is_catalog_fn is_catalog, sim_sql_resolve_short_fn resolve_short,
                       void *ud, char **out, char **err);

#endif
