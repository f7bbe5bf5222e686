/* tandem.h: the C ABI of the Tandem SDK, for Electron/N-API, Swift, C#, Qt and plain C.
 *
 * Conventions (as llama.h and sqlite3.h):
 *   - Opaque handles with explicit create/free; tandem_assistant_free(NULL) is a no-op.
 *   - Parameters come in a struct filled by tandem_assistant_default_params().
 *   - Every call that can fail returns a tandem_status; the message of the last failure on a
 *     handle is tandem_errmsg(handle). Constructors return NULL on failure, write the status
 *     to `status` and the reason to `error` (a buffer the caller owns) when those are not NULL.
 *   - No call lets a C++ exception out: every entry point catches everything and reports it
 *     as a status (TANDEM_STATUS_FAILED with "unknown error" for what it cannot name).
 *   - Strings are UTF-8, NUL-terminated; returned strings belong to the library.
 *   - Callbacks get the caller's user_data back; they run on the calling thread (streamed
 *     text), or on an internal thread (events, and streamed text of cloud answers); keep them short
 *     and do not call tandem_assistant_free from them.
 *
 * Thread safety: one handle may be used from several threads. tandem_assistant_suggest calls
 * are serialized; tandem_assistant_cancel may be called from any thread at any time.
 */
#ifndef TANDEM_H
#define TANDEM_H

#include <stddef.h>
#include <stdint.h>

/* TANDEM_API marks the entry points. TANDEM_SHARED: libtandem is a shared library (CMake's
 * Tandem::tandem and pkg-config's Cflags define it for its users); TANDEM_BUILD: this is
 * libtandem itself being built. Without TANDEM_SHARED (a static build), nothing is marked. */
#ifdef TANDEM_SHARED
#    if defined(_WIN32) && !defined(__MINGW32__)
#        ifdef TANDEM_BUILD
#            define TANDEM_API __declspec(dllexport)
#        else
#            define TANDEM_API __declspec(dllimport)
#        endif
#    else
#        define TANDEM_API __attribute__((visibility("default")))
#    endif
#else
#    define TANDEM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tandem_status {
    TANDEM_STATUS_OK = 0,
    TANDEM_STATUS_INVALID_ARGUMENT = 1, /* a NULL handle or pointer, a value out of range, an
                                           unknown backend name */
    TANDEM_STATUS_CANCELLED = 2,        /* stopped by tandem_assistant_cancel or the callback */
    TANDEM_STATUS_FAILED = 3,           /* anything else (no GPU memory, out of memory, ...);
                                           see tandem_errmsg */
    TANDEM_STATUS_FILE_NOT_FOUND = 4,   /* a file the caller named (model, router, config)
                                           does not exist */
    TANDEM_STATUS_INVALID_FILE = 5,     /* such a file exists but cannot be read or is not
                                           valid (GGUF, tokenizer, router or config JSON) */
    TANDEM_STATUS_CLOUD_ERROR = 6,      /* the cloud settings were rejected (cloud_url not
                                           http:// or https://, cloud_token not printable) */
} tandem_status;

typedef struct tandem_assistant tandem_assistant; /* opaque */

typedef enum tandem_event_kind {
    TANDEM_EVENT_MODEL_LOADED = 0,
    TANDEM_EVENT_GPU_NOT_USED = 1,
    TANDEM_EVENT_ONLINE = 2,
    TANDEM_EVENT_OFFLINE = 3,
    TANDEM_EVENT_MEMORY_UPDATED = 4,
    TANDEM_EVENT_MEMORY_UNAVAILABLE = 5,
    TANDEM_EVENT_MEMORY_REQUESTED = 6,
    TANDEM_EVENT_ERROR = 7,
    TANDEM_EVENT_MEMORY_APPLIED = 8,  /* new notes evaluated in the background; the next suggestion uses them */
    TANDEM_EVENT_MEMORY_RESET = 9,    /* the cloud's feed is from another epoch (a reset or restored
                                         cloud): the local notes were replaced by the feed from its start */
} tandem_event_kind;

