# vdkit — one plain Makefile.
#   make              bin/vdkit, bin/vmdk2vhdx, bin/libvdkit.a
#   make check        every unit test, integration script and fuzz replay
#   make demo         the main job on a bundled sample, verified
#   make fuzz         libFuzzer on every harness (FUZZ_SECONDS=N each, FUZZ_JOBS at once)
#   make fuzz-diff    vdkit vs qemu-img on mutated images (FUZZ_DIFF_N, FUZZ_DIFF_SEED)
#   make bench        vdkit vs qemu-img on generated inputs (BENCH_DISK=1: on disk)
#   make bench-scale  the scale table: TiB-size disks, 100k extents, OVA
#   make install      PREFIX=/usr/local DESTDIR=
#   (with nbdkit-plugin-dev: bin/nbdkit-vdkit-plugin.so, see plugin/README)

CC ?= cc
PREFIX ?= /usr/local
DESTDIR ?=
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 2
# ISA-L (igzip) serves the fast deflate levels and inflate where it exists
# (x86-64, aarch64); elsewhere convert/codec.c falls back to libdeflate.
# Evaluated once, on first use (after `deps`).
HAVE_ISAL = $(eval HAVE_ISAL := $(shell pkg-config --exists libisal && echo 1))$(HAVE_ISAL)
PKGS = zlib libxml-2.0 libcrypto uuid libdeflate libzstd libnbd libnfs $(if $(HAVE_ISAL),libisal)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror
# -fPIC: the same library objects also go into the nbdkit plugin (a .so).
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -pthread -fPIC $(WARN) \
	-Iconvert -Iformats -Ipackage -Iremote -MMD -MP
CFLAGS ?= -O2 -g
# Recursive (=): evaluated after `deps` has installed what was missing.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS))
ALL_CFLAGS = $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) $(if $(HAVE_ISAL),-DVDK_HAVE_ISAL=1)
LIBS = $(PKG_LIBS) -pthread

