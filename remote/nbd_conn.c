/* One libnbd connection, its poll loop and its timeout (see nbd_conn.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "nbd_conn.h"
#include "remote.h"
#include "util.h"

static int64_t nbd_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t nbd_timeout_ms(void)
{
	return (int64_t)vdk_remote_timeout() * 1000;
}

/* Mark the connection unusable; the first reason is kept. Every waiter
 * wakes: libnbd does not fail the commands of a connection we gave up on. */
static void nbd_conn_kill(struct vdk_nbd_conn *c, int code, const char *why)
{
	if (c->dead)
		return;
	c->dead = code > 0 ? code : EIO;
	snprintf(c->why, sizeof(c->why), "%s", why && why[0] ? why : strerror(c->dead));
	for (struct vdk_nbd_req *q = c->waiters; q; q = q->next)
		pthread_cond_signal(&q->cv);
}

/* Requests ------------------------------------------------------------ */

struct vdk_nbd_req *vdk_nbd_req_new(void)
{
	struct vdk_nbd_req *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	atomic_init(&q->refs, 1);
	pthread_cond_init(&q->cv, NULL);
	return q;
}

void vdk_nbd_req_put(struct vdk_nbd_req *q)
{
	if (q && atomic_fetch_sub(&q->refs, 1) == 1) {
		pthread_cond_destroy(&q->cv);
		free(q->ext);
		free(q);
	}
}

static int nbd_req_done(void *ud, int *error)
{
	struct vdk_nbd_req *q = ud;
	if (*error && !q->err)
		q->err = *error;
	if (q->pending && --q->pending == 0)
		pthread_cond_signal(&q->cv);
	return 1; /* retire the command: nobody calls nbd_aio_command_completed */
}

static void nbd_req_free(void *ud)
{
	vdk_nbd_req_put(ud);
}

nbd_completion_callback vdk_nbd_req_cb(struct vdk_nbd_req *q)
{
	atomic_fetch_add(&q->refs, 1);
	q->pending++;
	return (nbd_completion_callback){
	    .callback = nbd_req_done, .user_data = q, .free = nbd_req_free};
}

/* libnbd still runs .free for a command it refused, but not .callback. */
void vdk_nbd_req_unissue(struct vdk_nbd_req *q)
{
	if (q->pending)
		q->pending--;
}

int vdk_nbd_issue_error(struct vdk_nbd_conn *c, uint64_t off, const char *what, struct vdk_err *e)
{
	int code = nbd_get_errno();
	const char *msg = nbd_get_error();
	return vdk_err_set(e, VDK_E_IO, code ? code : EIO, c->uri, "nbd", off, "%s failed: %s",
	                   what, msg ? msg : "libnbd refused the request");
}

int vdk_nbd_dead_error(struct vdk_nbd_conn *c, uint64_t off, struct vdk_err *e)
{
	return vdk_err_set(e, VDK_E_IO, c->dead, c->uri, "nbd", off, "%s", c->why);
}

/* Polling ------------------------------------------------------------- */

void vdk_nbd_conn_kick(struct vdk_nbd_conn *c)
{
	/* libnbd sends what it can inside the aio call: a poll already
	 * waiting for a reply, with its deadline running, only needs to look
	 * again when something is left to send (or when the loop must stop). */
	if (c->polling &&
	    (c->stop || c->poll_idle || (nbd_aio_get_direction(c->h) & ~c->poll_dir))) {
		uint64_t one = 1;
		ssize_t n = write(c->wake, &one, sizeof(one));
		(void)n; /* a full counter still wakes the poller */
	}
}

/* Let libnbd move after poll(2) said the socket is ready (mu held). */
static void nbd_conn_notify(struct vdk_nbd_conn *c, short revents)
{
	unsigned dir = nbd_aio_get_direction(c->h);
	int r = 0;
	bool moved = false;
	if ((dir & LIBNBD_AIO_DIRECTION_READ) && (revents & (POLLIN | POLLHUP | POLLERR))) {
		r = nbd_aio_notify_read(c->h);
		moved = true;
	} else if ((dir & LIBNBD_AIO_DIRECTION_WRITE) &&
	           (revents & (POLLOUT | POLLHUP | POLLERR))) {
		r = nbd_aio_notify_write(c->h);
		moved = true;
	}
	if (r == -1) {
		int code = nbd_get_errno();
		nbd_conn_kill(c, code ? code : ECONNRESET, nbd_get_error());
	} else if (nbd_aio_is_dead(c->h) || nbd_aio_is_closed(c->h)) {
		nbd_conn_kill(c, ECONNRESET, "the server closed the connection");
	} else if (!moved && (revents & (POLLHUP | POLLERR))) {
		nbd_conn_kill(c, ECONNRESET, "the connection broke");
	}
}

/* One round of the poll loop (mu held on entry and exit): wait for the
 * socket (or a kick) no longer than until deadline (-1: no deadline), then
 * let libnbd work and wake the waiters. */