/* Receives streamed text (not NUL-terminated: `len` bytes, whole UTF-8 sequences).
 * Return 0 to stop the generation, non-zero to go on. */
typedef int (*tandem_text_cb)(const char* text, size_t len, void* user_data);
typedef void (*tandem_event_cb)(tandem_event_kind kind, const char* message, void* user_data);
/* The local model's progress through a prompt, after each forward pass: `done` prompt tokens
 * evaluated or reused of `total`. Return 0 to stop the call, non-zero to go on. */
typedef int (*tandem_progress_cb)(int64_t done, int64_t total, void* user_data);

typedef struct tandem_assistant_params {
    const char* model_path;      /* GGUF file (required) */
    const char* backend;         /* "auto" (default), "cpu" or "cuda" */
    int32_t n_threads;           /* 0: all cores */
    int32_t n_ctx;               /* default 2048 */
    const char* memory_db;       /* NULL: no memory */
    const char* cloud_url;       /* NULL: no cloud */
    const char* cloud_token;     /* NULL: none; never logged or stored */
    const char* router_path;     /* NULL: no router */
    double router_threshold;     /* < 0: the router file's */
    int32_t privacy_mode;        /* non-zero: never contact the cloud */
    /* Suggestions (tandem_assistant_suggest). A suggestion ends where the sentence it completes
     * ends (suggestion_end), so suggestion_tokens is only a cap. Values out of range make
     * tandem_assistant_init fail with TANDEM_STATUS_INVALID_ARGUMENT naming the field. */
    int32_t suggestion_tokens;   /* the most tokens a suggestion takes; default 48; <= 0: the default */
    const char* suggestion_end;  /* "sentence" (default), "line" or "paragraph"; NULL: the default */
    float temperature;           /* 0 (default): greedy, the same text gets the same suggestion */
    int32_t top_k;               /* with temperature > 0: the k most likely tokens; default 40, <= 0: off */
    float top_p;                 /* with temperature > 0: nucleus in (0, 1]; default 0.95, 1: off */
    uint64_t seed;               /* the sampling seed */
    const char* const* stop;     /* n_stop strings (may be NULL when n_stop is 0): a suggestion
                                    ends before the first of them; copied by init */
    size_t n_stop;
    tandem_event_cb on_event;    /* may be NULL */
    void* event_user_data;
} tandem_assistant_params;

/* Defaults for every field (those of tandem::AssistantConfig). */
TANDEM_API tandem_assistant_params tandem_assistant_default_params(void);

/* CONSTRUCTOR. Returns NULL on failure; then the status is written to *status and the reason
 * to error (at most error_size bytes, NUL-terminated), each when not NULL. On success *status
 * is TANDEM_STATUS_OK. */
TANDEM_API tandem_assistant* tandem_assistant_init(const tandem_assistant_params* params, tandem_status* status, char* error,
                                                   size_t error_size);
/* CONSTRUCTOR from a JSON config file (the fields of tandem::AssistantConfig). A missing config
 * file is TANDEM_STATUS_FILE_NOT_FOUND, bad JSON or an unknown field TANDEM_STATUS_INVALID_FILE. */
TANDEM_API tandem_assistant* tandem_assistant_init_from_file(const char* config_path, tandem_event_cb on_event,
                                                             void* event_user_data, tandem_status* status, char* error,
                                                             size_t error_size);
/* DESTRUCTOR. NULL is a harmless no-op. */
TANDEM_API void tandem_assistant_free(tandem_assistant* a);

/* METHOD. Continues `document` (doc_len bytes) at byte offset `cursor`, streaming the text to
 * on_text. TANDEM_STATUS_CANCELLED when a newer call or tandem_assistant_cancel stopped it. */
TANDEM_API tandem_status tandem_assistant_suggest(tandem_assistant* a, const char* document, size_t doc_len, size_t cursor,
                                                  tandem_text_cb on_text, void* user_data);
