/* NFS sources and sinks through libnfs's synchronous API (plus its async
 * WRITE for pipelining), for nfs://server/path?args URIs.
 *
 * One nfs_context serves one thread at a time, so a source keeps a small
 * pool of contexts (each its own connection, mount and open file) and a
 * pipeline worker takes whichever is free. Every request to the server is
 * at most 1 MiB, and small reads are served from a 1 MiB read-ahead buffer
 * per context, so a reader asking for 512-byte headers or 64 KiB clusters
 * still talks to the server in large sequential requests (DESIGN.md,
 * shared-storage manners).
 *
 * Quirks of libnfs 4.0 (Debian 12) that shape this file:
 * - Its sync calls poll() and treat EINTR as a dead connection, leaving the
 *   request queued with a pointer into the caller's stack. Asynchronous
 *   signals (SIGTERM, SIGINT...) are therefore blocked for the length of
 *   each call and delivered right after it.
 * - NFSv4 requests are encoded into a fixed 4 KiB buffer, so a WRITE
 *   carries at most ~3.9 KiB of data (larger ones fail with "Failed to
 *   encode COMPOUND4args"); sinks write in NFS4_WRITE_MAX pieces with up to
 *   NFS_WDEPTH of them in flight. NFSv3 uses the server's wtmax.
 * - NFSv4 READ replies over 1 MiB break the connection.
 * - Every context is named "Libnfs pid:P T"; two made in the same second
 *   share an NFSv4 client id, and the second SETCLIENTID expires the
 *   first one's open files. Each context gets a name of its own. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <nfsc/libnfs.h>

#include "nfs.h"
#include "util.h"

#define NFS_IO_MAX     (1u << 20) /* largest READ/WRITE request */
#define NFS_RA         NFS_IO_MAX /* read-ahead buffer per context */
#define NFS_RA_SLACK   4096u      /* the buffer starts this aligned */
#define NFS_POOL_MAX   4          /* contexts per source */
#define NFS4_WRITE_MAX 3072u      /* fits libnfs 4.0's 4 KiB NFSv4 encoder */
#define NFS_WDEPTH     64         /* WRITEs in flight */
#define NFS_WB         NFS_IO_MAX /* write-behind buffer of a sink */
#define NFS_TIMEOUT_MS 60000      /* a request unanswered this long fails */
#define NFS_DIR_MAX    (1u << 20) /* entries of one folder */
#define NFS_TMP_TRIES  64

/* URIs ------------------------------------------------------------------ */

/* libnfs's URL arguments; "if" takes a name, the others integers. */
static const char *const nfs_arg_names[] = {
    "version",   "nfsport",       "mountport",  "uid",      "gid",
    "readahead", "autoreconnect", "tcp-syncnt", "dircache", "auto-traverse-mounts",
    "pagecache", "debug",         "if",
};

void vdk_nfs_uri_free(struct vdk_nfs_uri *u)
{
	free(u->server);
	free(u->path);
	free(u->query);
	memset(u, 0, sizeof(*u));
}

static bool nfs_int_ok(const char *v)
{
	if (*v == '-')
		v++;
	if (!*v || strlen(v) > 9)
		return false;
	for (; *v; v++)
		if (*v < '0' || *v > '9')
			return false;
	return true;
}

static int nfs_check_arg(const char *uri, const char *kv, size_t len, bool *has_port,
                         struct vdk_err *e)
{
	const char *eq = memchr(kv, '=', len);
	if (!eq)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, uri, "nfs", VDK_NO_OFFSET,
		                   "argument '%.*s' needs a value (key=value)", (int)len, kv);
	size_t kl = (size_t)(eq - kv);
	char val[32];
	if (len - kl - 1 >= sizeof(val))
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, uri, "nfs", VDK_NO_OFFSET,
		                   "argument '%.*s' is too long", (int)len, kv);
	memcpy(val, eq + 1, len - kl - 1);
	val[len - kl - 1] = 0;
	for (size_t i = 0; i < VDK_ARRAY_SIZE(nfs_arg_names); i++) {
		if (strlen(nfs_arg_names[i]) != kl || memcmp(nfs_arg_names[i], kv, kl))
			continue;
		bool ok = i == VDK_ARRAY_SIZE(nfs_arg_names) - 1 ? val[0] != 0 : nfs_int_ok(val);
		if (ok && i == 0)
			ok = !strcmp(val, "3") || !strcmp(val, "4");
		if (!ok)
			return vdk_err_set(e, VDK_E_USAGE, EINVAL, uri, "nfs", VDK_NO_OFFSET,
			                   "bad value for '%s': '%s'", nfs_arg_names[i], val);
		if (!strcmp(nfs_arg_names[i], "nfsport"))
			*has_port = true;
		return 0;
	}
	return vdk_err_set(e, VDK_E_USAGE, EINVAL, uri, "nfs", VDK_NO_OFFSET,
	                   "unknown argument '%.*s' (known: version, nfsport, mountport, uid, "
	                   "gid, readahead, autoreconnect, ...)",
	                   (int)kl, kv);
}

static int nfs_parse_query(const char *uri, const char *q, const char *port, char **out,
                           struct vdk_err *e)
{
	bool has_port = false;
	for (const char *s = q; *s;) {
		size_t n = strcspn(s, "&");
		if (n) {
			int r = nfs_check_arg(uri, s, n, &has_port, e);
			if (r)
				return r;
		}
		s += n + (s[n] == '&');
	}
	if (port && has_port)
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, uri, "nfs", VDK_NO_OFFSET,
		                   "the port is given twice (server:port and nfsport=)");
	int n = port ? asprintf(out, "%s%snfsport=%s", q, q[0] ? "&" : "", port)
	             : asprintf(out, "%s", q);
	return n < 0 ? -ENOMEM : 0;
}

/* Components joined with single slashes; "." dropped, ".." refused. */
static int nfs_norm_path(const char *uri, const char *p, size_t len, char **out, struct vdk_err *e)
{
	char *o = malloc(len + 2);
	if (!o)
		return -ENOMEM;
	size_t w = 0;
	for (size_t i = 0; i < len;) {
		while (i < len && p[i] == '/')
			i++;
		size_t j = i;
		while (j < len && p[j] != '/')
			j++;
		size_t n = j - i;
		if (n == 2 && p[i] == '.' && p[i + 1] == '.') {
			free(o);
			return vdk_err_set(e, VDK_E_USAGE, EINVAL, uri, "nfs", VDK_NO_OFFSET,
			                   "'..' in the path of a URI: refused");
		}
		if (n && !(n == 1 && p[i] == '.')) {
			o[w++] = '/';
			memcpy(o + w, p + i, n);
			w += n;
		}
		i = j;
	}
	if (!w)
		o[w++] = '/';
	o[w] = 0;
	*out = o;
	return 0;
}

