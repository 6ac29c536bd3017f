/* lib/sched: Marathon constraints (compat.md §1.6; Marathon's
 * mesosphere/mesos/Constraints.scala): validation, preparation once per request,
 * and the per-node check.
 *
 * "Placed" tasks are the app's tasks the scheduler knows (added or placed), counted
 * by the value their node has for the constraint's field; a node lacking the
 * attribute counts as its own group ("absent", value id 0), as Marathon's
 * groupBy over Option values does. A node lacking the attribute satisfies only
 * UNLIKE. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sched_int.h"

static const char *const op_names[] = {
    [SCHED__OP_UNIQUE] = "UNIQUE",
    [SCHED__OP_CLUSTER] = "CLUSTER",
    [SCHED__OP_GROUP_BY] = "GROUP_BY",
    [SCHED__OP_LIKE] = "LIKE",
    [SCHED__OP_UNLIKE] = "UNLIKE",
    [SCHED__OP_MAX_PER] = "MAX_PER",
    [SCHED__OP_IS] = "IS",
};

int sched__op_parse(const char *op, enum sched__op *ret)
{
    for (size_t i = 0; op != NULL && i < CM_ARRAY_SIZE(op_names); i++) {
        if (strcasecmp(op, op_names[i]) == 0) {
            *ret = (enum sched__op)i;
            return 0;
        }
    }
    return CM_EINVAL;
}

bool sched__scalar_format(const char *s, char out[64])
{
    /* Mesos parses an attribute value that is a number as a scalar; Marathon
     * prints scalars with DecimalFormat("0.###") (HALF_EVEN on the exact binary
     * value, as %.3f does). */
    const char *p = s;
    if (*p == '+' || *p == '-') {
        p++;
    }
    size_t digits = strspn(p, "0123456789");
    p += digits;
    if (*p == '.') {
        size_t frac = strspn(p + 1, "0123456789");
        digits += frac;
        p += 1 + frac;
    }
    if (digits == 0 || digits > 30) {
        return false;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') {
            p++;
        }
        size_t e = strspn(p, "0123456789");
        if (e == 0 || e > 3) {
            return false;
        }
        p += e;
    }
    if (*p != '\0') {
        return false;
    }
    double d = strtod(s, NULL);
    if (!(d > -1e15 && d < 1e15)) {
        return false;
    }
    int len = snprintf(out, 64, "%.3f", d);
    while (len > 0 && out[len - 1] == '0') {
        out[--len] = '\0';
    }
    if (len > 0 && out[len - 1] == '.') {
        out[--len] = '\0';
    }
    return true;
}

/* glibc's regcomp expands bounded repetitions ({m,n}) into copies, so nesting
 * them costs memory exponential in the depth: bound the product of the upper
 * bounds seen (an over-approximation of any nesting). */
static bool regex_too_complex(const char *re)
{
    if (strlen(re) > SCHED_MAX_REGEX) {
        return true;
    }
    unsigned long product = 1;
    bool in_bracket = false;
    for (const char *p = re; *p; p++) {
        if (in_bracket) {
            if (*p == ']') {
                in_bracket = false;
            }
        } else if (*p == '\\' && p[1] != '\0') {
            p++;
        } else if (*p == '[') {
            in_bracket = true;
            if (p[1] == '^') {
                p++;
            }
            if (p[1] == ']') {
                p++; /* a leading ']' is a literal */
            }
        } else if (*p == '{') {
            unsigned long v = 0, hi = 0;
            for (p++; *p && *p != '}'; p++) {
                if (isdigit((unsigned char)*p)) {
                    v = v * 10 + (unsigned long)(*p - '0');
                    if (v > 100000) {
                        return true;
                    }
                    hi = v > hi ? v : hi;
                } else {
                    v = 0;
                }
            }
            product *= hi + 1;
            if (product > 1000) {
                return true;
            }
            if (*p == '\0') {
                break;
            }
        }
    }
    return false;
}

static int regex_compile(const char *re, regex_t *rx)
{
    char anchored[SCHED_MAX_REGEX + 8];
    /* Java's String.matches: the whole value must match. */
    snprintf(anchored, sizeof(anchored), "^(%s)$", re);
    int rc = regcomp(rx, anchored, REG_EXTENDED | REG_NOSUB);
    if (rc == REG_ESPACE) {
        return CM_ENOMEM;
    }
    return rc == 0 ? 0 : CM_EINVAL;
}

