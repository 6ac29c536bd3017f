/* Fuzz the join token parser (cm_join_token_parse): any bytes, as a C string (the
 * input is cut at its first NUL, as a command-line argument would be). On success the
 * token must be exactly CM_JOIN_TOKEN_LEN characters, its fields lower-case hex, and
 * format + parse must give it back unchanged; on failure the error is CM_EINVAL with a
 * message and the output untouched. */
#include <stdlib.h>

#include "base/base.h"
#include "fuzz.h"
#include "net/net.h"

static bool lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return s[n] == '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    struct cm_join_token t, again;
    memset(&t, 0x5a, sizeof(t));
    struct cm_errbuf eb = {0};
    int rv = cm_join_token_parse(s, &t, &eb);
    if (rv == 0) {
        if (strlen(s) != CM_JOIN_TOKEN_LEN || !lower_hex(t.fingerprint, 64) ||
            !lower_hex(t.secret, 32)) {
            abort();
        }
        char buf[CM_JOIN_TOKEN_MAX];
        cm_join_token_format(&t, buf, sizeof(buf));
        if (strlen(buf) != CM_JOIN_TOKEN_LEN || strcasecmp(buf, s) != 0 ||
            cm_join_token_parse(buf, &again, &eb) != 0 ||
            memcmp(&t, &again, sizeof(t)) != 0) {
            abort();
        }
    } else if (rv != CM_EINVAL || eb.code != CM_EINVAL || eb.msg[0] == '\0' ||
               (unsigned char)t.fingerprint[0] != 0x5a) {
        abort();
    }
    free(s);
    return 0;
}