static bool nfs_host_ok(const char *h, size_t n)
{
	if (!n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = h[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_' || c == ':' || c == '%'))
			return false;
	}
	return true;
}

/* Split "host[:port]" or "[v6][:port]" (auth has n bytes). */
static int nfs_parse_auth(const char *uri, const char *auth, size_t n, char **host, char *port,
                          struct vdk_err *e)
{
	const char *h = auth, *colon = NULL;
	size_t hl = n;
	if (n && auth[0] == '[') {
		const char *rb = memchr(auth, ']', n);
		if (!rb)
			goto bad;
		h = auth + 1;
		hl = (size_t)(rb - h);
		if (rb + 1 < auth + n) {
			if (rb[1] != ':')
				goto bad;
			colon = rb + 1;
		}
	} else {
		colon = memchr(auth, ':', n);
		if (colon && memchr(colon + 1, ':', (size_t)(auth + n - colon - 1)))
			colon = NULL; /* a bare IPv6 address */
		if (colon)
			hl = (size_t)(colon - auth);
	}
	port[0] = 0;
	if (colon) {
		size_t pl = (size_t)(auth + n - colon - 1);
		if (pl < 1 || pl > 5)
			goto bad;
		memcpy(port, colon + 1, pl);
		port[pl] = 0;
		long v = strtol(port, NULL, 10);
		if (strspn(port, "0123456789") != pl || v < 1 || v > 65535)
			goto bad;
	}
	if (!nfs_host_ok(h, hl))
		goto bad;
	*host = strndup(h, hl);
	return *host ? 0 : -ENOMEM;
bad:
	return vdk_err_set(e, VDK_E_USAGE, EINVAL, uri, "nfs", VDK_NO_OFFSET,
	                   "bad server '%.*s' (want nfs://server[:port]/path)", (int)n, auth);
}

int vdk_nfs_uri_parse(const char *uri, struct vdk_nfs_uri *u, struct vdk_err *e)
{
	memset(u, 0, sizeof(*u));
	size_t pl = strlen(VDK_NFS_PREFIX);
	if (strncmp(uri, VDK_NFS_PREFIX, pl))
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, uri, "nfs", VDK_NO_OFFSET,
		                   "not an nfs:// URI");
	for (const char *c = uri; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return vdk_err_set(e, VDK_E_USAGE, EINVAL, uri, "nfs", VDK_NO_OFFSET,
			                   "control character in a URI");
	const char *auth = uri + pl;
	size_t an = strcspn(auth, "/?");
	const char *path = auth + an;
	size_t pn = strcspn(path, "?");
	const char *q = path[pn] == '?' ? path + pn + 1 : "";
	char port[8];
	int r = nfs_parse_auth(uri, auth, an, &u->server, port, e);
	if (!r)
		r = nfs_norm_path(uri, path, pn, &u->path, e);
	if (!r)
		r = nfs_parse_query(uri, q, port[0] ? port : NULL, &u->query, e);
	if (r == -ENOMEM)
		r = vdk_ioerr(e, ENOMEM, uri, "out of memory");
	if (r)
		vdk_nfs_uri_free(u);
	return r;
}

char *vdk_nfs_uri_format(const struct vdk_nfs_uri *u, const char *path)
{
	char *s;
	bool v6 = strchr(u->server, ':') != NULL;
	if (asprintf(&s, "%s%s%s%s%s%s%s", VDK_NFS_PREFIX, v6 ? "[" : "", u->server, v6 ? "]" : "",
	             path, u->query[0] ? "?" : "", u->query) < 0)
		return NULL;
	return s;
}

/* "/a/b/c" -> "/a/b" and "/c"; NULL base for the root. */
static int nfs_split(const char *path, char **dir, char **base)
{
	const char *sl = strrchr(path, '/');
	*dir = *base = NULL;
	if (!sl[1])
		return -EINVAL;
	*dir = sl == path ? strdup("/") : strndup(path, (size_t)(sl - path));
	*base = strdup(sl);
	if (!*dir || !*base) {
		free(*dir);
		free(*base);
		return -ENOMEM;
	}
	return 0;
}

/* Connections ------------------------------------------------------------ */

static void nfs_sig_block(sigset_t *old)
{
	static const int sigs[] = {SIGINT,  SIGTERM, SIGHUP,  SIGQUIT, SIGUSR1,
	                           SIGUSR2, SIGALRM, SIGCHLD, SIGWINCH};
	sigset_t s;
	sigemptyset(&s);
	for (size_t i = 0; i < VDK_ARRAY_SIZE(sigs); i++)
		sigaddset(&s, sigs[i]);
	pthread_sigmask(SIG_BLOCK, &s, old);
}

static void nfs_sig_restore(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

static atomic_uint nfs_serial;

static void nfs_set_identity(struct nfs_context *nfs)
{
	char id[96];
	unsigned n = atomic_fetch_add(&nfs_serial, 1);
	snprintf(id, sizeof(id), "vdkit pid:%d ctx:%u t:%lld", (int)getpid(), n,
	         (long long)time(NULL));
	nfs4_set_client_name(nfs, id);
	char verf[8];
	if (getrandom(verf, sizeof(verf), GRND_NONBLOCK) != (ssize_t)sizeof(verf)) {
		uint64_t v = (uint64_t)time(NULL) << 32 ^ ((uint64_t)getpid() << 12) ^ n;
		memcpy(verf, &v, sizeof(verf));
	}
	nfs4_set_verifier(nfs, verf);
}

/* A connection with mount mounted (signals must be blocked). */
static int nfs_connect(const struct vdk_nfs_uri *u, const char *mount, const char *name,
                       struct nfs_context **out, struct vdk_err *e)
{
	struct nfs_context *nfs = nfs_init_context();
	if (!nfs)
		return vdk_ioerr(e, ENOMEM, name, "out of memory (NFS context)");
	nfs_set_identity(nfs);
	if (u->query[0]) {
		char *url;
		struct nfs_url *p = NULL;
		if (asprintf(&url, "nfs://%s/?%s", u->server, u->query) >= 0) {
			p = nfs_parse_url_incomplete(nfs, url);
			free(url);
		}
		if (!p) {
			nfs_destroy_context(nfs);
			return vdk_err_set(e, VDK_E_USAGE, EINVAL, name, "nfs", VDK_NO_OFFSET,
			                   "bad URI arguments '%s'", u->query);
		}
		nfs_destroy_url(p);
	}
	nfs_set_timeout(nfs, NFS_TIMEOUT_MS);
	int r = nfs_mount(nfs, u->server, mount);
	if (r) {
		r = vdk_err_set(e, r == -ENOENT || r == -EACCES ? VDK_E_INPUT : VDK_E_IO,
		                r < 0 ? -r : EIO, name, "nfs", VDK_NO_OFFSET,
		                "cannot mount %s:%s: %s", u->server, mount, nfs_get_error(nfs));
		nfs_destroy_context(nfs);
		return r;
	}
	*out = nfs;
	return 0;
}

/* After a failed sync call: when requests are still queued (the
 * connection broke under them), they point into a finished call's stack,
 * so the context is dropped without being destroyed (a leak, never a
 * callback into freed memory). */
static void nfs_after_error(struct nfs_context **pn, int r)
{
	if (*pn && r == -EIO && nfs_queue_length(*pn) > 0)
		*pn = NULL;
}

static int nfs_err(struct vdk_err *e, struct nfs_context *nfs, int r, const char *name,
                   uint64_t off, const char *what)
{
	int code = r < 0 ? -r : EIO;
	enum vdk_err_class cls = code == ENOENT || code == EACCES || code == EISDIR ||
	                                 code == ENOTDIR || code == ELOOP || code == EPERM
	                             ? VDK_E_INPUT
	                             : VDK_E_IO;
	return vdk_err_set(e, cls, code, name, NULL, off, "%s: %s", what,
	                   nfs ? nfs_get_error(nfs) : "connection to the server lost");
}

static int nfs_lost(struct vdk_err *e, const char *name, uint64_t off)
{
	return vdk_err_set(e, VDK_E_IO, EIO, name, NULL, off,
	                   "the connection to the NFS server was lost");
}

static int64_t nfs_mtime_ns(const struct nfs_stat_64 *st)
{
	return (int64_t)st->nfs_mtime * 1000000000 + (int64_t)st->nfs_mtime_nsec;
}

static enum vdk_ftype nfs_ftype(uint64_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return VDK_FT_REG;
	case S_IFDIR:
		return VDK_FT_DIR;
	case S_IFLNK:
		return VDK_FT_LNK;
	}
	return VDK_FT_OTHER;
}

/* Sources ---------------------------------------------------------------- */

struct nfs_conn {
	pthread_mutex_t mu;
	struct nfs_context *nfs;
	struct nfsfh *fh;
	uint8_t *ra; /* read-ahead: bytes [ra_off, ra_off + ra_len) of the file */
	uint64_t ra_off;
	size_t ra_len;
};

struct nfs_src {
	struct vdk_nfs_uri u;
	char *mount; /* the file's folder, mounted */
	char *rel;   /* "/name" under it */
	pthread_mutex_t pool_mu;
	unsigned nconn, next;
	bool grow_failed;
	struct nfs_conn conn[NFS_POOL_MAX];
};

static int nfs_conn_open(struct vdk_src *s, struct nfs_conn *c, struct vdk_err *e)
{
	struct nfs_src *f = s->priv;
	int r = nfs_connect(&f->u, f->mount, s->name, &c->nfs, e);
	if (r)
		return r;
	r = nfs_open(c->nfs, f->rel, O_RDONLY, &c->fh);
	if (r) {
		r = nfs_err(e, c->nfs, r, s->name, VDK_NO_OFFSET, "cannot open");
		nfs_destroy_context(c->nfs);
		c->nfs = NULL;
	}
	return r;
}

static void nfs_conn_close(struct nfs_conn *c)
{
	if (c->nfs) {
		if (c->fh)
			nfs_close(c->nfs, c->fh);
		nfs_destroy_context(c->nfs);
	}
	free(c->ra);
	c->nfs = NULL;
	c->fh = NULL;
	c->ra = NULL;
}

/* A context for this thread, locked: a free one, a new one while the pool
 * may grow, else the next in turn. */
static struct nfs_conn *nfs_pool_get(struct vdk_src *s)
{
	struct nfs_src *f = s->priv;
	pthread_mutex_lock(&f->pool_mu);
	for (unsigned i = 0; i < f->nconn; i++) {
		if (pthread_mutex_trylock(&f->conn[i].mu) == 0) {
			pthread_mutex_unlock(&f->pool_mu);
			return &f->conn[i];
		}
	}
	if (f->nconn < NFS_POOL_MAX && !f->grow_failed) {
		struct nfs_conn *c = &f->conn[f->nconn];
		struct vdk_err ignore = {0};
		if (nfs_conn_open(s, c, &ignore) == 0) {
			f->nconn++;
			pthread_mutex_lock(&c->mu);
			pthread_mutex_unlock(&f->pool_mu);
			return c;
		}
		f->grow_failed = true; /* the server limits us: share the others */
	}
	struct nfs_conn *c = &f->conn[f->next++ % f->nconn];
	pthread_mutex_unlock(&f->pool_mu);
	pthread_mutex_lock(&c->mu);
	return c;
}

static int nfs_read_direct(struct vdk_src *s, struct nfs_conn *c, uint8_t *p, size_t len,
                           uint64_t off, struct vdk_err *e)
{
	while (len) {
		if (!c->nfs)
			return nfs_lost(e, s->name, off);
		size_t n = VDK_MIN(len, (size_t)NFS_IO_MAX);
		int got = nfs_pread(c->nfs, c->fh, off, n, p);
		if (got < 0) {
			int r = nfs_err(e, c->nfs, got, s->name, off, "read failed");
			nfs_after_error(&c->nfs, got);
			return r;
		}
		if (got == 0)
			return vdk_bad(e, s->name, NULL, off,
			               "unexpected end of file (did it shrink while being read?)");
		p += got;
		off += (uint64_t)got;
		len -= (size_t)got;
	}
	return 0;
}

static int nfs_read_ahead(struct vdk_src *s, struct nfs_conn *c, uint8_t *p, size_t len,
                          uint64_t off, struct vdk_err *e)
{
	if (!c->ra || off < c->ra_off || off + len > c->ra_off + c->ra_len) {
		if (!c->ra && !(c->ra = malloc(NFS_RA)))
			return nfs_read_direct(s, c, p, len, off, e);
		uint64_t start = off & ~(uint64_t)(NFS_RA_SLACK - 1);
		size_t n = (size_t)VDK_MIN((uint64_t)NFS_RA, s->size - start);
		c->ra_len = 0;
		int r = nfs_read_direct(s, c, c->ra, n, start, e);
		if (r)
			return r;
		c->ra_off = start;
		c->ra_len = n;
	}
	memcpy(p, c->ra + (off - c->ra_off), len);
	return 0;
}

static int nfs_src_pread(struct vdk_src *s, void *buf, size_t len, uint64_t off, struct vdk_err *e)
{
	sigset_t old;
	nfs_sig_block(&old); /* before: growing the pool connects */
	struct nfs_conn *c = nfs_pool_get(s);
	int r = len <= NFS_RA - NFS_RA_SLACK ? nfs_read_ahead(s, c, buf, len, off, e)
	                                     : nfs_read_direct(s, c, buf, len, off, e);
	nfs_sig_restore(&old);
	pthread_mutex_unlock(&c->mu);
	return r;
}

static int nfs_src_fstat(struct vdk_src *s, struct nfs_stat_64 *st, struct vdk_err *e)
{
	struct nfs_src *f = s->priv;
	struct nfs_conn *c = &f->conn[0];
	pthread_mutex_lock(&c->mu);
	sigset_t old;
	nfs_sig_block(&old);
	int r = c->nfs ? nfs_fstat64(c->nfs, c->fh, st) : -EIO;
	if (r) {
		r = nfs_err(e, c->nfs, r, s->name, VDK_NO_OFFSET, "stat failed");
		nfs_after_error(&c->nfs, r);
	}
	nfs_sig_restore(&old);
	pthread_mutex_unlock(&c->mu);
	return r;
}

static int nfs_src_check(struct vdk_src *s, struct vdk_err *e)
{
	struct nfs_stat_64 st;
	int r = nfs_src_fstat(s, &st, e);
	if (r)
		return r;
	if (st.nfs_size != s->size || nfs_mtime_ns(&st) != s->mtime_ns)
		return vdk_err_set(
		    e, VDK_E_INPUT, EBUSY, s->name, NULL, VDK_NO_OFFSET,
		    "changed while being read (size %llu -> %llu): is it still being "
		    "written? Nothing was kept",
		    (unsigned long long)s->size, (unsigned long long)st.nfs_size);
	return 0;
}

static void nfs_src_close(struct vdk_src *s)
{
	struct nfs_src *f = s->priv;
	if (!f)
		return;
	sigset_t old;
	nfs_sig_block(&old);
	for (unsigned i = 0; i < NFS_POOL_MAX; i++) {
		nfs_conn_close(&f->conn[i]);
		pthread_mutex_destroy(&f->conn[i].mu);
	}
	nfs_sig_restore(&old);
	pthread_mutex_destroy(&f->pool_mu);
	vdk_nfs_uri_free(&f->u);
	free(f->mount);
	free(f->rel);
	free(f);
}

static int nfs_src_open_related(struct vdk_src *s, const char *name, const struct vdk_access *acc,
                                struct vdk_src **out, struct vdk_err *e);

static const struct vdk_src_ops nfs_src_ops = {
    .pread = nfs_src_pread,
    .open_related = nfs_src_open_related,
    .close = nfs_src_close,
    .check_unchanged = nfs_src_check,
};

static int nfs_src_setup(struct vdk_src *s, struct vdk_err *e)
{
	struct nfs_src *f = s->priv;
	sigset_t old;
	nfs_sig_block(&old);
	int r = nfs_conn_open(s, &f->conn[0], e);
	nfs_sig_restore(&old);
	if (r)
		return r;
	f->nconn = 1;
	struct nfs_stat_64 st;
	r = nfs_src_fstat(s, &st, e);
	if (r)
		return r;
	if (nfs_ftype(st.nfs_mode) != VDK_FT_REG)
		return vdk_err_set(e, VDK_E_INPUT, EINVAL, s->name, NULL, VDK_NO_OFFSET,
		                   "not a regular file");
	s->size = st.nfs_size;
	s->mtime_ns = nfs_mtime_ns(&st);
	s->dev = (dev_t)st.nfs_dev;
	s->ino = (ino_t)st.nfs_ino;
	return 0;
}

int vdk_src_open_nfs(const char *uri, struct vdk_src **out, struct vdk_err *e)
{
	struct nfs_src *f = calloc(1, sizeof(*f));
	struct vdk_src *s = f ? vdk_src_alloc(&nfs_src_ops, uri) : NULL;
	if (!s) {
		free(f);
		return vdk_ioerr(e, ENOMEM, uri, "out of memory");
	}
	pthread_mutex_init(&f->pool_mu, NULL);
	for (unsigned i = 0; i < NFS_POOL_MAX; i++)
		pthread_mutex_init(&f->conn[i].mu, NULL);
	s->priv = f;
	int r = vdk_nfs_uri_parse(uri, &f->u, e);
	if (!r) {
		r = nfs_split(f->u.path, &f->mount, &f->rel);
		if (r == -EINVAL)
			r = vdk_err_set(e, VDK_E_USAGE, EISDIR, uri, "nfs", VDK_NO_OFFSET,
			                "names no file");
		else if (r)
			r = vdk_ioerr(e, ENOMEM, uri, "out of memory");
	}
	if (!r)
		r = nfs_src_setup(s, e);
	if (r) {
		vdk_src_close(s);
		return r;
	}
	*out = s;
	return 0;
}

/* Related files (VMDK extents, backing files, folder members) --------- */

static bool nfs_has_dotdot(const char *name)
{
	for (const char *p = name; (p = strstr(p, "..")); p += 2)
		if ((p == name || p[-1] == '/') && (p[2] == '/' || p[2] == '\0'))
			return true;
	return false;
}

static bool nfs_within(const char *p, const char *dir)
{
	size_t n = strlen(dir);
	if (n == 1 && dir[0] == '/')
		return true;
	return !strncmp(p, dir, n) && (p[n] == '/' || p[n] == '\0');
}

/* dir + "/" + name with "." and ".." applied; NULL when it climbs above
 * the root or on no memory. */
static char *nfs_resolve(const char *dir, const char *name)
{
	size_t cap = strlen(dir) + strlen(name) + 3;
	char *o = malloc(cap);
	if (!o)
		return NULL;
	snprintf(o, cap, "%s", strcmp(dir, "/") ? dir : "");
	size_t w = strlen(o);
	for (const char *p = name; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			char *sl = w ? memrchr(o, '/', w) : NULL;
			if (!sl) {
				free(o);
				return NULL;
			}
			w = (size_t)(sl - o);
		} else if (n && !(n == 1 && p[0] == '.')) {
			o[w++] = '/';
			memcpy(o + w, p, n);
			w += n;
		}
		o[w] = 0;
		p += n + (p[n] == '/');
	}
	if (!w)
		o[w++] = '/';
	o[w] = 0;
	return o;
}