LIB_SRC := $(sort $(wildcard convert/*.c formats/*.c package/*.c remote/*.c))
LIB_OBJ := $(LIB_SRC:%.c=obj/%.o)
TOOL_COMMON := $(sort $(wildcard tools/cli*.c tools/cmd_*.c tools/help.c))
TOOL_COMMON_OBJ := $(TOOL_COMMON:%.c=obj/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=bin/tests/%)
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
REPLAY_BIN := $(FUZZ_SRC:fuzz/fuzz_%.c=fuzz/bin/replay_%)
FUZZ_BIN := $(FUZZ_SRC:fuzz/fuzz_%.c=fuzz/bin/fuzz_%)
ASAN_OBJ := $(LIB_SRC:%.c=obj-asan/%.o)
FUZZ_OBJ := $(LIB_SRC:%.c=obj-fuzz/%.o)
PROGS := bin/vdkit bin/vdk-gen bin/vdk-gen-delta bin/vdk-rawsha bin/vdk-upd $(if $(wildcard tools/vmdk2vhdx.c),bin/vmdk2vhdx)
# The nbdkit plugin, built only where nbdkit-plugin.h is installed.
# `nbdkit vdkit` finds it by name only in nbdkit's own folder:
#   make install NBDKIT_PLUGINDIR=$(pkg-config --variable=plugindir nbdkit)
NBDKIT_PLUGINDIR ?= $(PREFIX)/lib/nbdkit/plugins
PLUGIN := $(if $(shell pkg-config --exists nbdkit 2>/dev/null && echo y),bin/nbdkit-vdkit-plugin.so)

.PHONY: all deps test-deps check demo fuzz fuzz-diff bench bench-scale install clean format
all: $(PROGS) $(PLUGIN)

deps:
	@scripts/deps.sh build
test-deps:
	@scripts/deps.sh test

obj/%.o: %.c | deps
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(ALL_CFLAGS) -c $< -o $@

bin bin/tests:
	@mkdir -p $@

bin/libvdkit.a: $(LIB_OBJ) | bin
	rm -f $@ && ar rcs $@ $^

bin/vdkit: obj/tools/vdkit.o $(TOOL_COMMON_OBJ) bin/libvdkit.a | bin
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)
bin/vmdk2vhdx: obj/tools/vmdk2vhdx.o $(TOOL_COMMON_OBJ) bin/libvdkit.a | bin
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)
bin/vdk-rawsha: obj/tests/rawsha.o bin/libvdkit.a | bin
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)
bin/vdk-gen: obj/tests/gen.o bin/libvdkit.a | bin
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)
# nbdkit resolves nbdkit_* when it loads the plugin; the library's own
# symbols stay private to the .so (--exclude-libs).
obj/plugin/vdkit.o: ALL_CFLAGS += $(shell pkg-config --cflags nbdkit)
bin/nbdkit-vdkit-plugin.so: obj/plugin/vdkit.o bin/libvdkit.a | bin
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) -shared -Wl,--exclude-libs,ALL -o $@ $^ $(LIBS)
bin/vdk-gen-delta: obj/tests/gen_delta.o bin/libvdkit.a | bin
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)
# The update driver simulates power cuts by wrapping the library's writes
# and syncs (tests/upd.c); nothing else is linked this way.
bin/vdk-upd: obj/tests/upd.o bin/libvdkit.a | bin
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) -Wl,--wrap=pwrite64,--wrap=fdatasync,--wrap=fsync -o $@ $^ $(LIBS)
bin/tests/%: obj/tests/%.o bin/libvdkit.a | bin/tests
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)

# Fuzz replays: the library rebuilt with ASan+UBSan, run by `make check`.
SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
obj-asan/%.o: %.c | deps
	@mkdir -p $(dir $@)
	@echo "  CC-SAN  $<"
	@$(CC) $(ALL_CFLAGS) -O1 $(SAN) -c $< -o $@
fuzz/bin/replay_%: fuzz/fuzz_%.c fuzz/replay.c $(wildcard fuzz/*.h) $(ASAN_OBJ)
	@mkdir -p fuzz/bin
	@echo "  LD-SAN  $@"
	@$(CC) $(ALL_CFLAGS) -O1 $(SAN) -o $@ $(filter %.c %.o,$^) $(LIBS)

# Differential fuzzing against qemu-img (not part of check), over the
# library as built for users: what is compared is what users run (memory
# errors are the libFuzzer harnesses' part), and a mutant costs ~1 ms of
# vdkit against ~6 ms of qemu-img.
FUZZ_DIFF_N ?= 100000
FUZZ_DIFF_SEED ?= 1
FUZZ_DIFF_JOBS ?= 2
FUZZ_DIFF_CORPUS := qcow2:fuzz/corpus/qcow2 vmdk:fuzz/corpus/vmdk vhd:fuzz/corpus/vhd \
	vhdx:fuzz/corpus/vhdx sesparse:fuzz/corpus/sesparse
FUZZ_DIFF_SRC := fuzz/diff.c fuzz/diff_mut.c fuzz/diff_hint.c fuzz/diff_run.c fuzz/diff_report.c
fuzz/bin/fuzz-diff: $(FUZZ_DIFF_SRC) fuzz/diff.h bin/libvdkit.a
	@mkdir -p fuzz/bin
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) -o $@ $(FUZZ_DIFF_SRC) bin/libvdkit.a $(LIBS)
fuzz-diff: all test-deps fuzz/bin/fuzz-diff
	nice -n 10 fuzz/bin/fuzz-diff -Q -n $(FUZZ_DIFF_N) -s $(FUZZ_DIFF_SEED) -j $(FUZZ_DIFF_JOBS) \
	  -o fuzz/diff $(FUZZ_DIFF_CORPUS)

# Allocation-failure sweep: vdkit's own allocations go through wraps that
# fail the Nth call; run under ASan so every failed run is leak-checked.
ALLOC_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup \
	-Wl,--wrap=posix_memalign,--wrap=aligned_alloc,--wrap=vasprintf,--wrap=asprintf
TEST_BIN := $(filter-out bin/tests/test_alloc,$(TEST_BIN))
ASAN_TEST_BIN := bin/asan/test_alloc
bin/asan/test_alloc: tests/test_alloc.c $(ASAN_OBJ)
	@mkdir -p bin/asan
	@echo "  LD-SAN  $@"
	@$(CC) $(ALL_CFLAGS) -O1 $(SAN) -o $@ $^ $(LIBS) $(ALLOC_WRAP)

# The tests that run threads (pipeline workers, the OVA digest thread, the
# qcow2 and VMDK readers' context pools and L2 cache shared by workers)
# again under ThreadSanitizer, run by `make check`.
TSAN_BIN := bin/tsan/test_core bin/tsan/test_ova_vsrc bin/tsan/test_nbd bin/tsan/test_qcow2 \
	bin/tsan/test_vmdk
TSAN_OBJ := $(LIB_SRC:%.c=obj-tsan/%.o)
TSAN := -fsanitize=thread -fno-omit-frame-pointer
obj-tsan/%.o: %.c | deps
	@mkdir -p $(dir $@)
	@echo "  CC-TSAN $<"
	@$(FUZZ_CC) $(ALL_CFLAGS) -O1 $(TSAN) -c $< -o $@
bin/tsan/%: tests/%.c $(TSAN_OBJ)
	@mkdir -p bin/tsan
	@echo "  LD-TSAN $@"
	@$(FUZZ_CC) $(filter-out -MMD -MP,$(ALL_CFLAGS)) -O1 $(TSAN) -o $@ $^ $(LIBS)

# libFuzzer builds (clang).
FUZZ_CC ?= clang
FUZZ_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
obj-fuzz/%.o: %.c | deps
	@mkdir -p $(dir $@)
	@echo "  CC-FUZZ $<"
	@$(FUZZ_CC) $(ALL_CFLAGS) -O1 $(FUZZ_FLAGS) -c $< -o $@
fuzz/bin/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJ)
	@mkdir -p fuzz/bin
	@echo "  LD-FUZZ $@"
	@$(FUZZ_CC) $(filter-out -MMD -MP,$(ALL_CFLAGS)) -O1 -fsanitize=fuzzer,address,undefined -o $@ $^ $(LIBS)

# Every harness FUZZ_SECONDS each, FUZZ_JOBS at a time; prints exec/s and
# findings per harness and logs each run in fuzz/LOG.tsv (scripts/fuzz.sh).
fuzz: $(FUZZ_BIN)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) scripts/fuzz.sh

check: all test-deps $(TEST_BIN) $(REPLAY_BIN) $(TSAN_BIN) $(ASAN_TEST_BIN) fuzz/bin/fuzz-diff
	@tests/run.sh

demo: all test-deps
	@scripts/demo.sh

bench: all test-deps
	@scripts/bench.sh

# How cost grows with the work (TiB-size sparse disks, 100k extents on XFS,
# a 4-disk OVA): minutes, on the real disk; not part of make check.
bench-scale: all test-deps
	@scripts/bench-scale.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/vdkit
	install -m 755 $(filter-out bin/vdk-gen bin/vdk-rawsha bin/vdk-upd,$(PROGS)) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 bin/libvdkit.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 convert/*.h $(DESTDIR)$(PREFIX)/include/vdkit/
	$(if $(PLUGIN),install -d $(DESTDIR)$(NBDKIT_PLUGINDIR))
	$(if $(PLUGIN),install -m 755 $(PLUGIN) $(DESTDIR)$(NBDKIT_PLUGINDIR)/)
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 man/vdkit.1 man/vmdk2vhdx.1 $(DESTDIR)$(PREFIX)/share/man/man1/

format:
	clang-format -i convert/*.[ch] formats/*.[ch] package/*.[ch] remote/*.[ch] tools/*.[ch] tests/*.[ch] fuzz/*.c plugin/*.c

clean:
	rm -rf bin obj obj-asan obj-tsan obj-fuzz fuzz/bin

-include $(shell find obj obj-asan obj-tsan obj-fuzz -name '*.d' 2>/dev/null)

# Keep objects: make would otherwise delete the ASan ones as intermediates.
.SECONDARY:
