/*
 * config: hotgate's configuration, read from an INI file (libinih).
 *
 * Rules. Every key of every module lives here, with its default, so one file documents
 * the whole surface (conf/hotgate.conf mirrors it, fully commented). Unknown sections and
 * keys are errors; every error names the file, the line and the key. Values:
 *   durations  a number with an optional unit: ms, s, m, h. A bare number is SECONDS and
 *              may be fractional ("0.5" = 500 ms) - except for keys whose name ends in
 *              "_ms", where a bare number is milliseconds. Stored as milliseconds.
 *   sizes      a number with an optional binary suffix K, M, G, T (KiB.. ; "KB", "KiB"
 *              accepted too). Stored as bytes.
 *   booleans   yes/no, true/false, on/off, 1/0.
 *   lists      comma separated, blanks around items ignored.
 *
 * Secrets. Upstream tokens are loaded by config_load() from a file (mode 0600 or
 * stricter, else an error), an environment variable or a systemd credential
 * ($CREDENTIALS_DIRECTORY/<name>), never from the command line. They live in memory
 * marked MADV_DONTDUMP and are wiped by config_free(). Client keys are never stored: only
 * their SHA-256 (hex in the file, raw here).
 *
 * Threading: a loaded config is immutable and shared read-only by all threads. A reload
 * (SIGHUP) loads a new one beside it: cfgsnap.h hands out counted references to the
 * current one (refs, generation below belong to it).
 */
#ifndef HG_CONFIG_H
#define HG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* Client mode, from the profile. */
enum hg_mode {
    HG_MODE_READ_ONLY = 0,
    HG_MODE_FULL,
};

/* A secret held in its own non-dumpable page(s). */
struct hg_secret {
    char *data; /* NUL terminated, len bytes; NULL if not loaded */
    size_t len;
    size_t map_len; /* internal */
};

enum hg_secret_source {
    HG_SECRET_NONE = 0,
    HG_SECRET_FILE,    /* token_file */
    HG_SECRET_ENV,     /* token_env */
    HG_SECRET_SYSTEMD, /* token_credential */
};

struct hg_credential {
    char *name;
    int line; /* line of the section header */
    enum hg_secret_source source;
    char *source_value; /* path, variable or credential name (not secret) */
    struct hg_secret token;
    double rate;             /* upstream requests per second, 0 = unlimited */
    unsigned burst;          /* token bucket depth, 0 = max(1, rate) */
    unsigned max_concurrent; /* in-flight upstream requests, 0 = unlimited */
    int token_line;          /* line of the token_* key, for errors */
    const char *token_key;   /* "token_file", "token_env" or "token_credential" */
    char cache_id[33];       /* what cache keys carry for it: 32 hex of SHA-256(token), or of the
                                name when no token was loaded; never the token itself */
};

struct hg_class {
    char *name;
    int line;
    unsigned weight; /* fair-queue weight (>= 1) */
};

struct hg_client {
    char *name;
    int line;
    unsigned char key_sha256[32];
    int has_key;
    char *credential_name;
    const struct hg_credential *credential; /* resolved */
    char **workspaces; /* allowed workspaces; NULL with all_workspaces = 1 for "*" */
    size_t n_workspaces;
    int all_workspaces;
    char *default_workspace; /* NULL if none */
    enum hg_mode mode;
    char *class_name; /* default "interactive" */
    const struct hg_class *cls;
    double rate;         /* per-client admission rate, 0 = unlimited */
    unsigned burst;      /* 0 = max(1, rate) */
    unsigned max_queued; /* 0 = [queue] max_per_client */
    int credential_line, class_line, default_workspace_line, key_line; /* for errors */
};

/* [upstream] client: which transport carries upstream exchanges (upstream.h) */
enum hg_upstream_client {
    HG_UPSTREAM_CLIENT_AUTO = 0, /* native for http:// to an IP literal or localhost, else curl */
    HG_UPSTREAM_CLIENT_CURL,     /* libcurl multi: TLS, HTTP/2, any host name */
    HG_UPSTREAM_CLIENT_NATIVE,   /* hotgate's own HTTP/1.1 client: plain http:// only */
};

struct hg_config {
    char *path;
    unsigned long refs;  /* cfgsnap.h: holders of this snapshot (atomic) */
    uint64_t generation; /* cfgsnap.h: 1 for the first config, +1 per reload */

    struct {
        char **listen; /* "host:port" */
        size_t n_listen;
        char *unix_socket;             /* NULL if none */
        unsigned threads;              /* resolved: "auto" = online cores */
        size_t max_header_size;        /* whole request head */
        uint64_t max_body_size;        /* 0 = unlimited */
        uint64_t read_timeout_ms;      /* max gap while reading a request */
        uint64_t body_timeout_ms;      /* max gap between reads of a request body */
        uint64_t body_min_rate;        /* bytes/s a body must average after body_timeout */
        unsigned max_connections;      /* open client connections; 0 = from RLIMIT_NOFILE */
        uint64_t write_timeout_ms;     /* max gap while writing a response */
        uint64_t keepalive_timeout_ms; /* idle keep-alive connection */
        uint64_t drain_timeout_ms;     /* on SIGTERM */
        char *access_log;              /* "stderr", "off" or a path */
        int log_level;                 /* LOG_ERR.. LOG_DEBUG (syslog numbers) */
    } server;

