/*
 * pg_cluster: the private PostgreSQL cluster hotdata-sim owns under its --data-dir.
 *
 * Job: find the server binaries (Debian keeps them in /usr/lib/postgresql/<ver>/bin, not on
 * PATH), initdb DIR/pg on the first start (or copy an initialised template cluster with
 * --pg-template, which is how the test harness keeps startup quick), start `postgres` with
 * a unix socket only (listen_addresses='', socket in DIR/pg, or in a private /tmp directory
 * when that path would be too long for a unix socket), wait until it accepts connections,
 * and stop it with the simulator (fast shutdown, then immediate, then SIGKILL).
 *
 * Root: initdb and postgres refuse to run as root. When the simulator runs with euid 0 the
 * cluster directory is chowned to the `postgres` user the Debian package creates and both
 * programs run as that user (fork, setgid/setgroups/setuid, exec); the ancestors of the
 * cluster directory get o+x (search only) so that user can reach it.
 *
 * Leftovers: the server gets PR_SET_PDEATHSIG = SIGQUIT (set after the uid change, which
 * would clear it), so a killed simulator takes its server down. A stale postmaster.pid left
 * by a killed process is removed at the next start; if its server is somehow still alive
 * and runs on this directory, it is told to quit first.
 *
 * Rules: runs before the event loop starts and after it ends (blocking waits are fine here);
 * every child is waited for.
 */
#include "sim_pg_cluster.h"
#include "sim_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define SIM_PG_PORT 5432
#define SIM_PG_PATH (PATH_MAX + 64) /* a PATH_MAX directory plus a file name */
#define SIM_PG_SOCK_MAX 100         /* sun_path is 108 bytes */
#define SIM_PG_START_WAIT_MS 30000
#define SIM_PG_STOP_WAIT_MS 10000

static void sim_pg_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool sim_pg_is_exec(const char *dir, const char *prog)
{
    char p[SIM_PG_PATH];
    if (snprintf(p, sizeof p, "%s/%s", dir, prog) >= (int)sizeof p)
        return false;
    return access(p, X_OK) == 0;
}

/*
 * The directory holding initdb and postgres: $HOTDATA_SIM_PG_BIN, else the newest
 * /usr/lib/postgresql/<ver>/bin, else the PATH entry that has both.
 */
int sim_pg_find_bindir(char *out, size_t len)
{
    const char *env = getenv("HOTDATA_SIM_PG_BIN");
    if (env && *env) {
        if (!sim_pg_is_exec(env, "postgres") || !sim_pg_is_exec(env, "initdb"))
            return -1;
        snprintf(out, len, "%s", env);
        return 0;
    }
    int best = -1;
    DIR *d = opendir("/usr/lib/postgresql");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            char *end;
            long v = strtol(e->d_name, &end, 10);
            if (end == e->d_name || *end || v <= best)
                continue;
            char dir[SIM_PG_PATH];
            snprintf(dir, sizeof dir, "/usr/lib/postgresql/%s/bin", e->d_name);
            if (sim_pg_is_exec(dir, "postgres") && sim_pg_is_exec(dir, "initdb")) {
                best = (int)v;
                snprintf(out, len, "%s", dir);
            }
        }
        closedir(d);
    }
    if (best >= 0)
        return 0;
    const char *path = getenv("PATH");
    if (!path)
        return -1;
    char *copy = sim_strdup(path), *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        if (sim_pg_is_exec(dir, "postgres") && sim_pg_is_exec(dir, "initdb")) {
            snprintf(out, len, "%s", dir);
            free(copy);
            return 0;
        }
    }
    free(copy);
    return -1;
}

/* The unprivileged user to run the server as when we are root (uid/gid), 0 otherwise. */
static int sim_pg_run_as(uid_t *uid, gid_t *gid)
{
    *uid = 0;
    *gid = 0;
    if (geteuid() != 0)
        return 0;
    const char *name = getenv("HOTDATA_SIM_PG_USER");
    struct passwd *pw = getpwnam(name && *name ? name : "postgres");
    if (!pw || pw->pw_uid == 0) {
        sim_log("pg: running as root needs an unprivileged 'postgres' user (Debian's "
                "postgresql package creates it; or set HOTDATA_SIM_PG_USER)");
        return -1;
    }
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 1;
}

