#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"

/* Not calloc: once a larger block was freed, glibc's dynamic mmap
 * threshold serves a 64 KiB calloc from the heap and clears all of it, so
 * 2000 qcow2 L2 tables holding one entry each cost 130 MiB of RSS. */
void *vdk_zalloc_lazy(size_t len)
{
	void *p =
	    mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* With transparent huge pages, one entry written would fault in 2 MiB. */
	madvise(p, len ? len : 1, MADV_NOHUGEPAGE);
	return p;
}

void vdk_free_lazy(void *p, size_t len)
{
	if (p)
		munmap(p, len ? len : 1);
}

bool vdk_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	/* Check 16 bytes by hand, then compare the buffer with itself shifted:
	 * memcmp is vectorised and this needs no zero page. */
	size_t head = len < 16 ? len : 16;
	for (size_t i = 0; i < head; i++)
		if (p[i])
			return false;
	return len <= 16 || memcmp(p, p + 16, len - 16) == 0;
}

int vdk_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ENODATA;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int vdk_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ENOSPC;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}
