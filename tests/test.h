/* Minimal unit-test support: each tests/test_<thing>.c is one program that
 * prints "ok - ..." / "not ok - ..." / "skip - ..." lines; tests/run.sh
 * counts them across every program and script and prints the final
 * "N passed, N failed" line. */
#ifndef VDK_TEST_H
#define VDK_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int test_failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (cond) {                                                                        \
			printf("ok - ");                                                           \
		} else {                                                                           \
			test_failures++;                                                           \
			printf("not ok - %s:%d: (%s) ", __FILE__, __LINE__, #cond);                \
		}                                                                                  \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
		fflush(stdout);                                                                    \
	} while (0)

#define CHECK_EQ_U64(a, b, ...)                                                                    \
	do {                                                                                       \
		uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                   \
		if (a_ != b_)                                                                      \
			printf("# %s = %" PRIu64 ", %s = %" PRIu64 "\n", #a, a_, #b, b_);          \
		CHECK(a_ == b_, __VA_ARGS__);                                                      \
	} while (0)

#define SKIP(...)                                                                                  \
	do {                                                                                       \
		printf("skip - ");                                                                 \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
	} while (0)

#define TEST_EXIT() return test_failures ? 1 : 0

#endif
