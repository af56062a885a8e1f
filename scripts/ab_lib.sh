# Shared by the A/B record scripts in results/: `source scripts/ab_lib.sh` from the
# repository root, with $OLD (the base build's release directory), $out (the results
# directory) and $DATABASE_URL set.
#
# clean: empty Loadgen tables and journal, VACUUM FULL and CHECKPOINT, so that every run
# starts from the same store.
# ab ROUNDS TAG ARGS...: `tally-loadgen run ARGS` of the old and the new build,
# alternating, ROUNDS times; writes $out/TAG-<old|new>-<round>.{json,txt}.
clean() {
  psql -q "$DATABASE_URL" -At -c "select 'drop table if exists \"'||tablename||'\" cascade;' from pg_tables where tablename like 'Loadgen%'" | psql -q "$DATABASE_URL" >/dev/null
  psql -q "$DATABASE_URL" -c 'delete from "TALLY_JOURNAL"' >/dev/null 2>&1 || true
  psql -q "$DATABASE_URL" -c 'VACUUM FULL' -c 'CHECKPOINT' >/dev/null 2>&1 || true
}
ab() {
  local rounds=$1 tag=$2; shift 2
  for i in $(seq 1 "$rounds"); do
    for v in old new; do
      if [ $v = old ]; then b=$OLD/tally-loadgen; else b=target/release/tally-loadgen; fi
      clean
      "$b" run "$@" --out "$out/$tag-$v-$i.json" > "$out/$tag-$v-$i.txt" 2>&1
    done
  done
}
