/* Drives the C ABI from C: create, suggest with a callback, cancel from the callback, ask (with
 * the prompt's progress),
 * usage JSON with the size-query convention, errors and their status codes, the error message
 * a thread read staying its own, free(NULL), the version. Exit code 0 = pass. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tandem/tandem.h"

static int failures = 0;
#define CHECK(cond)                                                     \
    do {                                                                \
        if (!(cond)) {                                                  \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            failures++;                                                 \
        }                                                               \
    } while (0)

struct sink {
    char text[4096];
    size_t len;
    int calls;
    int stop_after;
};

static int on_text(const char* text, size_t len, void* ud) {
    struct sink* s = (struct sink*)ud;
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
        s->text[s->len] = '\0';
    }
    s->calls++;
    return s->stop_after == 0 || s->calls < s->stop_after;
}

struct progress {
    int calls, stop_after;
    int64_t first, last, total;
};

static int on_progress(int64_t done, int64_t total, void* ud) {
    struct progress* g = (struct progress*)ud;
    if (g->calls == 0) g->first = done;
    CHECK(done > g->last && done <= total);
    g->last = done;
    g->total = total;
    g->calls++;
    return g->stop_after == 0 || g->calls < g->stop_after;
}

static int events = 0;
static void on_event(tandem_event_kind kind, const char* message, void* ud) {
    (void)kind;
    (void)message;
    (void)ud;
    events++;
}

/* A failing call on another thread (no router loaded: writes the handle's error). */
static void* fail_on_thread(void* a) {
    tandem_assistant_set_router_threshold((tandem_assistant*)a, 0.5);
    return NULL;
}

/* The status of a constructor that must fail; err gets its message. */
static tandem_status init_status(const tandem_assistant_params* p, char* err, size_t n) {
    tandem_status st = TANDEM_STATUS_OK;
    tandem_assistant* a = tandem_assistant_init(p, &st, err, n);
    CHECK(a == NULL);
    tandem_assistant_free(a);
    return st;
}

static tandem_status init_file_status(const char* json, char* err, size_t n) {
    char path[] = "/tmp/tandem-test-c-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, json, strlen(json)) == (ssize_t)strlen(json));
    close(fd);
    tandem_status st = TANDEM_STATUS_OK;
    CHECK(tandem_assistant_init_from_file(path, NULL, NULL, &st, err, n) == NULL);
    unlink(path);
    return st;
}

