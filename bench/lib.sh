# Helpers of the bench scripts (bench/run.sh, bench/bigct.sh, bench/bigct-predict.sh); source it
# after setting `rows` (the table rows file) and `me` (the prefix of error messages).
# row WHAT OURS PEER RATIO   appends a row of bench/RESULTS.md's table and prints it
row() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$rows"; echo "  $1: ours $2 | nnU-Net $3 | $4"; }
# ratio A B                  A / B as "N.Nx"
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.1f}x' if b>0 else 'n/a')" "$1" "$2"; }
timed() { # timed LOGFILE CMD... -> prints "wall_s max_rss_kb"
  local log=$1; shift
  /usr/bin/time -f "TIMED %e %M" -o "$log.time" "$@" > "$log" 2>&1 || { echo "${me:-bench}: failed: $* (see $log)" >&2; tail -20 "$log" >&2; exit 1; }
  awk '/^TIMED/ {print $2, $3}' "$log.time"
}
