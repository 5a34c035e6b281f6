/* Context pools (pool.h). */
#include "pool.h"

int vdk_pool_init(struct vdk_pool *p, void (*drop)(void *arg, void *item), void *arg)
{
	p->n = 0;
	p->drop = drop;
	p->arg = arg;
	p->mu_ok = pthread_mutex_init(&p->mu, NULL) == 0;
	return p->mu_ok ? 0 : -1;
}

void *vdk_pool_take(struct vdk_pool *p)
{
	void *it = NULL;
	pthread_mutex_lock(&p->mu);
	if (p->n)
		it = p->item[--p->n];
	pthread_mutex_unlock(&p->mu);
	return it;
}

void vdk_pool_give(struct vdk_pool *p, void *item)
{
	if (!item)
		return;
	pthread_mutex_lock(&p->mu);
	if (p->n < VDK_POOL_MAX) {
		p->item[p->n++] = item;
		item = NULL;
	}
	pthread_mutex_unlock(&p->mu);
	if (item)
		p->drop(p->arg, item);
}

void vdk_pool_fini(struct vdk_pool *p)
{
	if (!p->mu_ok)
		return;
	for (unsigned i = 0; i < p->n; i++)
		p->drop(p->arg, p->item[i]);
	p->n = 0;
	pthread_mutex_destroy(&p->mu);
	p->mu_ok = false;
}
