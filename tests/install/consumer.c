/* A consumer of the installed SDK: builds against tandem.h and libtandem only. */
#include <stdio.h>
#include <string.h>
#include "tandem/tandem.h"
int main(void) {
    char err[256] = "";
    tandem_assistant_params p = tandem_assistant_default_params();
    p.model_path = "/nonexistent.gguf";
    if (tandem_assistant_init(&p, err, sizeof err) != NULL || strstr(err, "nonexistent") == NULL) return 1;
    printf("tandem %s: ok\n", tandem_version());
    return 0;
}
