/* A bounded free list of per-request contexts (inflaters, compressors and
 * their buffers) shared by the pipeline's worker threads: a format takes
 * one for a read or an encode and gives it back, so a conversion allocates
 * about as many as it has workers instead of one per request. */
#ifndef VDK_POOL_H
#define VDK_POOL_H

#include <pthread.h>
#include <stdbool.h>

/* 32 covers the NBD pipeline's 32 workers: a smaller pool churned
 * allocations there (a VMDK read over NBD peaked at 61 MiB with 8). */
#define VDK_POOL_MAX 32u

struct vdk_pool {
	pthread_mutex_t mu;
	bool mu_ok;
	unsigned n;
	void *item[VDK_POOL_MAX];
	void (*drop)(void *arg, void *item); /* frees an item the pool cannot keep */
	void *arg;
};

/* 0, or -1 when the mutex cannot be made. */
int vdk_pool_init(struct vdk_pool *p, void (*drop)(void *arg, void *item), void *arg);
/* A kept item, or NULL: the caller then makes a new one. */
void *vdk_pool_take(struct vdk_pool *p);
/* Keeps item for the next taker, or drops it when the pool is full. */
void vdk_pool_give(struct vdk_pool *p, void *item);
/* Drops every kept item; safe on a pool whose init failed or never ran
 * (zeroed). */
void vdk_pool_fini(struct vdk_pool *p);

#endif