static bool nfs_allowed_dir(const struct nfs_src *f, const char *target,
                            const struct vdk_access *acc)
{
	for (const char *const *d = acc->allow_dirs; d && *d; d++) {
		struct vdk_nfs_uri a;
		struct vdk_err ignore = {0};
		if (strncmp(*d, VDK_NFS_PREFIX, strlen(VDK_NFS_PREFIX)) ||
		    vdk_nfs_uri_parse(*d, &a, &ignore))
			continue;
		bool ok = !strcmp(a.server, f->u.server) && nfs_within(target, a.path);
		vdk_nfs_uri_free(&a);
		if (ok)
			return true;
	}
	return false;
}

/* Every component below the image's folder is a real folder (the last a
 * regular file), never a symlink that could lead out of it. */
static int nfs_check_components(struct vdk_src *s, const char *target, struct vdk_err *e)
{
	struct nfs_src *f = s->priv;
	size_t base = strcmp(f->mount, "/") ? strlen(f->mount) : 0;
	struct nfs_conn *c = &f->conn[0];
	int r = 0;
	pthread_mutex_lock(&c->mu);
	sigset_t old;
	nfs_sig_block(&old);
	for (const char *p = target + base; !r && *p;) {
		const char *end = strchr(p + 1, '/');
		char *rel = strndup(target + base,
		                    end ? (size_t)(end - target - base) : strlen(target + base));
		struct nfs_stat_64 st;
		int q = !rel ? -ENOMEM : c->nfs ? nfs_lstat64(c->nfs, rel, &st) : -EIO;
		enum vdk_ftype want = end ? VDK_FT_DIR : VDK_FT_REG;
		if (q)
			r = nfs_err(e, c->nfs, q, s->name, VDK_NO_OFFSET,
			            "a related file is missing");
		else if (nfs_ftype(st.nfs_mode) != want)
			r = vdk_err_set(e, VDK_E_INPUT, EPERM, s->name, NULL, VDK_NO_OFFSET,
			                "refers to '%s', which is %s: refused", target,
			                nfs_ftype(st.nfs_mode) == VDK_FT_LNK
			                    ? "a symlink"
			                    : "not a regular file");
		free(rel);
		p = end ? end : p + strlen(p);
	}
	nfs_sig_restore(&old);
	pthread_mutex_unlock(&c->mu);
	return r;
}

