/* Small helpers shared by every module: endian getters/setters for on-disk
 * byte arrays and overflow-checked size arithmetic. */
#ifndef VDK_UTIL_H
#define VDK_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VDK_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define VDK_MIN(a, b)     ((a) < (b) ? (a) : (b))
#define VDK_MAX(a, b)     ((a) > (b) ? (a) : (b))

static inline uint16_t vdk_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t vdk_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}
static inline uint64_t vdk_le64(const uint8_t *p)
{
	return (uint64_t)vdk_le32(p) | ((uint64_t)vdk_le32(p + 4) << 32);
}
static inline uint16_t vdk_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t vdk_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
	       (uint32_t)p[3];
}
static inline uint64_t vdk_be64(const uint8_t *p)
{
	return ((uint64_t)vdk_be32(p) << 32) | vdk_be32(p + 4);
}
static inline void vdk_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void vdk_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void vdk_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void vdk_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void vdk_put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static inline void vdk_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* Overflow-checked arithmetic: return true on overflow, like the builtins. */
static inline bool vdk_add_overflow(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_add_overflow(a, b, r);
}
static inline bool vdk_mul_overflow(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_mul_overflow(a, b, r);
}
/* True when [off, off+len) lies inside [0, size). */
static inline bool vdk_range_ok(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}
static inline bool vdk_is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}
static inline uint64_t vdk_round_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) / align * align;
}
/* True when the whole buffer is zero bytes. */
bool vdk_is_zero(const void *buf, size_t len);

/* Zeroed memory whose pages cost memory only once written (anonymous
 * mmap), for big, mostly empty tables; NULL when out of memory. Freed with
 * the same len. */
void *vdk_zalloc_lazy(size_t len);
void vdk_free_lazy(void *p, size_t len);

/* Whole-buffer pread/pwrite on a file descriptor, retrying EINTR and short
 * transfers. 0, or a negative errno; -ENODATA when pread meets end of file,
 * -ENOSPC when pwrite makes no progress. */
int vdk_pread_full(int fd, void *buf, size_t len, uint64_t off);
int vdk_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* CRC-32C (Castagnoli), SSE4.2 when the CPU has it (VHDX). */
uint32_t vdk_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
