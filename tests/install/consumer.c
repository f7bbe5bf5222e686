/* A consumer of the installed SDK: builds against tandem.h and libtandem only. */
#include <stdio.h>
#include <string.h>
#include "tandem/tandem.h"
int main(void) {
    char err[256] = "";
    tandem_assistant_params p = tandem_assistant_default_params();
    p.model_path = "/nonexistent.gguf";
    tandem_status st = TANDEM_STATUS_OK;
    if (tandem_assistant_init(&p, &st, err, sizeof err) != NULL || st != TANDEM_STATUS_FILE_NOT_FOUND ||
        strstr(err, "nonexistent") == NULL)
        return 1;
    printf("tandem %s: ok\n", tandem_version());
    return 0;
}
