/* The warm record (convert/apply.c): what is written reads back the same;
 * a damaged, truncated, oversized or foreign record is refused as bad
 * input with the file named, never half-read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply.h"
#include "test.h"

static char ta_dir[] = "/tmp/vdkit-test-apply.XXXXXX";
static char ta_target[256], ta_record[300];

static void ta_put(const char *text)
{
	FILE *f = fopen(ta_record, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static char *ta_get(void)
{
	static char buf[8192];
	FILE *f = fopen(ta_record, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = '\0';
	return buf;
}

static struct vdk_warm_record ta_sample(void)
{
	struct vdk_warm_record r = {.cid = 0x1234abcd,
	                            .base_cid = 0xfffffffe,
	                            .has_pending = true,
	                            .pending = 0x00000007,
	                            .virtual_size = 1ull << 40,
	                            .target_size = 123456789,
	                            .target_mtime_ns = 1796289693586864351ull,
	                            .applied = 3};
	for (int i = 0; i < VDK_DIGEST_MAX; i++)
		r.base_digest[i] = (uint8_t)(i * 37);
	snprintf(r.format, sizeof(r.format), "qcow2");
	return r;
}

static void ta_round_trip(void)
{
	struct vdk_warm_record w = ta_sample(), r;
	struct vdk_err e = {0};
	CHECK(vdk_warm_record_write(ta_target, &w, &e) == 0, "a record is written: %s", e.msg);
	CHECK(vdk_warm_record_read(ta_target, &r, &e) == 0, "and read back: %s", e.msg);
	CHECK(r.cid == w.cid && r.base_cid == w.base_cid && r.has_pending &&
	          r.pending == w.pending && r.virtual_size == w.virtual_size &&
	          r.target_size == w.target_size && r.target_mtime_ns == w.target_mtime_ns &&
	          r.applied == w.applied && !memcmp(r.base_digest, w.base_digest, VDK_DIGEST_MAX) &&
	          !strcmp(r.format, "qcow2"),
	      "every field survives the round trip");
	w.has_pending = false;
	vdk_warm_record_write(ta_target, &w, &e);
	CHECK(vdk_warm_record_read(ta_target, &r, &e) == 0 && !r.has_pending,
	      "no pending-cid member: nothing pending");
}

/* Each variant of a good record must be refused as bad input. */
static void ta_refused(const char *what, const char *from, const char *to)
{
	struct vdk_warm_record w = ta_sample(), r;
	struct vdk_err e = {0};
	vdk_warm_record_write(ta_target, &w, &e);
	char *text = strdup(ta_get()), *at = strstr(text, from);
	if (!at) {
		CHECK(0, "%s: '%s' not in the record", what, from);
		free(text);
		return;
	}
	char out[8192];
	snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
	ta_put(out);
	int rc = vdk_warm_record_read(ta_target, &r, &e);
	CHECK(rc < 0 && e.cls == VDK_E_INPUT && strstr(e.msg, ".vdkit-warm"), "%s: refused (%s)",
	      what, e.msg);
	free(text);
}

static void ta_damage(void)
{
	ta_refused("another version", "\"vdkit-warm\": 1", "\"vdkit-warm\": 2");
	ta_refused("a CID of 7 digits", "\"cid\": \"1234abcd\"", "\"cid\": \"1234abc\"");
	ta_refused("a CID that is not hex", "\"cid\": \"1234abcd\"", "\"cid\": \"1234abcz\"");
	ta_refused("a short digest", "\"base-digest\": \"00", "\"base-digest\": \"");
	ta_refused("a missing member", "\"target-size\"", "\"target-sizes\"");
	ta_refused("a number that overflows",
	           "\"virtual-size\": ", "\"virtual-size\": 99999999999999999999");
	ta_refused("an escaped string", "\"format\": \"qcow2\"", "\"format\": \"q\\\"cow2\"");
	ta_refused("trailing garbage", "\n}", "\n}x");
	ta_refused("a truncated object", "\n}", "");
	ta_refused("an overlong format name", "\"format\": \"qcow2\"",
	           "\"format\": \"qcow2qcow2qcow2qcow2qcow2qcow2qcow2qcow2\"");
	struct vdk_warm_record r;
	struct vdk_err e = {0};
	char big[6000];
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ta_put(big);
	CHECK(vdk_warm_record_read(ta_target, &r, &e) < 0 && e.cls == VDK_E_INPUT,
	      "a record over 4 KiB is refused unread (%s)", e.msg);
	unlink(ta_record);
	struct vdk_err e2 = {0};
	CHECK(vdk_warm_record_read(ta_target, &r, &e2) < 0 && e2.cls == VDK_E_INPUT &&
	          strstr(e2.msg, "convert --warm"),
	      "no record: bad input that says how to make one (%s)", e2.msg);
}

int main(void)
{
	if (!mkdtemp(ta_dir))
		return 2;
	snprintf(ta_target, sizeof(ta_target), "%s/disk.qcow2", ta_dir);
	snprintf(ta_record, sizeof(ta_record), "%s%s", ta_target, VDK_WARM_SUFFIX);
	ta_round_trip();
	ta_damage();
	unlink(ta_record);
	rmdir(ta_dir);
	TEST_EXIT();
}