static int nfs_src_open_related(struct vdk_src *s, const char *name, const struct vdk_access *acc,
                                struct vdk_src **out, struct vdk_err *e)
{
	struct nfs_src *f = s->priv;
	bool explicit = acc->allow_any || (acc->allow_dirs && acc->allow_dirs[0]);
	if (!name[0])
		return vdk_bad(e, s->name, NULL, VDK_NO_OFFSET, "refers to an empty file name");
	if (name[0] == '/')
		return vdk_err_set(e, VDK_E_INPUT, EPERM, s->name, NULL, VDK_NO_OFFSET,
		                   "refers to '%s', an absolute path, from a share: refused (names "
		                   "are resolved in the image's folder on the server)",
		                   name);
	if (!explicit && nfs_has_dotdot(name))
		return vdk_err_set(e, VDK_E_INPUT, EPERM, s->name, NULL, VDK_NO_OFFSET,
		                   "refers to '%s' outside its own folder: refused (allow a folder "
		                   "explicitly with --allow-dir)",
		                   name);
	char *target = nfs_resolve(f->mount, name);
	if (!target)
		return vdk_err_set(e, VDK_E_INPUT, EPERM, s->name, NULL, VDK_NO_OFFSET,
		                   "refers to '%s', which climbs above the server's root", name);
	bool own = nfs_within(target, f->mount);
	int r = 0;
	if (!own && !acc->allow_any && !nfs_allowed_dir(f, target, acc))
		r = vdk_err_set(e, VDK_E_INPUT, EPERM, s->name, NULL, VDK_NO_OFFSET,
		                "refers to '%s', which resolves outside the allowed folders: "
		                "refused",
		                name);
	else if (own && !acc->allow_any)
		r = nfs_check_components(s, target, e);
	char *uri = r ? NULL : vdk_nfs_uri_format(&f->u, target);
	if (!r && !uri)
		r = vdk_ioerr(e, ENOMEM, s->name, "out of memory");
	if (!r)
		r = vdk_src_open_nfs(uri, out, e);
	free(uri);
	free(target);
	return r;
}

