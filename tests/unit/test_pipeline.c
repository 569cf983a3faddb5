/*
 * test_pipeline: the stage driver of src/pipeline.c with a table of test stages and a fake
 * connection (struct hg_req_io): stages run in table order; HG_DONE stops; HG_ASYNC holds a
 * reference until pipeline_resume (or release); a resume from inside the stage carries on
 * without a hold; the terminal stage keeps its own reference; every stage hears
 * client_gone; head fields of the stages reach the response head (a stage without a value
 * adds none); pipeline_retry re-runs from the retry_entry stage; the first stage answering
 * upstream_failed wins. Magic numbers: a pointer without HG_REQ_MAGIC aborts (when check.h's
 * checks are compiled in: Debug and sanitizer builds; skipped otherwise).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#include "http1.h"
#include "pipeline.h"

/* ---- a fake connection ---- */

static struct {
    int heads, status, ends, finishes, aborts;
    char fields[256];
    char trace[256]; /* stage runs and hooks, in order */
} io;

static void trace(const char *s)
{
    strncat(io.trace, s, sizeof io.trace - strlen(io.trace) - 1);
}

static void f_head(struct hg_req *req, int status, const struct evkeyvalq *headers, int64_t cl,
                   const struct http1_field *f, int nf)
{
    io.heads++;
    io.status = status;
    for (int i = 0; i < nf; i++) {
        strncat(io.fields, f[i].name, sizeof io.fields - strlen(io.fields) - 1);
        strncat(io.fields, "=", sizeof io.fields - strlen(io.fields) - 1);
        strncat(io.fields, f[i].value, sizeof io.fields - strlen(io.fields) - 1);
        strncat(io.fields, ";", sizeof io.fields - strlen(io.fields) - 1);
    }
}

static size_t f_data(struct hg_req *req, struct evbuffer *chunk)
{
    evbuffer_drain(chunk, evbuffer_get_length(chunk));
    return 0;
}

static void f_end(struct hg_req *req)
{
    io.ends++;
}

static void f_finish(struct hg_req *req)
{
    io.finishes++;
    req->conn = NULL;
    pipeline_req_unref(req); /* the connection's reference */
}

static void f_abort(struct hg_req *req)
{
    io.aborts++;
    pipeline_client_gone(req);
}

static const struct hg_req_io fake_io = {
    .head = f_head, .data = f_data, .end = f_end, .finish = f_finish, .abort = f_abort};

static int dummy_conn;
static int freed;

static void on_free(struct hg_req *req, void *arg)
{
    freed++;
}

static struct hg_req *new_req(void)
{
    struct hg_req *r = pipeline_req_new(NULL);
    r->conn = (struct hg_conn *)&dummy_conn;
    r->io = &fake_io;
    pipeline_req_add_cleanup(r, on_free, NULL);
    return r;
}

static void reset(void)
{
    memset(&io, 0, sizeof io);
    freed = 0;
}

/* ---- test stages ---- */

static enum hg_stage_result (*b_mode)(struct hg_req *); /* what stage B does */
static struct hg_req *parked;

static enum hg_stage_result a_run(struct hg_req *r)
{
    trace("A");
    return HG_NEXT;
}

static enum hg_stage_result b_next(struct hg_req *r)
{
    trace("B");
    return HG_NEXT;
}

static enum hg_stage_result b_done(struct hg_req *r)
{
    trace("B!");
    pipeline_respond_error(r, 403, NULL, "no", NULL);
    return HG_DONE;
}

static enum hg_stage_result b_async(struct hg_req *r)
{
    trace("B~");
    parked = r;
    return HG_ASYNC;
}

static enum hg_stage_result b_grant_now(struct hg_req *r)
{
    trace("B=");
    pipeline_resume(r); /* a synchronous grant from inside the stage */
    return HG_ASYNC;
}

static enum hg_stage_result b_run(struct hg_req *r)
{
    return b_mode(r);
}

static void b_gone(struct hg_req *r)
{
    trace("b-gone");
    if (parked == r) {
        parked = NULL;
        pipeline_req_release(r);
    }
}

static const char *b_field(const struct hg_req *r)
{
    return r->status == 200 ? "MISS" : NULL;
}

static int c_failed(struct hg_req *r, int status, const struct upstream_result *res)
{
    trace("c-failed");
    return status == 503;
}

static int b_failed(struct hg_req *r, int status, const struct upstream_result *res)
{
    trace("b-failed");
    return 1;
}

static int terminal_runs;
static struct hg_req *in_flight;

static enum hg_stage_result t_run(struct hg_req *r)
{
    trace("T");
    terminal_runs++;
    in_flight = r;
    r->refs++; /* the terminal stage's own hold */
    return HG_ASYNC;
}

static void t_gone(struct hg_req *r)
{
    trace("t-gone");
    if (in_flight == r) {
        in_flight = NULL;
        pipeline_req_unref(r);
    }
}

/* The terminal stage's exchange ends: answer 200 and drop the hold. */
static void t_answer(void)
{
    struct hg_req *r = in_flight;
    in_flight = NULL;
    pipeline_respond_start(r, 200, NULL, 0);
    pipeline_respond_end(r);
    pipeline_req_unref(r);
}

