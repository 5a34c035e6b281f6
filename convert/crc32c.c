/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as VHDX uses it for
 * headers, region tables and log entries (MS-VHDX 2.2). zlib-style chaining:
 * vdk_crc32c(vdk_crc32c(0, a), b) == vdk_crc32c(0, a || b). The SSE4.2 crc32
 * instruction computes exactly this polynomial; a slicing table serves CPUs
 * without it. Only this function is built for SSE4.2 (target attribute), so
 * the rest of the library runs on any x86-64. */
#include <pthread.h>
#include <string.h>

#include "util.h"

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init_table(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
		crc32c_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc32c_table[t][i] = (crc32c_table[t - 1][i] >> 8) ^
			                     crc32c_table[0][crc32c_table[t - 1][i] & 0xff];
}

/* Slicing-by-8: eight table lookups per 8 bytes. */
static uint32_t crc32c_sw(uint32_t c, const uint8_t *p, size_t len)
{
	pthread_once(&crc32c_once, crc32c_init_table);
	while (len >= 8) {
		uint32_t lo = c ^ vdk_le32(p), hi = vdk_le32(p + 4);
		c = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^
		    crc32c_table[5][(lo >> 16) & 0xff] ^ crc32c_table[4][lo >> 24] ^
		    crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff] ^
		    crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xff];
	return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t c, const uint8_t *p,
                                                            size_t len)
{
	uint64_t c64 = c;
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c64 = __builtin_ia32_crc32di(c64, v);
		p += 8;
		len -= 8;
	}
	c = (uint32_t)c64;
	while (len--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}

static int crc32c_hw_ok;
static pthread_once_t crc32c_hw_once = PTHREAD_ONCE_INIT;

static void crc32c_detect(void)
{
	__builtin_cpu_init();
	crc32c_hw_ok = __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

static int crc32c_have_hw(void)
{
	pthread_once(&crc32c_hw_once, crc32c_detect);
	return crc32c_hw_ok;
}
#endif

uint32_t vdk_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;
#if defined(__x86_64__)
	if (crc32c_have_hw())
		return ~crc32c_hw(c, p, len);
#endif
	return ~crc32c_sw(c, p, len);
}

/* For tests: force the table path. Not in util.h (internal). */
uint32_t vdk_crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t vdk_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	return ~crc32c_sw(~crc, buf, len);
}
