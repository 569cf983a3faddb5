/*
 * sim_uploads (sim/uploads.c): what other parts call of /v1/files.
 *
 * Rules: loop thread only.
 */
#ifndef SIM_UPLOADS_H
#define SIM_UPLOADS_H

#include "sim_types.h"

/*
 * Largest POST /v1/files body accepted: 2 GB, or 20 GB with ?streaming=true
 * (--max-upload-bytes N: N and 10 N). The streaming filter refuses a declared
 * Content-Length over it before reading the body, and a chunked body as soon as it grows
 * over it; the handler answers 413 for anything else beyond it.
 */
uint64_t sim_uploads_max_bytes(struct sim_ctx *ctx, bool streaming);
/* Path of a stored upload (malloc'd) and its content type (malloc'd or NULL); NULL when the
 * upload is unknown. For datasets. */
char *sim_upload_path(struct sim_ws *ws, const char *upload_id, char **content_type);
/* Set an upload's status ("uploaded", "consumed"). */
void sim_upload_set_status(struct sim_ws *ws, const char *upload_id, const char *status);

#endif
