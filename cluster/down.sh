#!/usr/bin/env bash
# `make cluster-down`: stop exactly what cluster/up.sh started (listed in $CLUSTER_DIR/started),
# newest first; services that were already running before it are left alone. Data stays:
# the PostgreSQL cluster, the artifacts and $CLUSTER_DIR/env. PURGE=1 also drops the PostgreSQL
# cluster this script created and removes $CLUSTER_DIR (all runs in it are lost).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ -f $STARTED ]] || {
    say "nothing to stop ($STARTED does not exist)"
    exit 0
}
[[ $(id -u) == 0 ]] || fail "cluster-down stops daemons that root started: run it as root"

if was_started slurmctld && alive_pid "$SLURM_DIR/slurmctld.pid" slurmctld >/dev/null; then
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u || true)
    if [[ -n $jobs ]]; then  # their processes would outlive slurmd
        # shellcheck disable=SC2086
        scancel $jobs || true
        for _ in $(seq 60); do
            [[ -z $(squeue -h -o %A 2>/dev/null || true) ]] && break
            sleep 0.5
        done
        say "cancelled SLURM jobs" $jobs
    fi
fi
if was_started slurmd; then stop_pid "$SLURM_DIR/slurmd.pid" slurmd slurmd; fi
if was_started slurmctld; then stop_pid "$SLURM_DIR/slurmctld.pid" slurmctld slurmctld; fi
if was_started mlflow; then stop_pid "$CLUSTER_DIR/mlflow.pid" "mlflow server" "the MLflow server"; fi
if was_started postgresql && [[ $(pg_status) == online ]]; then
    pg_ctlcluster "$(pg_version)" "$PG_CLUSTER" stop
    say "stopped PostgreSQL $(pg_version)/$PG_CLUSTER"
fi
if was_started munge; then
    stop_pid /run/munge/munged.pid munged munge
fi
if [[ ${PURGE:-} == 1 ]]; then
    if was_started pg-cluster-created && [[ -n $(pg_status) ]]; then
        pg_dropcluster "$(pg_version)" "$PG_CLUSTER"
        say "dropped PostgreSQL cluster $PG_CLUSTER"
    fi
    rm -rf "$CLUSTER_DIR"
    say "removed $CLUSTER_DIR"
else
    grep -x pg-cluster-created "$STARTED" >"$STARTED.kept" || true
    mv "$STARTED.kept" "$STARTED"  # an up.sh after this still knows it created the cluster
fi
