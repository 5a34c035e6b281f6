#!/usr/bin/env bash
# The layering rules of docs/ARCHITECTURE.md, checked on the tree and on the
# library's object files: who may include whom, and no two objects of the
# library that call each other (an include circle in disguise).
source "$(dirname "$0")/lib.sh"
cd "$TOP"

# Headers the front ends may use: the core's (installed by make install), and
# each upper layer's public one; io_tmp.h is the sink's own.
public="^($(ls convert/*.h | xargs -n1 basename | sed 's/\.h$//' | grep -vE '^io_(tmp|beneath)$' | paste -sd'|')|remote|ova|vmx)\\.h\$"
includes() { grep -ho '#include "[^"]*"' "$@" 2>/dev/null | sed 's/#include "\(.*\)"/\1/' | sort -u; }

bad=$(for f in tools/*.c tools/*.h plugin/*.c; do
	[ -f "$f" ] || continue
	for h in $(includes "$f"); do
		[ "$h" = cli.h ] && continue
		[[ "$h" =~ $public ]] || echo "$f:$h"
	done
done)
[ -z "$bad" ] && pass "tools/ and plugin/ include only public headers" ||
	fail "private headers included by front ends: $bad"

pkg_h=$(ls package/*.h 2>/dev/null | xargs -n1 basename | tr '\n' ' ')
bad=$(for f in formats/* convert/* remote/*; do
	[ -f "$f" ] || continue
	for h in $(includes "$f"); do
		for p in $pkg_h cli.h; do [ "$h" = "$p" ] && echo "$f:$h"; done
	done
done)
[ -z "$bad" ] && pass "convert/, remote/ and formats/ never include the package layer or the tools" ||
	fail "upward includes: $bad"

bad=$(grep -lE 'ova_|ustar|\.mf\b|<Envelope|ovf:' formats/*.c formats/*.h 2>/dev/null)
[ -z "$bad" ] && pass "no tar, OVF or manifest code under formats/" ||
	fail "package code under formats/: $bad"

# Object-level circles inside a module: files of one format (or of the
# package layer) that call each other, directly or round a loop.
if have nm && have python3 && ls obj/convert/*.o >/dev/null 2>&1; then
	out=$(python3 - obj/convert/*.o obj/formats/*.o obj/package/*.o $(ls obj/remote/*.o 2>/dev/null) <<'PY'
import subprocess, sys
defs, uses = {}, {}
for o in sys.argv[1:]:
    for line in subprocess.run(["nm", o], capture_output=True, text=True).stdout.splitlines():
        p = line.split()
        if len(p) == 3 and p[1] in "TDRB":
            defs[p[2]] = o
        elif len(p) == 2 and p[0] == "U":
            uses.setdefault(o, set()).add(p[1])
# Within a module (vmdk*.o, vhdx*.o, ova*.o ...): the core and the registry
# call every module and modules call the core's helpers by design.
def module(o):
    d, f = o.split("/")[-2], o.split("/")[-1][:-2]
    return d + "/" + f.split("_")[0]
edges = {(o, defs[u]) for o, us in uses.items() for u in us
         if u in defs and defs[u] != o and module(defs[u]) == module(o)}
# Strongly connected components (Tarjan) over the object graph.
graph = {}
for a, b in edges:
    graph.setdefault(a, set()).add(b)
index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
def visit(v):
    index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
    for w in graph.get(v, ()):
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: out.append(" ".join(sorted(comp)))
sys.setrecursionlimit(10000)
for v in list(graph):
    if v not in index: visit(v)
print("\n".join(out))
PY
)
	[ -z "$out" ] && pass "no call circles between the files of a module" ||
		fail "objects that call each other: $out"
else
	skip "object circle check: needs nm, python3 and a built obj/"
fi
finish
