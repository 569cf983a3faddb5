/*
 * path: the request-target check that keeps hotgate from ever being an open proxy.
 *
 * Decision: hotgate does not rewrite ambiguous paths, it refuses them. A target is
 * forwarded byte for byte only when every reading of it (by hotgate, the upstream, any
 * proxy between) is the same path under /v1/. So:
 *   - only origin-form ("/..."): absolute-form ("http://host/..."), authority-form and
 *     "*" are refused (400);
 *   - refused (400): dot segments ("." or ".."), empty segments ("//"), backslashes,
 *     percent-encoded '/', '\', '.', '%' and control bytes (%2F %5C %2E %25 %00-%1F %7F),
 *     malformed escapes ("%zz", "%4"), a fragment ('#'), raw bytes outside RFC 3986 pchar
 *     (blanks, quotes, <>, non-ASCII);
 *   - refused (400) as well: a dot segment carrying a path parameter ("..;x", ".;"), which
 *     servers that strip parameters read as a dot segment, and escapes that are overlong
 *     or invalid UTF-8 (%C0, %C1, %F5-%FF, %E0 followed by %80-%9F, %F0 by %80-%8F: e.g.
 *     %c0%ae and %e0%80%ae are disguised '.');
 *   - other escapes (e.g. %20 in a table name) pass through undecoded;
 *   - the path must then be "/v1/" followed by anything (PATH_OK), otherwise 404;
 *   - the query string is checked for the same raw characters and passed through.
 *
 * Rules: pure functions, thread-safe.
 */
#ifndef HG_PATH_H
#define HG_PATH_H

#include <stddef.h>

enum path_verdict {
    PATH_OK = 0,
    PATH_BAD = 400,       /* ambiguous or malformed: answer 400 */
    PATH_NOT_FOUND = 404, /* well-formed but not under /v1/: answer 404 */
};

/* Check target[0..len). On PATH_OK, *path ("/v1/...") and *query (without '?', NULL when
 * absent) are malloc'd for the caller. *reason (static) explains a refusal. */
enum path_verdict path_check(const char *target, size_t len, char **path, char **query,
                             const char **reason);

/* Whether the escape at s ("%XX", left bytes from s) starts an overlong or invalid UTF-8
 * sequence (see above). */
int path_overlong_utf8(const char *s, size_t left);

#endif