/* Child side of a spawn: drop to uid/gid when given, redirect output, exec argv. */
static void sim_pg_child(char *const argv[], const char *log, uid_t uid, gid_t gid, bool pdeath)
{
    if (log) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            if (uid && fchown(fd, uid, gid) != 0)
                _exit(126);
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, 0);
        close(devnull);
    }
    if (uid) {
        if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
            _exit(126);
    }
    if (pdeath) {
        /* after setuid: a credential change clears the parent-death signal */
        prctl(PR_SET_PDEATHSIG, SIGQUIT);
        if (getppid() == 1)
            _exit(125);
    }
    signal(SIGPIPE, SIG_DFL);
    execv(argv[0], argv);
    _exit(127);
}

static pid_t sim_pg_spawn(char *const argv[], const char *log, uid_t uid, gid_t gid, bool pdeath)
{
    pid_t pid = fork();
    if (pid == 0)
        sim_pg_child(argv, log, uid, gid, pdeath);
    return pid;
}

static int sim_pg_run(char *const argv[], const char *log, uid_t uid, gid_t gid)
{
    pid_t pid = sim_pg_spawn(argv, log, uid, gid, false);
    if (pid < 0)
        return -1;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* chown -R path to uid/gid (no symlinks followed). */
static int sim_pg_chown_r(const char *path, uid_t uid, gid_t gid)
{
    if (lchown(path, uid, gid) != 0)
        return -1;
    struct stat sb;
    if (lstat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return 0;
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char sub[SIM_PG_PATH];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (sim_pg_chown_r(sub, uid, gid) != 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

/* Let another user traverse (not list) every ancestor of path: o+x on each. */
static void sim_pg_open_ancestors(const char *path)
{
    char p[SIM_PG_PATH];
    if (!realpath(path, p))
        return;
    for (char *s = strrchr(p, '/'); s && s != p; s = strrchr(p, '/')) {
        *s = '\0';
        struct stat sb;
        if (stat(p, &sb) == 0 && !(sb.st_mode & S_IXOTH))
            chmod(p, (sb.st_mode & 07777) | S_IXOTH);
    }
}

/* Run initdb into dir (created by initdb; a partial one is removed on failure). */
int sim_pg_initdb(const char *bindir, const char *dir, const char *log)
{
    uid_t uid;
    gid_t gid;
    int as = sim_pg_run_as(&uid, &gid);
    if (as < 0)
        return -1;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        sim_log("pg: mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    if (as) {
        if (sim_pg_chown_r(dir, uid, gid) != 0)
            return -1;
        sim_pg_open_ancestors(dir);
    }
    char prog[SIM_PG_PATH];
    snprintf(prog, sizeof prog, "%s/initdb", bindir);
    char *argv[] = {prog, "-D",   (char *)dir,   "-U",        "hotdata",           "-A", "trust",
                    "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions", NULL};
    int rc = sim_pg_run(argv, log, uid, gid);
    if (rc != 0)
        sim_log("pg: initdb %s failed (see %s)", dir, log ? log : "stderr");
    return rc;
}

/* Copy an initialised cluster (cp -a, reflinks where the file system has them). */
static int sim_pg_copy_template(const char *tmpl, const char *dir)
{
    char *argv[] = {"/bin/cp", "-a", "--reflink=auto", (char *)tmpl, (char *)dir, NULL};
    return sim_pg_run(argv, NULL, 0, 0);
}

static bool sim_pg_has_version(const char *dir)
{
    char p[SIM_PG_PATH];
    snprintf(p, sizeof p, "%s/PG_VERSION", dir);
    return access(p, F_OK) == 0;
}

/* Is pid a live process whose working directory is dir (a postmaster chdirs there)? */
static bool sim_pg_pid_runs_in(pid_t pid, const char *dir)
{
    if (pid <= 0 || kill(pid, 0) != 0)
        return false;
    char link[64], cwd[PATH_MAX], real[PATH_MAX];
    snprintf(link, sizeof link, "/proc/%d/cwd", (int)pid);
    ssize_t n = readlink(link, cwd, sizeof cwd - 1);
    if (n <= 0 || !realpath(dir, real))
        return false;
    cwd[n] = '\0';
    return strcmp(cwd, real) == 0;
}

/* A postmaster.pid left by a killed simulator: stop its server if it still runs here,
 * then remove the lock files so the new server starts. */
static void sim_pg_clear_stale(const char *dir, const char *sockdir)
{
    char pidfile[SIM_PG_PATH];
    snprintf(pidfile, sizeof pidfile, "%s/postmaster.pid", dir);
    FILE *f = fopen(pidfile, "r");
    if (!f)
        return;
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    if (sim_pg_pid_runs_in((pid_t)pid, dir)) {
        sim_log("pg: a server from an earlier run (pid %ld) still runs on %s: stopping it", pid,
                dir);
        kill((pid_t)pid, SIGQUIT);
        for (int i = 0; i < 100 && kill((pid_t)pid, 0) == 0; i++)
            sim_pg_sleep_ms(50);
        if (kill((pid_t)pid, 0) == 0)
            kill((pid_t)pid, SIGKILL);
        for (int i = 0; i < 100 && kill((pid_t)pid, 0) == 0; i++)
            sim_pg_sleep_ms(20);
    } else {
        sim_log("pg: removing stale %s (pid %ld is gone)", pidfile, pid);
    }
    unlink(pidfile);
    char p[SIM_PG_PATH];
    snprintf(p, sizeof p, "%s/.s.PGSQL.%d.lock", sockdir, SIM_PG_PORT);
    unlink(p);
    snprintf(p, sizeof p, "%s/.s.PGSQL.%d", sockdir, SIM_PG_PORT);
    unlink(p);
}

/* Wait for the server to accept connections; -1 when it exited or timed out. */
static int sim_pg_wait_ready(struct sim_pg_cluster *c)
{
    char conninfo[SIM_PG_PATH];
    snprintf(conninfo, sizeof conninfo, "host=%s port=%d user=hotdata dbname=postgres", c->sockdir,
             SIM_PG_PORT);
    for (int waited = 0; waited < SIM_PG_START_WAIT_MS; waited += 10) {
        int st;
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            c->pid = 0;
            return -1;
        }
        if (PQping(conninfo) == PQPING_OK)
            return 0;
        sim_pg_sleep_ms(10);
    }
    return -1;
}

/*
 * Start the cluster in cluster_dir (made by initdb, or copied from tmpl, when it does not
 * exist yet), logging to log. detached: the server outlives this process (its own session,
 * no parent-death signal; --pg-serve), else it dies with it.
 */
static int sim_pg_cluster_start_at(struct sim_pg_cluster *c, const char *cluster_dir,
                                   const char *log, const char *tmpl, bool detached);

int sim_pg_cluster_start(struct sim_pg_cluster *c, const char *data_dir, const char *tmpl)
{
    if (mkdir(data_dir, 0755) != 0 && errno != EEXIST) {
        sim_log("pg: mkdir %s: %s", data_dir, strerror(errno));
        return -1;
    }
    char dir[SIM_PG_PATH], log[SIM_PG_PATH];
    snprintf(dir, sizeof dir, "%s/pg", data_dir);
    snprintf(log, sizeof log, "%s/pg.log", data_dir);
    return sim_pg_cluster_start_at(c, dir, log, tmpl, false);
}

static int sim_pg_cluster_start_at(struct sim_pg_cluster *c, const char *cluster_dir,
                                   const char *log, const char *tmpl, bool detached)
{
    memset(c, 0, sizeof *c);
    if (sim_pg_find_bindir(c->bindir, sizeof c->bindir) < 0) {
        sim_log("pg: PostgreSQL server binaries not found (install Debian's postgresql "
                "package, or set HOTDATA_SIM_PG_BIN to the directory holding postgres and "
                "initdb)");
        return -1;
    }
    uid_t uid;
    gid_t gid;
    int as = sim_pg_run_as(&uid, &gid);
    if (as < 0)
        return -1;
    snprintf(c->dir, sizeof c->dir, "%s", cluster_dir);
    snprintf(c->log, sizeof c->log, "%s", log);
    if (!sim_pg_has_version(c->dir)) {
        if (tmpl && *tmpl && sim_pg_has_version(tmpl)) {
            if (sim_pg_copy_template(tmpl, c->dir) != 0) {
                sim_log("pg: cannot copy the template cluster %s to %s", tmpl, c->dir);
                return -1;
            }
        } else if (sim_pg_initdb(c->bindir, c->dir, c->log) != 0) {
            return -1;
        }
    }
    if (as) {
        if (sim_pg_chown_r(c->dir, uid, gid) != 0) {
            sim_log("pg: cannot chown %s to the postgres user", c->dir);
            return -1;
        }
        sim_pg_open_ancestors(c->dir);
    }
    chmod(c->dir, 0700);
    /* the socket lives in the cluster dir unless that path is too long for sun_path */
    if (strlen(c->dir) + strlen("/.s.PGSQL.5432") < SIM_PG_SOCK_MAX) {
        snprintf(c->sockdir, sizeof c->sockdir, "%s", c->dir);
    } else {
        snprintf(c->sockdir, sizeof c->sockdir, "/tmp/hotdata-sim-pg.XXXXXX");
        if (!mkdtemp(c->sockdir)) {
            sim_log("pg: mkdtemp: %s", strerror(errno));
            return -1;
        }
        c->own_sockdir = true;
        if (as && chown(c->sockdir, uid, gid) != 0)
            return -1;
    }
    sim_pg_clear_stale(c->dir, c->sockdir);
    char prog[SIM_PG_PATH], port[16], sock[SIM_PG_PATH];
    snprintf(prog, sizeof prog, "%s/postgres", c->bindir);
    snprintf(port, sizeof port, "%d", SIM_PG_PORT);
    snprintf(sock, sizeof sock, "unix_socket_directories=%s", c->sockdir);
    /* durability like the SQLite side (synchronous=OFF): survive a process restart, not a
     * power cut */
    char *argv[] = {prog,
                    "-D",
                    c->dir,
                    "-p",
                    port,
                    "-c",
                    "listen_addresses=",
                    "-c",
                    sock,
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "shared_buffers=32MB",
                    "-c",
                    "max_connections=30",
                    "-c",
                    "autovacuum=off",
                    "-c",
                    "TimeZone=UTC",
                    "-c",
                    "log_min_messages=warning",
                    "-c",
                    "logging_collector=off",
                    NULL};
    if (detached) {
        /* a server for many simulators (--pg-serve): its own session, never our child's
         * death signal; the fork in between makes init its parent */
        pid_t mid = fork();
        if (mid == 0) {
            setsid();
            pid_t srv = sim_pg_spawn(argv, c->log, uid, gid, false);
            _exit(srv > 0 ? 0 : 1);
        }
        int st = 0;
        if (mid < 0 || waitpid(mid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return -1;
        char conninfo[SIM_PG_PATH];
        snprintf(conninfo, sizeof conninfo, "host=%s port=%d user=hotdata dbname=postgres",
                 c->sockdir, SIM_PG_PORT);
        for (int waited = 0; waited < SIM_PG_START_WAIT_MS; waited += 20) {
            if (PQping(conninfo) == PQPING_OK)
                break;
            sim_pg_sleep_ms(20);
        }
        snprintf(c->conninfo, sizeof c->conninfo, "%s", conninfo);
        return PQping(conninfo) == PQPING_OK ? 0 : -1;
    }
    c->pid = sim_pg_spawn(argv, c->log, uid, gid, true);
    if (c->pid < 0) {
        c->pid = 0;
        return -1;
    }
    if (sim_pg_wait_ready(c) < 0) {
        sim_log("pg: the server did not start (see %s)", c->log);
        sim_pg_cluster_stop(c);
        return -1;
    }
    snprintf(c->conninfo, sizeof c->conninfo,
             "host=%s port=%d user=hotdata dbname=postgres application_name=hotdata-sim",
             c->sockdir, SIM_PG_PORT);
    return 0;
}

void sim_pg_cluster_stop(struct sim_pg_cluster *c)
{
    if (c->pid > 0) {
        /* fast shutdown, then immediate, then kill */
        static const int sigs[] = {SIGINT, SIGQUIT, SIGKILL};
        int st = 0;
        bool gone = false;
        for (size_t s = 0; s < 3 && !gone; s++) {
            kill(c->pid, sigs[s]);
            for (int waited = 0; waited < SIM_PG_STOP_WAIT_MS / 2; waited += 10) {
                if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
                    gone = true;
                    break;
                }
                sim_pg_sleep_ms(10);
            }
        }
        if (!gone)
            waitpid(c->pid, &st, 0);
        c->pid = 0;
    }
    if (c->own_sockdir) {
        char p[SIM_PG_PATH];
        snprintf(p, sizeof p, "%s/.s.PGSQL.%d", c->sockdir, SIM_PG_PORT);
        unlink(p);
        snprintf(p, sizeof p, "%s/.s.PGSQL.%d.lock", c->sockdir, SIM_PG_PORT);
        unlink(p);
        rmdir(c->sockdir);
        c->own_sockdir = false;
    }
}

int sim_pg_make_template(const char *dir)
{
    char bindir[PATH_MAX];
    if (sim_pg_find_bindir(bindir, sizeof bindir) < 0) {
        sim_log("pg: PostgreSQL server binaries not found");
        return -1;
    }
    if (sim_pg_has_version(dir))
        return 0;
    /* initdb into a fresh sibling, then rename: a half-made template is never used */
    char tmp[SIM_PG_PATH], log[SIM_PG_PATH + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", dir, (int)getpid());
    snprintf(log, sizeof log, "%s.log", tmp);
    if (sim_pg_initdb(bindir, tmp, log) != 0)
        return -1;
    if (rename(tmp, dir) != 0) {
        if (sim_pg_has_version(dir))
            return 0; /* someone else made it first */
        sim_log("pg: rename %s -> %s: %s", tmp, dir, strerror(errno));
        return -1;
    }
    unlink(log);
    return 0;
}

static int sim_pg_rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

int sim_pg_serve(const char *dir)
{
    char log[SIM_PG_PATH];
    snprintf(log, sizeof log, "%s.log", dir);
    struct sim_pg_cluster c;
    char pidfile[SIM_PG_PATH];
    snprintf(pidfile, sizeof pidfile, "%s/postmaster.pid", dir);
    FILE *f = fopen(pidfile, "r");
    if (f) { /* still running from an interrupted run: stop it */
        fclose(f);
        sim_pg_serve_stop(dir);
    }
    /* always a fresh cluster: nothing (no seed cache, no schema) outlives one test run */
    nftw(dir, sim_pg_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (sim_pg_cluster_start_at(&c, dir, log, NULL, true) < 0) {
        sim_log("pg: the shared server did not start (see %s)", log);
        return -1;
    }
    /* DIR.conninfo: where clients (the test harness) find it; removed by --pg-serve-stop */
    char path[SIM_PG_PATH + 16], tmp[SIM_PG_PATH + 32];
    snprintf(path, sizeof path, "%s.conninfo", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out || fprintf(out, "%s\n", c.conninfo) < 0 || fclose(out) != 0 || rename(tmp, path))
        return -1;
    printf("%s\n", c.conninfo);
    return 0;
}

int sim_pg_serve_stop(const char *dir)
{
    char info[SIM_PG_PATH + 16];
    snprintf(info, sizeof info, "%s.conninfo", dir);
    unlink(info);
    char pidfile[SIM_PG_PATH];
    snprintf(pidfile, sizeof pidfile, "%s/postmaster.pid", dir);
    FILE *f = fopen(pidfile, "r");
    if (!f)
        return 0;
    long pid = 0;
    char sockdir[SIM_PG_PATH] = "";
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    /* postmaster.pid line 5 is the socket directory */
    char line[SIM_PG_PATH];
    for (int i = 1; i <= 5 && fgets(line, sizeof line, f); i++)
        if (i == 5)
            sscanf(line, "%4095s", sockdir);
    fclose(f);
    if (sim_pg_pid_runs_in((pid_t)pid, dir)) {
        static const int sigs[] = {SIGINT, SIGQUIT, SIGKILL};
        for (size_t s = 0; s < 3 && kill((pid_t)pid, 0) == 0; s++) {
            kill((pid_t)pid, sigs[s]);
            for (int w = 0; w < SIM_PG_STOP_WAIT_MS / 2 && kill((pid_t)pid, 0) == 0; w += 20)
                sim_pg_sleep_ms(20);
        }
    }
    unlink(pidfile);
    if (sockdir[0] && strcmp(sockdir, dir) != 0 && !strncmp(sockdir, "/tmp/hotdata-sim-pg.", 20)) {
        char p[SIM_PG_PATH + 32];
        snprintf(p, sizeof p, "%s/.s.PGSQL.%d.lock", sockdir, SIM_PG_PORT);
        unlink(p);
        rmdir(sockdir);
    }
    return 0;
}
