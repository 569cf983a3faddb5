/*
 * test_sim_pg_cluster: the private PostgreSQL cluster a simulator owns when it is started
 * without --pg-url (the rest of the suite shares one server): it lives in DATA_DIR/pg with
 * its unix socket there and no TCP listener, runs as an unprivileged user when the
 * simulator runs as root (CI does), survives a restart with its data, goes down with a
 * killed simulator (SIGKILL: no postgres left behind), and a stale postmaster.pid left by a
 * killed run does not stop the next start.
 */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "sim_core_it.h"

static char data_dir[600];

/* The postmaster pid from DATA_DIR/pg/postmaster.pid, 0 when there is none. */
static long postmaster_pid(void)
{
    char p[700];
    snprintf(p, sizeof p, "%s/pg/postmaster.pid", data_dir);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return pid;
}

static bool alive(long pid)
{
    return pid > 0 && kill((pid_t)pid, 0) == 0;
}

/* uid of a process (from /proc), -1 when unknown */
static long proc_uid(long pid)
{
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%ld/status", pid);
    FILE *f = fopen(p, "r");
    long uid = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Uid: %ld", &uid) == 1)
            break;
    if (f)
        fclose(f);
    return uid;
}

static void start(void)
{
    static const char *const extra[] = {"--seed-rows", "300", NULL};
    assert_int_equal(harness_start_sim(&sci_proc, sci_dir, extra), 0);
}

static void test_private_cluster(void **state)
{
    (void)state;
    long pid = postmaster_pid();
    assert_true(alive(pid));
    char p[700];
    snprintf(p, sizeof p, "%s/pg/PG_VERSION", data_dir);
    assert_int_equal(access(p, F_OK), 0);
    /* no TCP listener; the socket is a file */
    char *la = sci_query_str("SELECT current_setting('listen_addresses')");
    assert_string_equal(la, "");
    free(la);
    if (geteuid() == 0) {
        long uid = proc_uid(pid);
        assert_true(uid > 0); /* not root: initdb and postgres refuse root */
    }
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders"), 300);
}

static void test_restart_keeps_data_and_stops_server(void **state)
{
    (void)state;
    long pid = postmaster_pid();
    assert_int_equal(harness_stop(&sci_proc, 10000), 0);
    for (int i = 0; i < 200 && alive(pid); i++)
        sci_sleep_ms(50);
    assert_false(alive(pid)); /* stopped with the simulator */
    start();
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders"), 300);
}

static void test_killed_simulator_takes_server_down(void **state)
{
    (void)state;
    long pid = postmaster_pid();
    assert_true(alive(pid));
    kill(sci_proc.pid, SIGKILL);
    waitpid(sci_proc.pid, NULL, 0);
    sci_proc.pid = 0;
    for (int i = 0; i < 200 && alive(pid); i++)
        sci_sleep_ms(50);
    assert_false(alive(pid));
    /* next start: the old server's leftovers do not matter, the data is there */
    start();
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders"), 300);
}

static void test_stale_pid_file(void **state)
{
    (void)state;
    assert_int_equal(harness_stop(&sci_proc, 10000), 0);
    /* a postmaster.pid naming a process that is gone, as a crash leaves it */
    pid_t gone = fork();
    if (gone == 0)
        _exit(0);
    waitpid(gone, NULL, 0);
    char p[700];
    snprintf(p, sizeof p, "%s/pg/postmaster.pid", data_dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "%d\n%s/pg\n1700000000\n5432\n%s/pg\n\n  5432001     0\nready   \n", (int)gone,
            data_dir, data_dir);
    fclose(f);
    start();
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.customers"), 1000);
}

static int setup(void **state)
{
    (void)state;
    setenv("HG_TEST_PG_PRIVATE", "1", 1); /* not the suite's shared server */
    sci_dir = harness_tmpdir("simpgc");
    snprintf(data_dir, sizeof data_dir, "%s/sim-data", sci_dir);
    start();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    long pid = postmaster_pid();
    sci_stop();
    for (int i = 0; i < 200 && alive(pid); i++)
        sci_sleep_ms(50);
    return alive(pid) ? -1 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_private_cluster),
        cmocka_unit_test(test_restart_keeps_data_and_stops_server),
        cmocka_unit_test(test_killed_simulator_takes_server_down),
        cmocka_unit_test(test_stale_pid_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
