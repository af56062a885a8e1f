#!/bin/bash
# /tmp/thp.sh ROUNDS TAG <run args>: default vs MIMALLOC_ALLOW_THP=0, same binary
R=$1; TAG=$2; shift 2
B=/work/main/target/release/tally-loadgen
for i in $(seq 1 $R); do
 for v in thp nothp; do
  /tmp/clean.sh
  if [ $v = nothp ]; then export MIMALLOC_ALLOW_THP=0; else unset MIMALLOC_ALLOW_THP; fi
  /usr/bin/time -f "wall %e" $B run "$@" --out /tmp/thp-$TAG-$v-$i.json > /tmp/thp-$TAG-$v-$i.txt 2>&1
  echo "$v $i $(grep -E 'events/s \(|node CPU|peak RSS|^wall|p50' /tmp/thp-$TAG-$v-$i.txt | tr -s ' ' | tr '\n' '|')"
 done
done