/* METHOD. Stops the running suggestion within one token (or one forward pass of its prompt,
   while the prompt is evaluated). Any thread. */
TANDEM_API void tandem_assistant_cancel(tandem_assistant* a);

/* METHOD. Answers an instruction about a selection, routed to the local model or the cloud.
 * OUT: answered_by receives "local" or "cloud" (a static string) when not NULL. The reason is
 * then available from tandem_assistant_last_reason. */
TANDEM_API tandem_status tandem_assistant_ask(tandem_assistant* a, const char* instruction, const char* selection,
                                              int32_t private_query, int32_t max_tokens, tandem_text_cb on_text,
                                              void* user_data, const char** answered_by);
/* METHOD. tandem_assistant_ask, and on_progress (may be NULL) follows a local answer's prompt; it
 * gets the same user_data as on_text. */
TANDEM_API tandem_status tandem_assistant_ask_with_progress(tandem_assistant* a, const char* instruction,
                                                            const char* selection, int32_t private_query,
                                                            int32_t max_tokens, tandem_text_cb on_text,
                                                            tandem_progress_cb on_progress, void* user_data,
                                                            const char** answered_by);
/* Why the last ask went where it did: a copy made for the calling thread, valid until this
 * thread's next call of this function ("" for NULL). */
TANDEM_API const char* tandem_assistant_last_reason(tandem_assistant* a);

/* METHOD. The quality/cost knob in [0, 1]. */
TANDEM_API tandem_status tandem_assistant_set_router_threshold(tandem_assistant* a, double threshold);
TANDEM_API tandem_status tandem_assistant_set_privacy_mode(tandem_assistant* a, int32_t on);

/* METHOD. Points the memory sync and cloud asks at another cloud at run time (one that moved,
 * or came back on another port), with bearer `cloud_token` (NULL: none). NULL or "" cloud_url:
 * no cloud from now on. Sync goes on from the stored cursor (another cloud's feed starts over:
 * TANDEM_EVENT_MEMORY_RESET). TANDEM_STATUS_CLOUD_ERROR for a malformed URL or token (nothing
 * changes then; tandem_errmsg says why). Any thread, but not from the event callback. */
TANDEM_API tandem_status tandem_assistant_set_cloud(tandem_assistant* a, const char* cloud_url, const char* cloud_token);
/* The cloud URL in use ("" for none or a NULL handle): a copy made for the calling thread,
 * valid until this thread's next call of this function. */
TANDEM_API const char* tandem_assistant_cloud_url(tandem_assistant* a);
/* METHOD. The app's stable id of the document being edited (NULL or "": none): memory requests
 * carry it and retrieval prefers the notes made for it. TANDEM_STATUS_INVALID_ARGUMENT when it
 * is over 256 bytes or has control characters. Any thread. */
TANDEM_API tandem_status tandem_assistant_set_document(tandem_assistant* a, const char* document_id);

/* Writes a JSON object with the usage totals into buf (at most buf_size bytes, NUL-terminated).
 * Returns the length of the JSON text, or the negative of the size needed when buf is too small
 * (call with NULL, 0 first); 0 for a NULL handle or a failure (then see tandem_errmsg). */
TANDEM_API int64_t tandem_assistant_usage_json(tandem_assistant* a, char* buf, size_t buf_size);

/* The message of the last failure on `a` ("" if none; "invalid handle" for NULL). The string
 * is a copy taken under the lock the failing calls write it with, made for the calling
 * thread: it stays valid and unchanged until this thread's next tandem_errmsg call, whatever
 * other threads do meanwhile. */
TANDEM_API const char* tandem_errmsg(const tandem_assistant* a);

/* The library version: CMake's project version, e.g. "0.1.0" (a static string). */
TANDEM_API const char* tandem_version(void);

#ifdef __cplusplus
}
#endif

#endif /* TANDEM_H */
