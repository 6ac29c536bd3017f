/* Seeded PRNG for cores, CSPRNG ids for the rest. */
#include "base.h"

#include <openssl/rand.h>

/* splitmix64 expands one seed into xoshiro's state (Vigna's recommendation). */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void cm_rng_seed(struct cm_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        r->s[i] = splitmix64(&seed);
    }
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t cm_rng_next(struct cm_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t cm_rng_below(struct cm_rng *r, uint64_t n)
{
    if (n == 0) {
        return 0;
    }
    /* Reject the top partial bucket so every value is equally likely. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
    uint64_t v;
    do {
        v = cm_rng_next(r);
    } while (v >= limit);
    return v % n;
}

uint64_t cm_rng_range(struct cm_rng *r, uint64_t lo, uint64_t hi)
{
    if (hi <= lo) {
        return lo;
    }
    return lo + cm_rng_below(r, hi - lo);
}

int cm_random_bytes(void *buf, size_t n)
{
    if (n > (size_t)INT32_MAX) {
        return CM_EINVAL;
    }
    return RAND_bytes(buf, (int)n) == 1 ? 0 : CM_EIO;
}

static const char hexdigits[] = "0123456789abcdef";

int cm_uuid4(char out[37])
{
    uint8_t b[16];
    int rv = cm_random_bytes(b, sizeof(b));
    if (rv != 0) {
        return rv;
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* variant 10 */
    size_t o = 0;
    for (size_t i = 0; i < sizeof(b); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = hexdigits[b[i] >> 4];
        out[o++] = hexdigits[b[i] & 0x0f];
    }
    out[o] = '\0';
    return 0;
}

int cm_random_hex(char *out, size_t nbytes)
{
    uint8_t b[64];
    size_t done = 0;
    while (done < nbytes) {
        size_t n = CM_MIN(nbytes - done, sizeof(b));
        int rv = cm_random_bytes(b, n);
        if (rv != 0) {
            return rv;
        }
        for (size_t i = 0; i < n; i++) {
            out[2 * (done + i)] = hexdigits[b[i] >> 4];
            out[2 * (done + i) + 1] = hexdigits[b[i] & 0x0f];
        }
        done += n;
    }
    out[2 * nbytes] = '\0';
    return 0;
}