/* Sinks ------------------------------------------------------------------ */

struct nfs_sink {
	struct vdk_nfs_uri u;
	char *mount, *final_rel, *tmp_rel; /* tmp_rel NULL once renamed */
	pthread_mutex_t mu;
	struct nfs_context *nfs;
	struct nfsfh *fh;
	size_t wchunk;
	uint64_t size; /* of the file, counting the write-behind buffer */
	uint8_t *wb;   /* write-behind: bytes [wb_off, wb_off + wb_len) */
	uint64_t wb_off;
	size_t wb_len;
	struct vdk_sink **related;
	size_t nrelated;
};

struct nfs_wreq {
	size_t len;
	int status;
	bool done;
};

static void nfs_wcb(int status, struct nfs_context *nfs, void *data, void *priv)
{
	(void)nfs;
	(void)data;
	struct nfs_wreq *q = priv;
	q->status = status;
	q->done = true;
}

/* Run the event loop until every request in q is answered; -EIO when the
 * connection failed (the caller destroys it while q is still alive, which
 * answers the rest as cancelled). */
static int nfs_wait(struct nfs_context *nfs, const struct nfs_wreq *q, unsigned n)
{
	for (unsigned i = 0; i < n;) {
		if (q[i].done) {
			i++;
			continue;
		}
		struct pollfd pfd = {.fd = nfs_get_fd(nfs), .events = (short)nfs_which_events(nfs)};
		int r = poll(&pfd, 1, 100);
		if (nfs_service(nfs, r > 0 ? pfd.revents : 0) < 0)
			return -EIO;
	}
	return 0;
}

