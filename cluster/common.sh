# Settings and helpers shared by cluster/up.sh and cluster/down.sh (sourced, not run).
#
# Every setting is an environment variable with a default, so one machine can hold several
# clusters side by side (the test suite starts its own on free ports) and a real deployment
# changes only these values.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
CLUSTER_DIR=${CLUSTER_DIR:-$ROOT/.cluster}
SETTINGS=$CLUSTER_DIR/settings  # what the last cluster-up used: later runs and down reuse it
SAVED=(HOST PORT ARTIFACTS PG_CLUSTER PG_PORT PG_DATABASE PG_USER SLURM_CLUSTER SLURMCTLD_PORT
    SLURMD_PORT)
if [[ -r $SETTINGS ]]; then  # a setting given now wins; the rest come from the last run
    while IFS='=' read -r key value; do
        [[ " ${SAVED[*]} " == *" $key "* && -z ${!key:-} ]] && printf -v "$key" '%s' "$value"
    done <"$SETTINGS"
fi
HOST=${HOST:-127.0.0.1}                   # the MLflow tracking server's address
PORT=${PORT:-5055}                        # and port
ARTIFACTS=${ARTIFACTS:-$ROOT/mlruns/server-artifacts}  # what the server's artifact proxy holds
MLFLOW_BIN=${MLFLOW_BIN:-$ROOT/.venv/bin/mlflow}
PYTHON=${PYTHON:-$(dirname "$MLFLOW_BIN")/python}
SERVER_WORKERS=${SERVER_WORKERS:-2}
PG_CLUSTER=${PG_CLUSTER:-deepfake_detect}  # a PostgreSQL cluster of its own (pg_createcluster)
PG_PORT=${PG_PORT:-5433}
PG_DATABASE=${PG_DATABASE:-mlflow}
PG_USER=${PG_USER:-mlflow}
SLURM_CLUSTER=${SLURM_CLUSTER:-deepfake_detect}
SLURMCTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
AUTH=${AUTH:-}
PACKAGES=(postgresql slurm-wlm munge)

STARTED=$CLUSTER_DIR/started       # one line per service this cluster started (down stops these)
ENV_FILE=$CLUSTER_DIR/env          # for users: `source .cluster/env`
SERVER_ENV=$CLUSTER_DIR/server.env # the server's own secrets (never needed by users)
SLURM_DIR=$CLUSTER_DIR/slurm
export SLURM_CONF=$SLURM_DIR/slurm.conf

say() { echo "cluster: $*"; }
fail() {
    echo "cluster: error: $*" >&2
    exit 2
}

# a column of the project's PostgreSQL cluster in pg_lsclusters: 1 version, 3 port, 4 status
# ("online"/"down"); empty when there is no such cluster
pg_cluster() {
    command -v pg_lsclusters >/dev/null || return 0
    pg_lsclusters --no-header 2>/dev/null | awk -v name="$PG_CLUSTER" -v column="$1" \
        '$2 == name {print $column}'
}
pg_status() { pg_cluster 4; }
pg_version() { pg_cluster 1; }

# the pid in FILE when that process is alive and its command line contains WORD
alive_pid() {
    local file=$1 word=$2 pid
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] || return 1
    local command
    command=$(tr '\0' ' ' <"/proc/$pid/cmdline")
    [[ $command == *"$word"* ]] || return 1
    echo "$pid"
}

mark_started() { grep -qx "$1" "$STARTED" 2>/dev/null || echo "$1" >>"$STARTED"; }
was_started() { grep -qx "$1" "$STARTED" 2>/dev/null; }

# stop the process (group) in a pid file: TERM, then KILL after a grace period
stop_pid() {
    local file=$1 word=$2 name=$3 pid
    if pid=$(alive_pid "$file" "$word"); then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -d /proc/$pid ]] || break
            sleep 0.2
        done
        [[ -d /proc/$pid ]] && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"; }
        say "stopped $name (pid $pid)"
    fi
    rm -f "$file"
}
