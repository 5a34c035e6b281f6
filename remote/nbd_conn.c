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

/* Mark the connection unusable; the first reason is kept. */
static void nbd_conn_kill(struct vdk_nbd_conn *c, int code, const char *why)
{
	if (c->dead)
		return;
	c->dead = code > 0 ? code : EIO;
	snprintf(c->why, sizeof(c->why), "%s", why && why[0] ? why : strerror(c->dead));
}

/* Requests ------------------------------------------------------------ */

struct vdk_nbd_req *vdk_nbd_req_new(void)
{
	struct vdk_nbd_req *q = calloc(1, sizeof(*q));
	if (q)
		atomic_init(&q->refs, 1);
	return q;
}

void vdk_nbd_req_put(struct vdk_nbd_req *q)
{
	if (q && atomic_fetch_sub(&q->refs, 1) == 1) {
		free(q->ext);
		free(q);
	}
}

static int nbd_req_done(void *ud, int *error)
{
	struct vdk_nbd_req *q = ud;
	if (*error && !q->err)
		q->err = *error;
	if (q->pending)
		q->pending--;
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
	if (!q->start_ms)
		q->start_ms = nbd_now_ms();
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
	if (c->polling) {
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

/* One round as the poller (mu held on entry and exit): wait for the socket
 * (or a kick) no longer than until deadline, then let libnbd work. */
static void nbd_conn_poll(struct vdk_nbd_conn *c, int64_t deadline)
{
	c->polling = true;
	unsigned dir = nbd_aio_get_direction(c->h);
	struct pollfd p[2] = {
	    {.fd = nbd_aio_get_fd(c->h),
	     .events = (short)((dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
	                       (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0))},
	    {.fd = c->wake, .events = POLLIN},
	};
	int64_t wait = deadline - nbd_now_ms();
	pthread_mutex_unlock(&c->mu);
	int n = poll(p, 2, wait > 0 ? (int)VDK_MIN(wait, (int64_t)1 << 30) : 0);
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
	} else if (n == 0 && nbd_now_ms() >= deadline) {
		char why[128];
		snprintf(why, sizeof(why),
		         "no reply from the server for %u s (see --timeout): giving up",
		         vdk_remote_timeout());
		nbd_conn_kill(c, ETIMEDOUT, why);
	}
	pthread_cond_broadcast(&c->cv);
}

int vdk_nbd_conn_wait(struct vdk_nbd_conn *c, struct vdk_nbd_req *q, uint64_t off, const char *what,
                      struct vdk_err *e)
{
	while (q->pending && !c->dead) {
		if (c->polling) {
			pthread_cond_wait(&c->cv, &c->mu);
			continue;
		}
		nbd_conn_poll(c, VDK_MAX(c->last_ms, q->start_ms) + nbd_timeout_ms());
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
	pthread_cond_init(&c->cv, NULL);
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
	return nbd_conn_handshake(c, e);
}

void vdk_nbd_conn_close(struct vdk_nbd_conn *c)
{
	if (!c->init)
		return;
	/* Commands still in flight are dropped with the socket; their .free
	 * callbacks release the requests. */
	nbd_close(c->h);
	c->h = NULL;
	close(c->wake);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	c->init = false;
}