static int nfs_write_sync(struct vdk_sink *k, const uint8_t *p, size_t len, uint64_t off,
                          struct vdk_err *e)
{
	struct nfs_sink *f = k->priv;
	while (len) {
		int n = nfs_pwrite(f->nfs, f->fh, off, VDK_MIN(len, f->wchunk), p);
		if (n <= 0) {
			int r = nfs_err(e, f->nfs, n < 0 ? n : -EIO, k->name, off, "write failed");
			nfs_after_error(&f->nfs, n);
			return r;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* Up to NFS_WDEPTH WRITEs of wchunk bytes in flight (libnfs copies the
 * data when it queues a request); short writes are finished in order. */
static int nfs_write_window(struct vdk_sink *k, const uint8_t *p, size_t len, uint64_t off,
                            size_t *done, struct vdk_err *e)
{
	struct nfs_sink *f = k->priv;
	struct nfs_wreq q[NFS_WDEPTH];
	unsigned n = 0;
	size_t issued = 0;
	for (; n < NFS_WDEPTH && issued < len; n++) {
		q[n] = (struct nfs_wreq){.len = VDK_MIN(f->wchunk, len - issued)};
		if (nfs_pwrite_async(f->nfs, f->fh, off + issued, q[n].len, p + issued, nfs_wcb,
		                     &q[n]) != 0) {
			q[n] = (struct nfs_wreq){.len = q[n].len, .status = -ENOMEM, .done = true};
			n++;
			break;
		}
		issued += q[n].len;
	}
	if (nfs_wait(f->nfs, q, n)) {
		nfs_destroy_context(f->nfs); /* answers what is left while q lives */
		f->nfs = NULL;
		f->fh = NULL;
		return nfs_lost(e, k->name, off);
	}
	size_t at = 0;
	for (unsigned i = 0; i < n; at += q[i].len, i++) {
		if (q[i].status < 0)
			return nfs_err(e, f->nfs, q[i].status, k->name, off + at, "write failed");
		if ((size_t)q[i].status < q[i].len) {
			size_t got = (size_t)q[i].status;
			int r = nfs_write_sync(k, p + at + got, q[i].len - got, off + at + got, e);
			if (r)
				return r;
		}
	}
	*done = issued;
	return 0;
}

static int nfs_write_all(struct vdk_sink *k, const uint8_t *p, size_t len, uint64_t off,
                         struct vdk_err *e)
{
	struct nfs_sink *f = k->priv;
	while (len) {
		if (!f->nfs)
			return nfs_lost(e, k->name, off);
		size_t done = 0;
		int r = nfs_write_window(k, p, len, off, &done, e);
		if (r)
			return r;
		p += done;
		off += done;
		len -= done;
	}
	return 0;
}

static int nfs_flush(struct vdk_sink *k, struct vdk_err *e)
{
	struct nfs_sink *f = k->priv;
	if (!f->wb_len)
		return 0;
	size_t n = f->wb_len;
	f->wb_len = 0;
	return nfs_write_all(k, f->wb, n, f->wb_off, e);
}

static int nfs_sink_pwrite(struct vdk_sink *k, const void *buf, size_t len, uint64_t off,
                           struct vdk_err *e)
{
	struct nfs_sink *f = k->priv;
	uint64_t end;
	if (vdk_add_overflow(off, len, &end))
		return vdk_ioerr(e, EFBIG, k->name, "write past the largest offset");
	pthread_mutex_lock(&f->mu);
	sigset_t old;
	nfs_sig_block(&old);
	int r = 0;
	if (f->wb_len && off == f->wb_off + f->wb_len && f->wb_len + len <= NFS_WB) {
		memcpy(f->wb + f->wb_len, buf, len);
		f->wb_len += len;
	} else {
		r = nfs_flush(k, e);
		if (!r && len >= NFS_WB) {
			r = nfs_write_all(k, buf, len, off, e);
		} else if (!r) {
			memcpy(f->wb, buf, len);
			f->wb_off = off;
			f->wb_len = len;
		}
	}
	if (!r && end > f->size)
		f->size = end;
	nfs_sig_restore(&old);
	pthread_mutex_unlock(&f->mu);
	return r;
}

/* NFSv4.0 cannot deallocate: past the end a new file reads as zeroes
 * already; inside, the core writes zeroes. */
static int nfs_sink_punch(struct vdk_sink *k, uint64_t off, uint64_t len, struct vdk_err *e)
{
	(void)len;
	(void)e;
	struct nfs_sink *f = k->priv;
	pthread_mutex_lock(&f->mu);
	bool past = off >= f->size;
	pthread_mutex_unlock(&f->mu);
	return past ? 0 : -EOPNOTSUPP;
}

static int nfs_sink_truncate(struct vdk_sink *k, uint64_t size, struct vdk_err *e)
{
	struct nfs_sink *f = k->priv;
	pthread_mutex_lock(&f->mu);
	sigset_t old;
	nfs_sig_block(&old);
	int r = nfs_flush(k, e);
	if (!r && !f->nfs)
		r = nfs_lost(e, k->name, VDK_NO_OFFSET);
	if (!r) {
		int q = nfs_ftruncate(f->nfs, f->fh, size);
		if (q) {
			r = nfs_err(e, f->nfs, q, k->name, VDK_NO_OFFSET,
			            "setting the size failed");
			nfs_after_error(&f->nfs, q);
		} else {
			f->size = size;
		}
	}
	nfs_sig_restore(&old);
	pthread_mutex_unlock(&f->mu);
	return r;
}

/* Data durable (COMMIT), the file closed, then renamed into place; the
 * server makes a RENAME durable before it answers. */
static int nfs_sink_place(struct vdk_sink *k, struct vdk_err *e)
{
	struct nfs_sink *f = k->priv;
	int r = nfs_flush(k, e);
	if (r)
		return r;
	if (!f->nfs)
		return nfs_lost(e, k->name, VDK_NO_OFFSET);
	int q = nfs_fsync(f->nfs, f->fh);
	if (q) {
		r = nfs_err(e, f->nfs, q, k->name, VDK_NO_OFFSET, "fsync (COMMIT) failed");
		nfs_after_error(&f->nfs, q);
		return r;
	}
	q = nfs_close(f->nfs, f->fh);
	f->fh = NULL;
	if (!q)
		q = nfs_rename(f->nfs, f->tmp_rel, f->final_rel);
	if (q) {
		r = nfs_err(e, f->nfs, q, k->name, VDK_NO_OFFSET, "closing and renaming failed");
		nfs_after_error(&f->nfs, q);
		return r;
	}
	free(f->tmp_rel);
	f->tmp_rel = NULL;
	return 0;
}

static int nfs_sink_commit(struct vdk_sink *k, struct vdk_err *e)
{
	struct nfs_sink *f = k->priv;
	/* Companions first, so the file that names them appears last. */
	for (size_t i = 0; i < f->nrelated; i++) {
		int r = vdk_sink_commit(f->related[i], e);
		if (r)
			return r;
	}
	pthread_mutex_lock(&f->mu);
	sigset_t old;
	nfs_sig_block(&old);
	int r = nfs_sink_place(k, e);
	nfs_sig_restore(&old);
	pthread_mutex_unlock(&f->mu);
	return r;
}

/* Remove rel, on a new connection when the old one is gone. */
static void nfs_sink_unlink(struct vdk_sink *k, const char *rel)
{
	struct nfs_sink *f = k->priv;
	struct vdk_err ignore = {0};
	if (!f->nfs && nfs_connect(&f->u, f->mount, k->name, &f->nfs, &ignore))
		f->nfs = NULL;
	if (f->nfs)
		nfs_unlink(f->nfs, rel);
}

static void nfs_sink_abort(struct vdk_sink *k)
{
	struct nfs_sink *f = k->priv;
	for (size_t i = 0; i < f->nrelated; i++)
		if (!f->related[i]->committed && f->related[i]->ops->abort)
			f->related[i]->ops->abort(f->related[i]);
	pthread_mutex_lock(&f->mu);
	sigset_t old;
	nfs_sig_block(&old);
	f->wb_len = 0;
	if (f->nfs && f->fh)
		nfs_close(f->nfs, f->fh);
	f->fh = NULL;
	if (f->tmp_rel)
		nfs_sink_unlink(k, f->tmp_rel);
	nfs_sig_restore(&old);
	pthread_mutex_unlock(&f->mu);
}

/* The file that names the companions goes first (as for local files). */
static void nfs_sink_withdraw(struct vdk_sink *k)
{
	struct nfs_sink *f = k->priv;
	pthread_mutex_lock(&f->mu);
	sigset_t old;
	nfs_sig_block(&old);
	nfs_sink_unlink(k, f->final_rel);
	nfs_sig_restore(&old);
	pthread_mutex_unlock(&f->mu);
	for (size_t i = 0; i < f->nrelated; i++)
		vdk_sink_withdraw(f->related[i]);
}

static void nfs_sink_free(struct nfs_sink *f)
{
	if (f->nfs) {
		sigset_t old;
		nfs_sig_block(&old);
		if (f->fh)
			nfs_close(f->nfs, f->fh);
		nfs_destroy_context(f->nfs);
		nfs_sig_restore(&old);
	}
	pthread_mutex_destroy(&f->mu);
	vdk_nfs_uri_free(&f->u);
	free(f->mount);
	free(f->final_rel);
	free(f->tmp_rel);
	free(f->wb);
	free(f->related);
	free(f);
}

static void nfs_sink_close(struct vdk_sink *k)
{
	struct nfs_sink *f = k->priv;
	for (size_t i = 0; i < f->nrelated; i++) {
		f->related[i]->committed = true; /* aborted above with the parent */
		vdk_sink_close(f->related[i]);
	}
	nfs_sink_free(f);
}

static int nfs_sink_open_related(struct vdk_sink *k, const char *name, struct vdk_sink **out,
                                 struct vdk_err *e);

static const struct vdk_sink_ops nfs_sink_ops = {
    .pwrite = nfs_sink_pwrite,
    .punch = nfs_sink_punch,
    .truncate = nfs_sink_truncate,
    .commit = nfs_sink_commit,
    .abort = nfs_sink_abort,
    .close = nfs_sink_close,
    .open_related = nfs_sink_open_related,
    .withdraw = nfs_sink_withdraw,
};

/* ".NAME.vdkit-XXXXXX" beside the output, created exclusively. */
static int nfs_create_tmp(struct nfs_sink *f, const char *name, struct vdk_err *e)
{
	static const char set[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	mode_t um = umask(0);
	umask(um);
	int r = -EEXIST;
	for (int t = 0; t < NFS_TMP_TRIES && r == -EEXIST; t++) {
		unsigned char rnd[6];
		if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
			for (size_t i = 0; i < sizeof(rnd); i++)
				rnd[i] = (unsigned char)(rand() ^ (t << 3));
		char sfx[7];
		for (size_t i = 0; i < sizeof(rnd); i++)
			sfx[i] = set[rnd[i] % (sizeof(set) - 1)];
		sfx[6] = 0;
		free(f->tmp_rel);
		if (asprintf(&f->tmp_rel, "/.%s.vdkit-%s", f->final_rel + 1, sfx) < 0) {
			f->tmp_rel = NULL;
			return vdk_ioerr(e, ENOMEM, name, "out of memory");
		}
		r = nfs_create(f->nfs, f->tmp_rel, O_RDWR | O_EXCL, (int)(0666 & ~um), &f->fh);
	}
	if (r) {
		free(f->tmp_rel);
		f->tmp_rel = NULL;
		return nfs_err(e, f->nfs, r, name, VDK_NO_OFFSET, "cannot create output");
	}
	return 0;
}

static int nfs_sink_setup(struct nfs_sink *f, const char *uri, struct vdk_err *e)
{
	int r = nfs_connect(&f->u, f->mount, uri, &f->nfs, e);
	if (r)
		return r;
	struct nfs_stat_64 st;
	if (nfs_stat64(f->nfs, f->final_rel, &st) == 0 && nfs_ftype(st.nfs_mode) == VDK_FT_DIR)
		return vdk_err_set(e, VDK_E_USAGE, EISDIR, uri, NULL, VDK_NO_OFFSET,
		                   "output is a directory");
	r = nfs_create_tmp(f, uri, e);
	if (r)
		return r;
	uint64_t wm = nfs_get_writemax(f->nfs);
	f->wchunk = wm ? (size_t)VDK_MIN(wm, (uint64_t)NFS_IO_MAX) : NFS4_WRITE_MAX;
	return 0;
}

int vdk_sink_create_nfs(const char *uri, struct vdk_sink **out, struct vdk_err *e)
{
	struct nfs_sink *f = calloc(1, sizeof(*f));
	if (!f || !(f->wb = malloc(NFS_WB))) {
		free(f);
		return vdk_ioerr(e, ENOMEM, uri, "out of memory");
	}
	pthread_mutex_init(&f->mu, NULL);
	int r = vdk_nfs_uri_parse(uri, &f->u, e);
	if (!r) {
		r = nfs_split(f->u.path, &f->mount, &f->final_rel);
		if (r == -EINVAL)
			r = vdk_err_set(e, VDK_E_USAGE, EISDIR, uri, NULL, VDK_NO_OFFSET,
			                "output names no file");
		else if (r)
			r = vdk_ioerr(e, ENOMEM, uri, "out of memory");
	}
	sigset_t old;
	nfs_sig_block(&old);
	if (!r)
		r = nfs_sink_setup(f, uri, e);
	if (r && f->tmp_rel)
		nfs_unlink(f->nfs, f->tmp_rel);
	nfs_sig_restore(&old);
	/* Named without the arguments: writers derive companion names from
	 * it (a flat VMDK's "NAME-flat.vmdk") and write them into files. */
	struct vdk_nfs_uri bare = {.server = f->u.server, .path = f->u.path, .query = ""};
	char *label = r ? NULL : vdk_nfs_uri_format(&bare, f->u.path);
	struct vdk_sink *k = label ? vdk_sink_alloc(&nfs_sink_ops, label) : NULL;
	free(label);
	if (!r && !k) {
		sigset_t o2;
		nfs_sig_block(&o2);
		nfs_unlink(f->nfs, f->tmp_rel);
		nfs_sig_restore(&o2);
		r = vdk_ioerr(e, ENOMEM, uri, "out of memory");
	}
	if (r) {
		/* A missing folder or no permission on the share is the
		 * environment's fault for an output, as for local files. */
		if (e->cls == VDK_E_INPUT)
			e->cls = VDK_E_IO;
		nfs_sink_free(f);
		return r;
	}
	k->priv = f;
	k->flags = VDK_SINK_ZEROED;
	*out = k;
	return 0;
}

static int nfs_sink_open_related(struct vdk_sink *k, const char *name, struct vdk_sink **out,
                                 struct vdk_err *e)
{
	struct nfs_sink *f = k->priv;
	if (strchr(name, '/') || !strcmp(name, "..") || !strcmp(name, ".") || !name[0])
		return vdk_err_set(e, VDK_E_USAGE, EINVAL, k->name, NULL, VDK_NO_OFFSET,
		                   "companion file name '%s' must be a plain name", name);
	char *path = nfs_resolve(f->mount, name);
	char *uri = path ? vdk_nfs_uri_format(&f->u, path) : NULL;
	struct vdk_sink **nr = uri ? realloc(f->related, (f->nrelated + 1) * sizeof(*nr)) : NULL;
	free(path);
	if (!nr) {
		free(uri);
		return vdk_ioerr(e, ENOMEM, k->name, "out of memory");
	}
	f->related = nr;
	int r = vdk_sink_create_nfs(uri, out, e);
	free(uri);
	if (r == 0)
		f->related[f->nrelated++] = *out;
	return r;
}

/* Folders ------------------------------------------------------------------ */

static int nfs_stat_at(const struct vdk_nfs_uri *u, const char *mount, const char *rel, bool follow,
                       const char *name, struct vdk_fstat *st, struct vdk_err *e)
{
	struct nfs_context *nfs;
	int r = nfs_connect(u, mount, name, &nfs, e);
	if (r)
		return r;
	struct nfs_stat_64 ns;
	r = follow ? nfs_stat64(nfs, rel, &ns) : nfs_lstat64(nfs, rel, &ns);
	if (r) {
		r = nfs_err(e, nfs, r, name, VDK_NO_OFFSET, "stat failed");
		nfs_after_error(&nfs, r);
	} else {
		*st = (struct vdk_fstat){.type = nfs_ftype(ns.nfs_mode),
		                         .size = ns.nfs_size,
		                         .mtime_ns = nfs_mtime_ns(&ns)};
	}
	if (nfs)
		nfs_destroy_context(nfs);
	return r;
}

int vdk_nfs_stat(const char *uri, bool follow, struct vdk_fstat *st, struct vdk_err *e)
{
	struct vdk_nfs_uri u;
	int r = vdk_nfs_uri_parse(uri, &u, e);
	if (r)
		return r;
	char *dir = NULL, *base = NULL;
	sigset_t old;
	nfs_sig_block(&old);
	r = nfs_split(u.path, &dir, &base);
	if (r == -ENOMEM) {
		r = vdk_ioerr(e, ENOMEM, uri, "out of memory");
	} else {
		/* The root of an NFSv3 export can only be reached by mounting it. */
		struct vdk_err first = {0};
		r = r ? -EINVAL : nfs_stat_at(&u, dir, base, follow, uri, st, &first);
		if (r && (r = nfs_stat_at(&u, u.path, "/", true, uri, st, e)) && first.cls)
			*e = first;
	}
	nfs_sig_restore(&old);
	free(dir);
	free(base);
	vdk_nfs_uri_free(&u);
	return r;
}

static int nfs_dirent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct vdk_dirent *)a)->name, ((const struct vdk_dirent *)b)->name);
}

