/* Mode proxy on threads of its own (DESIGN.md §3): one lb_proxy per thread, each
 * with its own libev loop, all listening on the VIP ports with SO_REUSEPORT so the
 * kernel spreads new connections over them. The writer publishes a table to every
 * proxy through its publication slot (lb_proxy_publish); per-VIP metrics and
 * backend loads are atomics in the shared table state, so they add up across
 * threads by construction.
 *
 * Shutdown: an ev_async breaks each loop; once the thread is joined the loop is
 * idle and the pool's thread frees the proxy (connections and listeners closed)
 * and the loop.
 */
#include <ev.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "lb/lb_int.h"

struct lb_worker {
    struct ev_loop *loop;
    struct lb_proxy *p;
    ev_async stop;
    pthread_t th;
    bool started;
};

struct lb_proxy_pool {
    unsigned n;
    struct lb_worker w[LB_PROXY_THREADS_MAX];
};

unsigned lb_proxy_threads_default(void)
{
    cpu_set_t set;
    long n = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        n = CPU_COUNT(&set);
    }
    if (n <= 0) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
    }
    if (n <= 0) {
        n = 1;
    }
    return (unsigned)CM_MIN(n, (long)LB_PROXY_THREADS_DEFAULT_MAX);
}

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void *worker_main(void *arg)
{
    struct lb_worker *w = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the daemon's business */
    ev_run(w->loop, 0);
    return NULL;
}

int lb_proxy_pool_new(const struct lb_proxy_opts *opts, unsigned nthreads,
                      struct lb_proxy_pool **ret, struct cm_errbuf *eb)
{
    if (nthreads == 0) {
        nthreads = lb_proxy_threads_default();
    }
    if (nthreads > LB_PROXY_THREADS_MAX) {
        return cm_err_setf(eb, CM_EINVAL, "proxy threads: %u is over %d", nthreads,
                           LB_PROXY_THREADS_MAX);
    }
    struct lb_proxy_pool *pp = cm_calloc(1, sizeof(*pp));
    if (pp == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "proxy threads");
    }
    struct lb_proxy_opts o = {0};
    if (opts != NULL) {
        o = *opts;
    }
    o.reuseport = o.reuseport || nthreads > 1;
    uint64_t seed = o.seed;
    int rv = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        struct lb_worker *w = &pp->w[i];
        w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
        if (w->loop == NULL) {
            rv = cm_err_setf(eb, CM_ENOMEM, "proxy thread %u: event loop", i);
            goto err_after_alloc;
        }
        pp->n = i + 1;
        o.seed = seed + (uint64_t)i * 0x9e3779b97f4a7c15u;
        rv = lb_proxy_new(w->loop, &o, &w->p, eb);
        if (rv != 0) {
            goto err_after_alloc;
        }
        ev_async_init(&w->stop, stop_cb);
        ev_async_start(w->loop, &w->stop);
        int e = pthread_create(&w->th, NULL, worker_main, w);
        if (e != 0) {
            rv = cm_err_sys(eb, -e, "proxy thread %u", i);
            goto err_after_alloc;
        }
        w->started = true;
    }
    *ret = pp;
    return 0;

err_after_alloc:
    lb_proxy_pool_free(pp);
    return rv;
}

unsigned lb_proxy_pool_threads(const struct lb_proxy_pool *pp)
{
    return pp->n;
}

void lb_proxy_pool_publish(struct lb_proxy_pool *pp, struct lb_table *t)
{
    for (unsigned i = 0; i < pp->n; i++) {
        lb_proxy_publish(pp->w[i].p, t != NULL ? lb_table_ref(t) : NULL);
    }
    lb_table_unref(t);
}

void lb_proxy_pool_free(struct lb_proxy_pool *pp)
{
    if (pp == NULL) {
        return;
    }
    for (unsigned i = 0; i < pp->n; i++) {
        struct lb_worker *w = &pp->w[i];
        if (w->started) {
            ev_async_send(w->loop, &w->stop);
            pthread_join(w->th, NULL);
        }
        if (w->p != NULL) {
            ev_async_stop(w->loop, &w->stop);
            lb_proxy_free(w->p); /* the loop is idle now: this thread owns it */
        }
        if (w->loop != NULL) {
            ev_loop_destroy(w->loop);
        }
    }
    cm_free(&pp);
}