static bool is_int(const char *v, int64_t *ret)
{
    return cm_parse_i64(v, 0, INT32_MAX, ret) == 0;
}

int sched_constraints_validate(const struct sched_constraint *cs, size_t n,
                               size_t *ret_index, struct cm_errbuf *eb)
{
    if (n > SCHED_MAX_CONSTRAINTS) {
        if (ret_index != NULL) {
            *ret_index = SCHED_MAX_CONSTRAINTS;
        }
        return cm_err_setf(eb, CM_EVALIDATION, "at most %d constraints are supported",
                           SCHED_MAX_CONSTRAINTS);
    }
    for (size_t i = 0; i < n; i++) {
        const struct sched_constraint *c = &cs[i];
        const char *why = NULL;
        enum sched__op op;
        int64_t num;
        char msg[SCHED_MAX_REGEX + 64];
        if (c->field == NULL || c->field[0] == '\0') {
            why = "Constraint field must not be empty";
        } else if (sched__op_parse(c->op, &op) != 0) {
            why =
                "operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, "
                "MAX_PER, UNLIKE or IS";
        } else {
            switch (op) {
            case SCHED__OP_UNIQUE:
                if (c->value != NULL) {
                    why = "Value specified but not used";
                }
                break;
            case SCHED__OP_CLUSTER:
                break;
            case SCHED__OP_GROUP_BY:
                if (c->value != NULL && !is_int(c->value, &num)) {
                    why = "Value was not a valid integer";
                }
                break;
            case SCHED__OP_MAX_PER:
                if (c->value == NULL) {
                    why = "Missing value";
                } else if (!is_int(c->value, &num)) {
                    why = "Value was not a valid integer";
                }
                break;
            case SCHED__OP_LIKE:
            case SCHED__OP_UNLIKE:
                if (c->value == NULL) {
                    why = "A regular expression value must be provided";
                } else if (regex_too_complex(c->value)) {
                    why = "regular expression is too long or too complex";
                } else {
                    regex_t rx;
                    int rv = regex_compile(c->value, &rx);
                    if (rv == CM_ENOMEM) {
                        return rv;
                    }
                    if (rv == 0) {
                        regfree(&rx);
                    } else {
                        snprintf(msg, sizeof(msg),
                                 "'%s' is not a valid regular expression", c->value);
                        why = msg;
                    }
                }
                break;
            case SCHED__OP_IS:
                if (c->value == NULL) {
                    why = "Missing value";
                } else if (strspn(c->value,
                                  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS"
                                  "TUVWXYZ0123456789_/.-") != strlen(c->value)) {
                    why = "IS value must match '^[a-zA-Z0-9_/.-]*$'";
                }
                break;
            }
        }
        if (why != NULL) {
            if (ret_index != NULL) {
                *ret_index = i;
            }
            return cm_err_setf(eb, CM_EVALIDATION, "%s", why);
        }
    }
    return 0;
}

