#!/bin/sh
# One rank of `make test-mpi`: busted over spec/mpi/*_mpi.lua. Rank 0
# prints; the others write build/mpi-rank-N.log and print it only when
# they fail, so a failure on any rank shows and fails mpirun.
build=${1:-build}
rank=${OMPI_COMM_WORLD_RANK:-0}
if [ "$rank" = 0 ]; then
  exec lua5.4 /usr/bin/busted --pattern=_mpi spec/mpi
fi
log="$build/mpi-rank-$rank.log"
if lua5.4 /usr/bin/busted --pattern=_mpi spec/mpi >"$log" 2>&1; then exit 0; fi
echo "== rank $rank failed:"; cat "$log"; exit 1
