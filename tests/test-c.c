/* Drives the C ABI from C: create, suggest with a callback, cancel from the callback, ask,
 * usage JSON with the size-query convention, errors, free(NULL). Exit code 0 = pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int events = 0;
static void on_event(tandem_event_kind kind, const char* message, void* ud) {
    (void)kind;
    (void)message;
    (void)ud;
    events++;
}

int main(void) {
    char err[512] = "";
    tandem_assistant_params p = tandem_assistant_default_params();
    CHECK(p.n_ctx == 2048);
    CHECK(tandem_assistant_init(&p, err, sizeof err) == NULL); /* no model */
    CHECK(strstr(err, "model_path") != NULL);

    p.model_path = "/nonexistent/model.gguf";
    CHECK(tandem_assistant_init(&p, err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent/model.gguf") != NULL);

    p.model_path = TANDEM_SHARED_DIR "/models/stories260K.gguf";
    p.backend = "cpu";
    p.n_ctx = 512;
    p.n_threads = 2;
    p.suggestion_tokens = 10;
    p.on_event = on_event;
    tandem_assistant* a = tandem_assistant_init(&p, err, sizeof err);
    if (!a) {
        fprintf(stderr, "init failed: %s\n", err);
        return 1;
    }
    CHECK(events >= 1);

    const char* doc = "Once upon a time, there was a little girl";
    struct sink s;
    memset(&s, 0, sizeof s);
    CHECK(tandem_assistant_suggest(a, doc, strlen(doc), strlen(doc), on_text, &s) == TANDEM_STATUS_OK);
    CHECK(s.len > 0);

    memset(&s, 0, sizeof s);
    s.stop_after = 2;
    CHECK(tandem_assistant_suggest(a, doc, strlen(doc), strlen(doc), on_text, &s) == TANDEM_STATUS_CANCELLED);
    CHECK(s.calls == 2);

    CHECK(tandem_assistant_suggest(a, doc, strlen(doc), strlen(doc) + 5, NULL, NULL) == TANDEM_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tandem_errmsg(a), "cursor") != NULL);

    const char* who = NULL;
    memset(&s, 0, sizeof s);
    CHECK(tandem_assistant_ask(a, "Who is Lily?", "", 0, 6, on_text, &s, &who) == TANDEM_STATUS_OK);
    CHECK(who != NULL && strcmp(who, "local") == 0);
    CHECK(strcmp(tandem_assistant_last_reason(a), "no cloud configured") == 0);

    CHECK(tandem_assistant_set_router_threshold(a, 0.5) == TANDEM_STATUS_FAILED); /* no router */
    CHECK(strstr(tandem_errmsg(a), "router") != NULL);

    int64_t need = tandem_assistant_usage_json(a, NULL, 0);
    CHECK(need < 0);
    char* buf = (char*)malloc((size_t)-need);
    CHECK(tandem_assistant_usage_json(a, buf, (size_t)-need) == -need - 1);
    CHECK(strstr(buf, "\"suggestions\":2") != NULL);
    free(buf);

    tandem_assistant_free(a);
    tandem_assistant_free(NULL);
    CHECK(strcmp(tandem_errmsg(NULL), "invalid handle") == 0);
    CHECK(strlen(tandem_version()) > 0);
    printf("test-c: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