static void nbd_conn_poll(struct vdk_nbd_conn *c, int64_t deadline)
{
	c->polling = true;
	unsigned dir = c->poll_dir = nbd_aio_get_direction(c->h);
	c->poll_idle = deadline < 0;
	struct pollfd p[2] = {
	    {.fd = nbd_aio_get_fd(c->h),
	     .events = (short)((dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
	                       (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0))},
	    {.fd = c->wake, .events = POLLIN},
	};
	int64_t wait = deadline < 0 ? -1 : VDK_MAX(deadline - nbd_now_ms(), (int64_t)0);
	pthread_mutex_unlock(&c->mu);
	int n = poll(p, 2, wait < 0 ? -1 : (int)VDK_MIN(wait, (int64_t)1 << 30));
	int err = errno;
	pthread_mutex_lock(&c->mu);
	c->polling = false;
	if (n < 0 && err != EINTR) {
		nbd_conn_kill(c, err, "poll failed");
	} else if (n > 0) {
		if (p[1].revents) {
			uint64_t v;
			ssize_t got = read(c->wake, &v, sizeof(v));
			(void)got;
		}
		if (p[0].revents) {
			c->last_ms = nbd_now_ms();
			nbd_conn_notify(c, p[0].revents);
		}
	} else if (n == 0 && deadline >= 0 && nbd_now_ms() >= deadline) {
		char why[128];
		snprintf(why, sizeof(why),
		         "no reply from the server for %u s (see --timeout): giving up",
		         vdk_remote_timeout());
		nbd_conn_kill(c, ETIMEDOUT, why);
	}
}

/* The connection's own thread polls for everybody: a waiter sleeps on its
 * request's cv until the last of its commands retires, and is the only one
 * woken then. (Waiters taking turns as the poller cost a hand-off and a
 * wake-up of every waiter per reply: 20 futex calls per read.) The deadline
 * runs only while commands are in flight. */
static void *nbd_conn_loop(void *arg)
{
	struct vdk_nbd_conn *c = arg;
	bool busy = false;
	pthread_mutex_lock(&c->mu);
	while (!c->stop && !c->dead) {
		bool now_busy = nbd_aio_in_flight(c->h) > 0;
		if (now_busy && !busy) /* idle until now: the clock starts here */
			c->last_ms = nbd_now_ms();
		busy = now_busy;
		nbd_conn_poll(c, busy ? c->last_ms + nbd_timeout_ms() : -1);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int vdk_nbd_conn_wait(struct vdk_nbd_conn *c, struct vdk_nbd_req *q, uint64_t off, const char *what,
                      struct vdk_err *e)
{
	if (q->pending && !c->dead) {
		q->next = c->waiters;
		c->waiters = q;
		while (q->pending && !c->dead)
			pthread_cond_wait(&q->cv, &c->mu);
		struct vdk_nbd_req **pp = &c->waiters;
		while (*pp != q)
			pp = &(*pp)->next;
		*pp = q->next;
	}
	if (q->pending)
		return vdk_err_set(e, VDK_E_IO, c->dead, c->uri, "nbd", off, "%s: %s", what,
		                   c->why);
	if (q->err && c->dead) /* libnbd failed the commands of a dead connection */
		return vdk_err_set(e, VDK_E_IO, c->dead, c->uri, "nbd", off,
		                   "%s failed: connection lost: %s", what, c->why);
	if (q->err)
		return vdk_err_set(e, VDK_E_IO, q->err, c->uri, "nbd", off,
		                   "%s failed: the server replied: %s", what, strerror(q->err));
	return 0;
}

/* Connecting ---------------------------------------------------------- */

static int nbd_conn_fail(struct vdk_nbd_conn *c, int code, const char *msg, struct vdk_err *e)
{
	enum vdk_err_class cls = code == EINVAL ? VDK_E_USAGE : VDK_E_IO;
	return vdk_err_set(e, cls, code ? code : EIO, c->uri, "nbd", VDK_NO_OFFSET,
	                   "cannot connect: %s", msg && msg[0] ? msg : strerror(code ? code : EIO));
}

static int nbd_conn_handshake(struct vdk_nbd_conn *c, struct vdk_err *e)
{
	int64_t deadline = nbd_now_ms() + nbd_timeout_ms();
	pthread_mutex_lock(&c->mu);
	while (!c->dead && !nbd_aio_is_ready(c->h)) {
		if (nbd_aio_is_dead(c->h) || nbd_aio_is_closed(c->h))
			nbd_conn_kill(c, ECONNRESET, "the server closed the connection");
		else
			nbd_conn_poll(c, deadline);
	}
	pthread_mutex_unlock(&c->mu);
	return c->dead ? nbd_conn_fail(c, c->dead, c->why, e) : 0;
}

int vdk_nbd_conn_open(struct vdk_nbd_conn *c, const char *uri, bool meta, struct vdk_err *e)
{
	memset(c, 0, sizeof(*c));
	c->uri = uri;
	c->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wake < 0)
		return vdk_ioerr(e, errno, uri, "eventfd: %s", strerror(errno));
	pthread_mutex_init(&c->mu, NULL);
	c->init = true;
	c->h = nbd_create();
	if (!c->h)
		return nbd_conn_fail(c, nbd_get_errno(), nbd_get_error(), e);
	/* Reads are checked for errors before use: no need to pre-zero them. */
	nbd_set_pread_initialize(c->h, false);
	if (meta && nbd_add_meta_context(c->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1)
		return nbd_conn_fail(c, nbd_get_errno(), nbd_get_error(), e);
	if (nbd_aio_connect_uri(c->h, uri) == -1)
		return nbd_conn_fail(c, nbd_get_errno(), nbd_get_error(), e);
	int r = nbd_conn_handshake(c, e);
	if (r)
		return r;
	int err = pthread_create(&c->loop, NULL, nbd_conn_loop, c);
	if (err)
		return vdk_ioerr(e, err, uri, "cannot start the connection's thread: %s",
		                 strerror(err));
	c->looping = true;
	return 0;
}

void vdk_nbd_conn_close(struct vdk_nbd_conn *c)
{
	if (!c->init)
		return;
	if (c->looping) {
		pthread_mutex_lock(&c->mu);
		c->stop = true;
		vdk_nbd_conn_kick(c);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->loop, NULL);
		c->looping = false;
	}
	/* Commands still in flight are dropped with the socket; their .free
	 * callbacks release the requests. */
	nbd_close(c->h);
	c->h = NULL;
	close(c->wake);
	pthread_mutex_destroy(&c->mu);
	c->init = false;
}
