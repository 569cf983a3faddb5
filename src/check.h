/*
 * check: invariant checks on objects that cross a `void *` or a callback (Varnish's
 * CHECK_OBJ_NOTNULL habit). An object that is passed around untyped starts with an
 * `unsigned magic` field set to a per-type constant when it is made and cleared when it
 * is freed; whoever gets it back from a `void *` (a callback argument, an event's arg, a
 * slot) checks the magic before using it, so a stale, freed or wrong pointer stops the
 * process at the point of confusion instead of corrupting memory later.
 *
 * Rules:
 *   - magic constants are distinct random 32-bit values, defined next to their struct
 *     (e.g. HG_REQ_MAGIC in req.h), never 0;
 *   - HG_OBJ_INIT(p, MAGIC) when the object is made, HG_OBJ_FINI(p) just before it is freed;
 *   - HG_CHECK_OBJ(p, MAGIC) / HG_CHECK_OBJ_NOTNULL(p, MAGIC) where it comes back untyped;
 *     HG_CAST_OBJ_NOTNULL(to, from, MAGIC) assigns from a `void *` and checks in one go.
 * The checks are compiled in when HG_CHECKS is 1: by default in Debug builds (no NDEBUG)
 * and in the sanitizer build (HG_SANITIZE defines HG_CHECKS=1, see CMakeLists.txt). A
 * release build keeps the fields (the struct layout does not change) but not the tests.
 * A failed check prints the object, file and line to stderr and aborts.
 */
#ifndef HG_CHECK_H
#define HG_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#ifndef HG_CHECKS
#ifdef NDEBUG
#define HG_CHECKS 0
#else
#define HG_CHECKS 1
#endif
#endif

__attribute__((noreturn, cold, unused)) static void hg_check_fail(const char *what,
                                                                  const char *file, int line)
{
    fprintf(stderr, "hotgate: check failed: %s (%s:%d)\n", what, file, line);
    abort();
}

#define HG_OBJ_INIT(p, m) ((p)->magic = (m))
#define HG_OBJ_FINI(p) ((p)->magic = 0)

#if HG_CHECKS
#define HG_CHECK_OBJ(p, m)                                                                         \
    do {                                                                                           \
        if ((p) && (p)->magic != (m))                                                              \
            hg_check_fail(#p "->magic == " #m, __FILE__, __LINE__);                                \
    } while (0)
#define HG_CHECK_OBJ_NOTNULL(p, m)                                                                 \
    do {                                                                                           \
        if (!(p))                                                                                  \
            hg_check_fail(#p " != NULL", __FILE__, __LINE__);                                      \
        if ((p)->magic != (m))                                                                     \
            hg_check_fail(#p "->magic == " #m, __FILE__, __LINE__);                                \
    } while (0)
#define HG_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond))                                                                               \
            hg_check_fail(#cond, __FILE__, __LINE__);                                              \
    } while (0)
#else
#define HG_CHECK_OBJ(p, m) ((void)0)
#define HG_CHECK_OBJ_NOTNULL(p, m) ((void)0)
#define HG_CHECK(cond) ((void)0)
#endif

#define HG_CAST_OBJ_NOTNULL(to, from, m)                                                           \
    do {                                                                                           \
        (to) = (from);                                                                             \
        HG_CHECK_OBJ_NOTNULL(to, m);                                                               \
    } while (0)

#endif
