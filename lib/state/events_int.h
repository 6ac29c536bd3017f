/* lib/state internals between db.c (apply) and events.c (the event bus). Not an
 * API. */
#ifndef CM_STATE_EVENTS_INT_H
#define CM_STATE_EVENTS_INT_H

#include <cjson/cJSON.h>

#include "state/db.h"

struct state_events;

/* Where @s keeps its events (NULL until recording is first turned on); db.c owns
 * the field and frees it with events__free() at close. */
struct state_events **state__events(struct cm_state *s);
const struct state_events *state__events_const(const struct cm_state *s);

/* Accepts NULL. */
void events__free(struct state_events *ev);

/* Around the effects of a valid command (db.c's apply): before() runs inside
 * the transaction before any change and notes what the command may change;
 * after() runs once the transaction committed and records the events of the
 * changes; abort() forgets the notes when the transaction failed. All three do
 * nothing while recording is off. Out of memory, the events are counted as
 * dropped; apply itself never fails because of them. */
void events__before(struct state_events *ev, struct cm_state *s, const cJSON *cmd);
void events__after(struct state_events *ev, struct cm_state *s, const cJSON *cmd,
                   uint64_t index);
void events__abort(struct state_events *ev);

#endif /* CM_STATE_EVENTS_INT_H */