    struct {
        char **listen;
        size_t n_listen; /* 0 = no admin listener */
        enum hg_secret_source token_source;
        char *token_source_value;
        struct hg_secret token; /* empty = no token required */
        int token_line;
        const char *token_key;
    } admin;

    struct {
        char *url;     /* scheme://host[:port][/prefix], no trailing slash */
        char *ca_file; /* NULL = system store */
        int tls_verify;
        int http2;
        uint64_t connect_timeout_ms;
        uint64_t timeout_ms;      /* no progress for this long -> 504 */
        uint64_t idle_timeout_ms; /* pooled idle connection lifetime */
        unsigned max_connections_per_host;
        unsigned retries;
        uint64_t retry_backoff_ms;
        enum hg_upstream_client client; /* transport: see upstream.h */
        int client_line;
    } upstream;

    struct hg_credential *credentials;
    size_t n_credentials;
    struct hg_client *clients;
    size_t n_clients;
    struct hg_class *classes; /* always holds "interactive" (4) and "batch" (1) */
    size_t n_classes;

    struct {
        unsigned max_total;
        unsigned max_per_client;
        uint64_t deadline_ms;
        /* budget (budget.h): longest upstream Retry-After honoured; AIMD of the effective
         * rate: x decrease on a shed, floor (fraction of rate), + increase x rate per s */
        uint64_t retry_after_max_ms;
        /* how often one request is sent again after the upstream shed it (429, or 503
         * with Retry-After); then the client gets the shed answer */
        unsigned shed_retries;
        double aimd_decrease, aimd_floor, aimd_increase;
        uint64_t aimd_window_ms; /* a shed within this long after the last pause: a cut */
    } queue;

    struct {
        int enabled;
        char *dir;
        uint64_t size;
        uint64_t max_entry_size;
        uint64_t ttl_query_ms;
        uint64_t ttl_metadata_ms;
        uint64_t ttl_immutable_ms;
        uint64_t stale_while_revalidate_ms;
        uint64_t stale_if_error_ms;
        uint64_t poll_window_ms;
        uint64_t negative_ttl_ms;
        double high_water; /* fraction of size, 0 < x <= 1 */
        /* ttl.<class> = duration: per TTL class of route.h (e.g. ttl.connections = 30s,
         * ttl.information_schema = 5m), overriding ttl_metadata/ttl_query/ttl_immutable */
        struct {
            char name[32];
            uint64_t ms;
        } class_ttl[32];
        size_t n_class_ttl;
    } cache;

    struct {
        int enabled;
        char *url;                 /* redis://host:port[/db] or unix:///path (redis.h) */
        char *password_file;       /* NULL = no AUTH; 0600 like tokens */
        struct hg_secret password; /* loaded with the other secrets */
        int password_line;
        char *key_prefix; /* prepended to every key and channel ("hg:") */
        uint64_t connect_timeout_ms;
        uint64_t op_timeout_ms;  /* one command's deadline (50 ms) */
        uint64_t max_entry_size; /* L2 holds entries up to this size (1 MiB) */
        char *sentinel;          /* "host:port,host:port" or NULL */
        char *sentinel_master;   /* master name for SENTINEL get-master-addr-by-name */
        double local_share;      /* budget fraction each instance uses while Redis is down */
        uint64_t stream_maxlen;  /* invalidation stream length (XADD MAXLEN ~) */
    } redis;
};

/*
 * Load and validate path. On failure returns NULL and writes every error, one a line
 * ("FILE:LINE: [section] key: message"), into err (may be NULL). load_secrets = 0 skips
 * reading tokens (unit tests of syntax); --check-config and the daemon load them.
 */
struct hg_config *config_load(const char *path, int load_secrets, char *err, size_t errlen);
void config_free(struct hg_config *cfg);
/* Wipe and unmap every secret of cfg (tokens), leaving the rest. */
void config_wipe_secrets(struct hg_config *cfg);

/* Lookups. */
const struct hg_credential *config_credential(const struct hg_config *cfg, const char *name);
const struct hg_class *config_class(const struct hg_config *cfg, const char *name);

/* Parsers, exposed for tests and other modules. 0 on success. */
int config_parse_duration_ms(const char *s, int bare_ms, uint64_t *out);
int config_parse_size(const char *s, uint64_t *out);
int config_parse_bool(const char *s, int *out);

/* Read a secret: from a file (mode must be 0600 or stricter), env var or systemd
 * credential. 0 on success; -1 with a message in err. */
int config_secret_load(enum hg_secret_source src, const char *value, struct hg_secret *out,
                       char *err, size_t errlen);
void config_secret_free(struct hg_secret *s);

#endif
