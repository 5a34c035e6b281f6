# Helpers to read and damage qcow2 fields at exact offsets (sourced by the
# qcow2 check and damage tests). Offsets and values are plain integers.
# Values are bash integers (64-bit, wrapping): bit 63 stays usable with & and |.
be64() { local h; h=$(od -A n -t x8 --endian=big -j "$2" -N 8 "$1" | tr -d ' '); echo $((16#${h:-0})); }
be32() { local h; h=$(od -A n -t x4 --endian=big -j "$2" -N 4 "$1" | tr -d ' '); echo $((16#${h:-0})); }
put_bytes() { # FILE OFF HEX
	printf "$(echo "$3" | sed 's/../\\x&/g')" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
put64() { put_bytes "$1" "$2" "$(printf '%016x' $(($3)))"; }
put16() { put_bytes "$1" "$2" "$(printf '%04x' "$3")"; }
OMASK=$((0x00fffffffffffe00))
q_cs() { echo $((1 << $(be32 "$1" 20))); }
q_l1() { be64 "$1" 40; }
q_rt() { be64 "$1" 48; }
q_rb0() { be64 "$1" "$(q_rt "$1")"; }
q_l2() { echo $(($(be64 "$1" $(($(q_l1 "$1") + 8 * ${2:-0}))) & OMASK)); } # FILE [L1 index]
