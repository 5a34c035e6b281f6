/* Private to remote/: one libnbd connection driven with the asynchronous
 * API and our own poll loop, so several threads can have requests in flight
 * on it and a stalled server becomes an error after vdk_remote_timeout().
 *
 * Locking: every libnbd call on c->h is made with c->mu held, so completion
 * callbacks (which libnbd runs inside those calls) see a consistent request.
 * Each connection has a thread that polls: it drops mu for the poll(2)
 * itself, then takes it again to let libnbd read or write, and wakes the
 * waiters whose commands completed. Issuers kick it through an eventfd, because the directions
 * it polls for were chosen before their request existed. */
#ifndef VDK_NBD_CONN_H
#define VDK_NBD_CONN_H

#include <libnbd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct vdk_nbd_conn {
	struct nbd_handle *h;
	const char *uri; /* borrowed, for messages */
	pthread_mutex_t mu;
	int wake; /* eventfd */
	bool polling;
	unsigned poll_dir; /* the libnbd directions being polled for */
	bool poll_idle;    /* ... with no deadline: nothing was in flight */
	pthread_t loop;    /* the polling thread, once connected */
	bool looping, stop;
	int dead;                    /* positive errno once the connection is unusable */
	char why[256];               /* what killed it */
	struct vdk_nbd_req *waiters; /* requests someone sleeps on */
	int64_t last_ms;             /* monotonic time of the last progress */
	bool init;
};

/* A group of commands waited for together. Reference-counted: libnbd may
 * retire a command after its waiter gave up (timeout, dead connection), and
 * its callbacks must still find the request. */
struct vdk_nbd_req {
	atomic_int refs;
	unsigned pending;         /* commands not yet completed (under the conn's mu) */
	int err;                  /* errno of the first failed command */
	pthread_cond_t cv;        /* signalled when pending drops to 0 */
	struct vdk_nbd_req *next; /* in the conn's waiters */
	void *ext; /* block status: the reply being collected (freed with the request) */
};

/* Connect to uri (libnbd parses it) within the timeout; meta asks for the
 * base:allocation context. Fills e naming the URI on failure. */
int vdk_nbd_conn_open(struct vdk_nbd_conn *c, const char *uri, bool meta, struct vdk_err *e);
void vdk_nbd_conn_close(struct vdk_nbd_conn *c);

struct vdk_nbd_req *vdk_nbd_req_new(void);
void vdk_nbd_req_put(struct vdk_nbd_req *q);
/* The completion callback for one more command of q (caller holds mu).
 * When the aio call then fails, call vdk_nbd_req_unissue. */
nbd_completion_callback vdk_nbd_req_cb(struct vdk_nbd_req *q);
void vdk_nbd_req_unissue(struct vdk_nbd_req *q);
/* Error for an aio call that returned -1 (from libnbd's thread-local error). */
int vdk_nbd_issue_error(struct vdk_nbd_conn *c, uint64_t off, const char *what, struct vdk_err *e);
/* After issuing: make sure a thread blocked in poll looks again. */
void vdk_nbd_conn_kick(struct vdk_nbd_conn *c);
/* Wait (mu held) until every command of q completed. Errors name the URI,
 * what was asked ("read of 65536 bytes") and off. */
int vdk_nbd_conn_wait(struct vdk_nbd_conn *c, struct vdk_nbd_req *q, uint64_t off, const char *what,
                      struct vdk_err *e);
/* A refusal before anything was sent: the connection is already dead. */
int vdk_nbd_dead_error(struct vdk_nbd_conn *c, uint64_t off, struct vdk_err *e);

#endif