static int nfs_list_push(struct vdk_dirent **v, size_t *n, size_t *cap, const struct nfsdirent *de)
{
	if (*n == *cap) {
		size_t c = *cap ? 2 * *cap : 32;
		struct vdk_dirent *nv = realloc(*v, c * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = c;
	}
	struct vdk_dirent *d = &(*v)[*n];
	d->name = strdup(de->name);
	if (!d->name)
		return -ENOMEM;
	d->st = (struct vdk_fstat){
	    .type = nfs_ftype(de->mode),
	    .size = de->size,
	    .mtime_ns = (int64_t)de->mtime.tv_sec * 1000000000 + (int64_t)de->mtime_nsec,
	};
	(*n)++;
	return 0;
}

static int nfs_list_at(struct nfs_context *nfs, const char *uri, struct vdk_dirent **out, size_t *n,
                       struct vdk_err *e)
{
	struct nfsdir *d;
	int r = nfs_opendir(nfs, "/", &d);
	if (r)
		return nfs_err(e, nfs, r, uri, VDK_NO_OFFSET, "cannot list the folder");
	size_t cap = 0;
	struct nfsdirent *de;
	while (!r && (de = nfs_readdir(nfs, d))) {
		if (!strcmp(de->name, ".") || !strcmp(de->name, ".."))
			continue;
		if (*n >= NFS_DIR_MAX)
			r = vdk_bad(e, uri, "nfs", VDK_NO_OFFSET,
			            "more than %u entries in a folder", NFS_DIR_MAX);
		else if (nfs_list_push(out, n, &cap, de))
			r = vdk_ioerr(e, ENOMEM, uri, "out of memory");
	}
	nfs_closedir(nfs, d);
	return r;
}

int vdk_nfs_list(const char *uri, struct vdk_dirent **out, size_t *n, struct vdk_err *e)
{
	*out = NULL;
	*n = 0;
	struct vdk_nfs_uri u;
	int r = vdk_nfs_uri_parse(uri, &u, e);
	if (r)
		return r;
	struct nfs_context *nfs;
	sigset_t old;
	nfs_sig_block(&old);
	r = nfs_connect(&u, u.path, uri, &nfs, e);
	if (!r) {
		r = nfs_list_at(nfs, uri, out, n, e);
		nfs_destroy_context(nfs);
	}
	nfs_sig_restore(&old);
	vdk_nfs_uri_free(&u);
	if (r) {
		vdk_dir_free(*out, *n);
		*out = NULL;
		*n = 0;
		return r;
	}
	if (*n)
		qsort(*out, *n, sizeof(**out), nfs_dirent_cmp);
	return 0;
}