int sched__cons_prepare(struct sched *s, uint32_t app, const struct sched_constraint *c,
                        struct sched__pcons *pc)
{
    memset(pc, 0, sizeof(*pc));
    if (sched__op_parse(c->op, &pc->op) != 0) {
        return CM_EINVAL;
    }
    if (strcmp(c->field, "hostname") == 0 || strcmp(c->field, "@hostname") == 0) {
        pc->key = SCHED__KEY_HOST;
    } else {
        pc->key = sched__str_find(&s->strs, c->field);
    }
    /* Marathon treats an empty CLUSTER value as no value. */
    pc->has_value = c->value != NULL && c->value[0] != '\0';
    if (c->value != NULL) {
        char scalar[64];
        pc->val_raw = sched__str_find(&s->strs, c->value);
        pc->val_scalar = sched__scalar_format(c->value, scalar)
                             ? sched__str_find(&s->strs, scalar)
                             : 0;
    }
    int64_t num = 0;
    switch (pc->op) {
    case SCHED__OP_GROUP_BY:
        if (c->value != NULL && !is_int(c->value, &num)) {
            return CM_EINVAL;
        }
        break;
    case SCHED__OP_MAX_PER:
        if (c->value == NULL || !is_int(c->value, &num)) {
            return CM_EINVAL;
        }
        break;
    case SCHED__OP_LIKE:
    case SCHED__OP_UNLIKE: {
        if (c->value == NULL || regex_too_complex(c->value)) {
            return CM_EINVAL;
        }
        int rv = regex_compile(c->value, &pc->re);
        if (rv != 0) {
            return rv;
        }
        pc->has_regex = true;
        pc->memo_len = s->strs.n;
        pc->memo = cm_calloc(pc->memo_len ? pc->memo_len : 1, 1);
        if (pc->memo == NULL) {
            sched__cons_done(pc);
            return CM_ENOMEM;
        }
        break;
    }
    case SCHED__OP_IS:
        if (c->value == NULL) {
            return CM_EINVAL;
        }
        break;
    case SCHED__OP_UNIQUE:
    case SCHED__OP_CLUSTER:
        break;
    }
    pc->n = (uint32_t)num;
    pc->keyidx = SCHED__NONE;
    pc->col = SCHED__NONE;
    if (pc->key != 0) {
        int rv = sched__col_get(s, pc->key, &pc->col);
        if (rv != 0) {
            sched__cons_done(pc);
            return rv;
        }
    }
    if (pc->key != 0 && (pc->op == SCHED__OP_UNIQUE || pc->op == SCHED__OP_CLUSTER ||
                         pc->op == SCHED__OP_GROUP_BY || pc->op == SCHED__OP_MAX_PER)) {
        int rv = sched__app_key(s, app, pc->key, &pc->keyidx);
        if (rv != 0) {
            sched__cons_done(pc);
            return rv;
        }
    }
    return 0;
}

void sched__cons_done(struct sched__pcons *pc)
{
    if (pc->has_regex) {
        regfree(&pc->re);
        pc->has_regex = false;
    }
    cm_free(&pc->memo);
}

static bool regex_ok(const struct sched *s, struct sched__pcons *pc, uint32_t val)
{
    if (val < pc->memo_len && pc->memo[val] != 0) {
        return pc->memo[val] == 1;
    }
    bool m = regexec(&pc->re, s->strs.s[val], 0, NULL, 0) == 0;
    if (val < pc->memo_len) {
        pc->memo[val] = m ? 1 : 2;
    }
    return m;
}

bool sched__cons_ok(const struct sched *s, const struct sched__app *app,
                    struct sched__pcons *pc, uint32_t val)
{
    bool scalar = val & SCHED__COL_SCALAR;
    val &= ~SCHED__COL_SCALAR;
    if (val == 0) {
        return pc->op == SCHED__OP_UNLIKE;
    }
    const struct sched__keyidx *k =
        pc->keyidx != SCHED__NONE ? &app->keys[pc->keyidx] : NULL;
    uint32_t *cp = k ? sched__imap_find(&k->counts, val) : NULL;
    uint32_t count = cp ? *cp : 0;
    switch (pc->op) {
    case SCHED__OP_UNIQUE:
        return count == 0;
    case SCHED__OP_CLUSTER:
        /* With a value: the node has it; always: every placed task has the
         * node's value (so without one, the first placement decides). */
        return (!pc->has_value || val == pc->val_raw) && count == app->n_tasks;
    case SCHED__OP_GROUP_BY: {
        /* A value without tasks is always fine; one with tasks only when there
         * are at least N groups and it is among the smallest. */
        if (count == 0) {
            return true;
        }
        struct sched__keyidx *mk = (struct sched__keyidx *)k;
        if (!mk->min_valid) {
            /* Lazily recomputed after the smallest group grew. */
            mk->min = UINT32_MAX;
            mk->n_at_min = 0;
            for (uint32_t i = 0; i <= mk->counts.mask; i++) {
                if (mk->counts.keys[i] == SCHED__NONE) {
                    continue;
                }
                uint32_t c = mk->counts.vals[i];
                if (c < mk->min) {
                    mk->min = c;
                    mk->n_at_min = 1;
                } else if (c == mk->min) {
                    mk->n_at_min++;
                }
            }
            mk->min_valid = true;
        }
        return mk->n_groups >= pc->n && count == mk->min;
    }
    case SCHED__OP_MAX_PER:
        return count < pc->n;
    case SCHED__OP_LIKE:
        return regex_ok(s, pc, val);
    case SCHED__OP_UNLIKE:
        return !regex_ok(s, pc, val);
    case SCHED__OP_IS:
        return val == (scalar ? pc->val_scalar : pc->val_raw);
    }
    return false;
}
