/* Standalone replay driver: runs a libFuzzer harness over every file in the
 * given files/folders without libFuzzer, so `make check` replays each seed
 * corpus and saved crasher under ASan/UBSan with plain gcc. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_MAX (64u << 20)

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		printf("not ok - replay %s: cannot open\n", path);
		return 1;
	}
	uint8_t *buf = malloc(REPLAY_MAX);
	size_t n = buf ? fread(buf, 1, REPLAY_MAX, f) : 0;
	fclose(f);
	if (!buf) {
		printf("not ok - replay %s: out of memory\n", path);
		return 1;
	}
	/* Copy into an exact-size allocation so ASan sees overreads. */
	uint8_t *exact = malloc(n ? n : 1);
	if (exact)
		memcpy(exact, buf, n);
	free(buf);
	if (!exact)
		return 1;
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return 0;
}

static int replay_path(const char *path, unsigned *count)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return 0; /* an absent crashers/ folder is fine */
	if (!S_ISDIR(st.st_mode)) {
		(*count)++;
		return replay_file(path);
	}
	DIR *d = opendir(path);
	if (!d)
		return 1;
	int bad = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char sub[4096];
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		bad |= replay_path(sub, count);
	}
	closedir(d);
	return bad;
}

int main(int argc, char **argv)
{
	int bad = 0;
	for (int i = 1; i < argc; i++) {
		unsigned count = 0;
		bad |= replay_path(argv[i], &count);
		if (count)
			printf("ok - replayed %u inputs from %s without a crash\n", count, argv[i]);
	}
	return bad;
}