static const struct hg_stage_ops A = {.name = "a", .run = a_run};
static const struct hg_stage_ops B = {.name = "b",
                                      .run = b_run,
                                      .client_gone = b_gone,
                                      .head_field = b_field,
                                      .head_field_name = "X-B",
                                      .upstream_failed = b_failed,
                                      .retry_entry = 1};
static const struct hg_stage_ops C = {.name = "c", .run = a_run, .upstream_failed = c_failed};
static const struct hg_stage_ops T = {
    .name = "t", .run = t_run, .client_gone = t_gone, .terminal = 1};
static const struct hg_stage_ops *const table[] = {&A, &C, &B, &T};

static int setup(void **state)
{
    pipeline_set_stages(table, 4);
    return 0;
}

static void test_order_and_terminal(void **state)
{
    reset();
    b_mode = b_next;
    struct hg_req *r = new_req();
    pipeline_start(r);
    assert_string_equal(io.trace, "AABT");
    assert_int_equal(io.heads, 0);
    assert_int_equal(r->refs, 2); /* the connection + the terminal stage */
    t_answer();
    assert_int_equal(io.heads, 1);
    assert_int_equal(io.status, 200);
    assert_string_equal(io.fields, "X-B=MISS;");
    assert_int_equal(io.ends, 1);
    assert_int_equal(io.finishes, 1);
    assert_int_equal(freed, 1);
}

static void test_done_stops(void **state)
{
    reset();
    b_mode = b_done;
    int runs = terminal_runs;
    struct hg_req *r = new_req();
    pipeline_start(r);
    assert_string_equal(io.trace, "AAB!");
    assert_int_equal(io.status, 403);
    assert_string_equal(io.fields, "");    /* b_field has no value for a 403 */
    assert_int_equal(terminal_runs, runs); /* the stages after B did not run */
    assert_int_equal(freed, 1);
}

static void test_async_resume(void **state)
{
    reset();
    b_mode = b_async;
    struct hg_req *r = new_req();
    pipeline_start(r);
    assert_string_equal(io.trace, "AAB~");
    assert_ptr_equal(parked, r);
    assert_int_equal(r->refs, 2); /* the connection + B's hold */
    parked = NULL;
    pipeline_resume(r);
    assert_string_equal(io.trace, "AAB~T");
    assert_int_equal(r->refs, 2); /* B's hold gone, T's taken */
    t_answer();
    assert_int_equal(freed, 1);
}

static void test_resume_inside_stage(void **state)
{
    reset();
    b_mode = b_grant_now;
    struct hg_req *r = new_req();
    pipeline_start(r);
    assert_string_equal(io.trace, "AAB=T");
    assert_int_equal(r->refs, 2); /* no hold left by B */
    t_answer();
    assert_int_equal(freed, 1);
}

static void test_client_gone_every_stage(void **state)
{
    reset();
    b_mode = b_async;
    struct hg_req *r = new_req();
    pipeline_start(r);
    pipeline_client_gone(r); /* what the connection does when the socket closes */
    assert_string_equal(io.trace, "AAB~b-gonet-gone");
    assert_null(parked);
    assert_int_equal(freed, 1); /* B let go: freed */
}

static void test_retry_and_failed(void **state)
{
    reset();
    b_mode = b_next;
    int runs = terminal_runs;
    struct hg_req *r = new_req();
    pipeline_start(r);
    assert_int_equal(pipeline_upstream_failed(r, 503, NULL), 1);
    assert_string_equal(io.trace, "AABTc-failed"); /* C answered: B not asked */
    pipeline_upstream_failed(r, 500, NULL);
    assert_string_equal(io.trace, "AABTc-failedc-failedb-failed");
    /* the terminal stage drops its answer and asks for a retry from B */
    struct hg_req *held = in_flight;
    in_flight = NULL;
    io.trace[0] = '\0';
    pipeline_retry(held);
    assert_string_equal(io.trace, "BT");
    assert_int_equal(terminal_runs, runs + 2);
    pipeline_req_unref(held); /* the first attempt's hold */
    t_answer();
    assert_int_equal(freed, 1);
}

/* A request that is not one (no HG_REQ_MAGIC: freed, or a stray pointer) stops the process
 * where it is handed back (check.h), when the checks are compiled in (Debug, sanitizers). */
static void test_magic_checked(void **state)
{
#if HG_CHECKS
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct hg_req bogus;
        memset(&bogus, 0, sizeof bogus);
        bogus.refs = 1;
        fclose(stderr); /* the check's message is expected */
        pipeline_req_hold(&bogus);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
#else
    skip();
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_terminal),
        cmocka_unit_test(test_done_stops),
        cmocka_unit_test(test_async_resume),
        cmocka_unit_test(test_resume_inside_stage),
        cmocka_unit_test(test_client_gone_every_stage),
        cmocka_unit_test(test_retry_and_failed),
        cmocka_unit_test(test_magic_checked),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