int main(void) {
    char err[512] = "";
    tandem_assistant_params p = tandem_assistant_default_params();
    CHECK(p.n_ctx == 2048); /* tandem::AssistantConfig's defaults */
    CHECK(p.suggestion_tokens == 48);
    CHECK(strcmp(p.suggestion_end, "sentence") == 0);
    CHECK(p.temperature == 0.0f);
    CHECK(p.top_k == 40);
    CHECK(p.top_p > 0.94f && p.top_p < 0.96f);
    CHECK(p.stop == NULL && p.n_stop == 0);
    CHECK(p.router_threshold == -1);
    CHECK(strcmp(p.backend, "auto") == 0);

    /* status codes: a bad argument, a missing file, a file that is not valid, the cloud's settings */
    CHECK(init_status(NULL, err, sizeof err) == TANDEM_STATUS_INVALID_ARGUMENT);
    CHECK(init_status(&p, err, sizeof err) == TANDEM_STATUS_INVALID_ARGUMENT); /* no model */
    CHECK(strstr(err, "model_path") != NULL);
    p.model_path = "/nonexistent/model.gguf";
    CHECK(init_status(&p, err, sizeof err) == TANDEM_STATUS_FILE_NOT_FOUND);
    CHECK(strstr(err, "/nonexistent/model.gguf") != NULL);
    p.model_path = TANDEM_SHARED_DIR "/corpus/wikitext-2-test.raw";
    CHECK(init_status(&p, err, sizeof err) == TANDEM_STATUS_INVALID_FILE);
    CHECK(strstr(err, "wikitext-2-test.raw") != NULL);
    p.model_path = TANDEM_SHARED_DIR "/models/stories260K.gguf";
    p.backend = "tpu";
    CHECK(init_status(&p, err, sizeof err) == TANDEM_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(err, "backend") != NULL);
    p.backend = "cpu";
    p.router_path = "/nonexistent/router.json";
    CHECK(init_status(&p, err, sizeof err) == TANDEM_STATUS_FILE_NOT_FOUND);
    p.router_path = NULL;
    p.cloud_url = "ftp://example.com";
    CHECK(init_status(&p, err, sizeof err) == TANDEM_STATUS_CLOUD_ERROR);
    CHECK(strstr(err, "base_url") != NULL);
    p.cloud_url = NULL;
    tandem_status st = TANDEM_STATUS_OK;
    CHECK(tandem_assistant_init_from_file("/nonexistent/config.json", NULL, NULL, &st, err, sizeof err) == NULL);
    CHECK(st == TANDEM_STATUS_FILE_NOT_FOUND);
    CHECK(init_file_status("{\"model_path\": 1", err, sizeof err) == TANDEM_STATUS_INVALID_FILE);
    CHECK(init_file_status("{\"model_path\": \"m.gguf\", \"nctx\": 1}", err, sizeof err) == TANDEM_STATUS_INVALID_FILE);
    CHECK(strstr(err, "nctx") != NULL);
    CHECK(init_file_status("{\"model_path\": \"/nonexistent/m.gguf\"}", err, sizeof err) == TANDEM_STATUS_FILE_NOT_FOUND);

    /* suggestion settings out of range: the field is named */
    p.top_p = 0;
    CHECK(init_status(&p, err, sizeof err) == TANDEM_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(err, "suggestion_top_p") != NULL);
    p.top_p = 0.95f;
    p.suggestion_end = "word";
    CHECK(init_status(&p, err, sizeof err) == TANDEM_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(err, "suggestion_end") != NULL);
    p.suggestion_end = NULL; /* the default */
    p.temperature = -1;
    CHECK(init_status(&p, err, sizeof err) == TANDEM_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(err, "suggestion_temperature") != NULL);
    p.temperature = 0;
    p.n_stop = 1;
    CHECK(init_status(&p, err, sizeof err) == TANDEM_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(err, "stop") != NULL);
    p.n_stop = 0;

    p.n_ctx = 512;
    p.n_threads = 2;
    p.suggestion_tokens = 10;
    p.on_event = on_event;
    st = TANDEM_STATUS_FAILED;
    tandem_assistant* a = tandem_assistant_init(&p, &st, err, sizeof err);
    if (!a) {
        fprintf(stderr, "init failed: %s\n", err);
        return 1;
    }
    CHECK(events >= 1);
    CHECK(st == TANDEM_STATUS_OK);

    const char* doc = "Once upon a time, there was a little girl";
    struct sink s;
    memset(&s, 0, sizeof s);
    CHECK(tandem_assistant_suggest(a, doc, strlen(doc), strlen(doc), on_text, &s) == TANDEM_STATUS_OK);
    CHECK(strcmp(s.text, " named Lily.") == 0); /* greedy, to the end of the sentence */

    memset(&s, 0, sizeof s);
    s.stop_after = 2;
    CHECK(tandem_assistant_suggest(a, doc, strlen(doc), strlen(doc), on_text, &s) == TANDEM_STATUS_CANCELLED);
    CHECK(s.calls == 2);

    CHECK(tandem_assistant_suggest(a, doc, strlen(doc), strlen(doc) + 5, NULL, NULL) == TANDEM_STATUS_INVALID_ARGUMENT);
    const char* msg = tandem_errmsg(a);
    CHECK(strstr(msg, "cursor") != NULL);
    /* another thread's failure does not change the string this thread read */
    pthread_t t;
    CHECK(pthread_create(&t, NULL, fail_on_thread, a) == 0);
    pthread_join(t, NULL);
    CHECK(strstr(msg, "cursor") != NULL);
    CHECK(strstr(tandem_errmsg(a), "router") != NULL);

    const char* who = NULL;
    memset(&s, 0, sizeof s);
    CHECK(tandem_assistant_ask(a, "Who is Lily?", "", 0, 6, on_text, &s, &who) == TANDEM_STATUS_OK);
    CHECK(who != NULL && strcmp(who, "local") == 0);
    CHECK(strcmp(tandem_assistant_last_reason(a), "no cloud configured") == 0);

    /* A selection of two forward passes (256 tokens each; the context holds 512): progress after each, then
     * stopped by the callback's 0 after the first pass of another selection. */
    char selection[8192] = "";
    for (int i = 0; i < 24; i++) strcat(selection, "Lily went to the park with her mom and saw a big dog. ");
    struct progress pg;
    memset(&pg, 0, sizeof pg);
    CHECK(tandem_assistant_ask_with_progress(a, "Who is Lily?", selection, 0, 2, NULL, on_progress, &pg, NULL) ==
          TANDEM_STATUS_OK);
    if (pg.calls == 0) fprintf(stderr, "ask_with_progress: %s\n", tandem_errmsg(a)); /* why it failed */
    CHECK(pg.calls >= 2);
    CHECK(pg.first < pg.total);
    CHECK(pg.last == pg.total);
    memset(&pg, 0, sizeof pg);
    pg.stop_after = 1;
    selection[0] = 'M';
    CHECK(tandem_assistant_ask_with_progress(a, "Who is Lily?", selection, 0, 2, NULL, on_progress, &pg, NULL) ==
          TANDEM_STATUS_CANCELLED);
    CHECK(pg.calls == 1);
    CHECK(pg.last < pg.total);

    CHECK(tandem_assistant_set_router_threshold(a, 0.5) == TANDEM_STATUS_FAILED); /* no router */
    CHECK(strstr(tandem_errmsg(a), "router") != NULL);

    /* The cloud can move at run time; a malformed URL or token changes nothing. */
    CHECK(strcmp(tandem_assistant_cloud_url(a), "") == 0);
    CHECK(tandem_assistant_set_cloud(a, "ftp://nowhere", NULL) == TANDEM_STATUS_CLOUD_ERROR);
    CHECK(strstr(tandem_errmsg(a), "http://") != NULL);
    CHECK(tandem_assistant_set_cloud(a, "http://127.0.0.1:9", "bad token") == TANDEM_STATUS_CLOUD_ERROR);
    CHECK(strcmp(tandem_assistant_cloud_url(a), "") == 0);
    CHECK(tandem_assistant_set_cloud(a, "http://127.0.0.1:9", "t0ken") == TANDEM_STATUS_OK);
    CHECK(strcmp(tandem_assistant_cloud_url(a), "http://127.0.0.1:9") == 0);
    CHECK(tandem_assistant_set_cloud(a, NULL, NULL) == TANDEM_STATUS_OK);
    CHECK(strcmp(tandem_assistant_cloud_url(a), "") == 0);
    CHECK(tandem_assistant_ask(a, "Why?", "", 0, 2, NULL, NULL, NULL) == TANDEM_STATUS_OK);
    CHECK(strcmp(tandem_assistant_last_reason(a), "no cloud configured") == 0);
    CHECK(tandem_assistant_set_cloud(NULL, "http://127.0.0.1:9", NULL) == TANDEM_STATUS_INVALID_ARGUMENT);
    CHECK(strcmp(tandem_assistant_cloud_url(NULL), "") == 0);
    /* The document being edited: memory requests carry its id. */
    CHECK(tandem_assistant_set_document(a, "doc-1") == TANDEM_STATUS_OK);
    CHECK(tandem_assistant_set_document(a, NULL) == TANDEM_STATUS_OK);
    CHECK(tandem_assistant_set_document(a, "line\nbreak") == TANDEM_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tandem_errmsg(a), "document_id") != NULL);
    CHECK(tandem_assistant_set_document(NULL, "doc-1") == TANDEM_STATUS_INVALID_ARGUMENT);
    CHECK(TANDEM_EVENT_MEMORY_RESET == 9);

    int64_t need = tandem_assistant_usage_json(a, NULL, 0);
    CHECK(need < 0);
    char* buf = (char*)malloc((size_t)-need);
    CHECK(tandem_assistant_usage_json(a, buf, (size_t)-need) == -need - 1);
    CHECK(strstr(buf, "\"suggestions\":2") != NULL);
    free(buf);

    tandem_assistant_free(a);

    /* stop strings, and sampling: the same seed gives the same suggestion */
    const char* stops[] = {" Lily"};
    p.stop = stops;
    p.n_stop = 1;
    p.temperature = 0.9f;
    p.seed = 7;
    p.on_event = NULL;
    a = tandem_assistant_init(&p, &st, err, sizeof err);
    CHECK(a != NULL);
    if (a) {
        const char* start = "Once upon a time, there was a little girl named";
        struct sink s1, s2;
        memset(&s1, 0, sizeof s1);
        memset(&s2, 0, sizeof s2);
        CHECK(tandem_assistant_suggest(a, start, strlen(start), strlen(start), on_text, &s1) == TANDEM_STATUS_OK);
        CHECK(tandem_assistant_suggest(a, start, strlen(start), strlen(start), on_text, &s2) == TANDEM_STATUS_OK);
        CHECK(strcmp(s1.text, s2.text) == 0);
        CHECK(strstr(s1.text, " Lily") == NULL);
        tandem_assistant_free(a);
    }
    tandem_assistant_free(NULL);
    CHECK(strcmp(tandem_errmsg(NULL), "invalid handle") == 0);
    CHECK(strcmp(tandem_version(), TANDEM_EXPECTED_VERSION) == 0); /* CMake's project version */
    printf("test-c: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
