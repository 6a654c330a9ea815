#!/usr/bin/env bash
# `make cluster-up`: a team's tracking and compute stack on one machine, from Debian's packages:
#   PostgreSQL (database `mlflow`) -> an MLflow tracking server on it that serves artifacts
#   (127.0.0.1:$PORT) -> a one-node SLURM cluster (munge, slurmctld, slurmd, all cores).
# Idempotent: what already runs is kept, what is missing is started. `AUTH=1` runs the server
# with MLflow's basic-auth app and an admin whose generated password is written only to
# $CLUSTER_DIR/env (mode 0600). cluster/down.sh stops exactly what this script started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $(id -u) == 0 ]] || fail "cluster-up installs Debian packages and starts PostgreSQL and SLURM \
daemons, so it needs root: run \`sudo make cluster-up\` (or as root)"
[[ -x $MLFLOW_BIN ]] || fail "no MLflow at $MLFLOW_BIN: run \`make install\` first"
case $AUTH in "" | 0 | 1) ;; *) fail "AUTH=$AUTH: use AUTH=1 (basic auth) or leave it unset" ;; esac
[[ $AUTH == 0 ]] && AUTH=
umask 022  # secrets are written 0600 one by one (write_secret)
mkdir -p "$CLUSTER_DIR" "$SLURM_DIR"
touch "$STARTED"

install_packages() {
    local missing=()
    command -v pg_ctlcluster >/dev/null && [[ -n $(pg_installed) ]] || missing+=(postgresql)
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        || missing+=(slurm-wlm)
    command -v munged >/dev/null || missing+=(munge)
    ((${#missing[@]})) || return 0
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
        || fail "could not install ${missing[*]} with apt-get; install them and run this again"
}

# FILE from stdin, mode 0600 from the start (owned by the sudo user, who sources it)
write_secret() {
    rm -f "$1.new"
    (umask 077 && cat >"$1.new")
    [[ -n ${SUDO_USER:-} ]] && chown "$SUDO_USER" "$1.new"
    mv "$1.new" "$1"
}

pg_installed() { ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1; }

# fail when something already listens on PORT (another server would answer for ours)
require_free_port() {
    if (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; then
        fail "port $1 ($2) is already in use on $HOST: stop what listens there (\`ss -ltnp\`) \
or choose another with $3=PORT"
    fi
}

random_secret() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

# a value of an earlier run of this script (KEY=value or export KEY=value lines, never run)
earlier() { [[ -r $2 ]] && sed -n "s/^\(export \)\?$1=//p" "$2" | tail -n 1 || true; }

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    [[ -s /etc/munge/munge.key ]] || mungekey --create >/dev/null 2>&1 || create-munge-key -f
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge/munge.key
    chmod 755 /run/munge  # clients (sbatch, slurmd) reach the socket in it
    runuser -u munge -- /usr/sbin/munged
    mark_started munge
    say "started munge"
}

as_postgres() { (cd / && runuser -u postgres -- "$@"); }

start_postgres() {
    if [[ -z $(pg_status) ]]; then
        pg_createcluster -p "$PG_PORT" "$(pg_installed)" "$PG_CLUSTER" >/dev/null
        mark_started pg-cluster-created
        say "created PostgreSQL cluster $(pg_version)/$PG_CLUSTER on port $PG_PORT"
    elif ! was_started pg-cluster-created; then
        fail "a PostgreSQL cluster named $PG_CLUSTER exists but another cluster-up (or someone \
else) created it: choose PG_CLUSTER=NAME PG_PORT=PORT for this one, or drop it if it is \
yours (\`pg_dropcluster --stop $(pg_version) $PG_CLUSTER\`, its data is lost)"
    fi
    if [[ $(pg_status) != online ]]; then
        pg_ctlcluster "$(pg_version)" "$PG_CLUSTER" start
        mark_started postgresql
        say "started PostgreSQL $(pg_version)/$PG_CLUSTER"
    fi
    [[ $(pg_cluster 3) == "$PG_PORT" ]] || fail "PostgreSQL cluster $PG_CLUSTER listens on port \
$(pg_cluster 3), not PG_PORT=$PG_PORT: run with PG_PORT=$(pg_cluster 3)"
    local sql=(psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qtA)
    if [[ -z $(as_postgres "${sql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='$PG_USER'") ]]; then
        as_postgres "${sql[@]}" -c "CREATE ROLE $PG_USER LOGIN"
    fi
    # on stdin, not the command line: no other user sees the password in `ps`
    echo "ALTER ROLE $PG_USER WITH PASSWORD '$PG_PASSWORD'" | as_postgres "${sql[@]}" >/dev/null
    if [[ -z $(as_postgres "${sql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='$PG_DATABASE'") ]]; then
        as_postgres "${sql[@]}" -c "CREATE DATABASE $PG_DATABASE OWNER $PG_USER"
    fi
}

wait_for_server() {
    local url=$1
    for _ in $(seq 120); do
        alive_pid "$CLUSTER_DIR/mlflow.pid" "mlflow server" >/dev/null \
            || fail "the MLflow server exited; its log ($CLUSTER_DIR/mlflow.log) ends with: \
$(tail -n 5 "$CLUSTER_DIR/mlflow.log")"
        if "$PYTHON" - "$url" <<'EOF' 2>/dev/null; then return; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/health", timeout=2).read()
EOF
        sleep 0.5
    done
    stop_pid "$CLUSTER_DIR/mlflow.pid" "mlflow server" "the MLflow server"
    fail "the MLflow server did not answer $url/health in 60 s; its log ($CLUSTER_DIR/mlflow.log) \
ends with: $(tail -n 3 "$CLUSTER_DIR/mlflow.log")"
}

# a new admin password for an existing user store (AUTH=1 after a run without it): MLflow only
# sets it when it creates the admin, so set it here
reset_admin_password() {
    [[ -n $AUTH && -s $CLUSTER_DIR/basic_auth.db && -n $NEW_ADMIN_PASSWORD ]] || return 0
    ADMIN_PASSWORD="$ADMIN_PASSWORD" "$PYTHON" - "sqlite:///$CLUSTER_DIR/basic_auth.db" <<'EOF'
import os, sys
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore
store = SqlAlchemyStore()
store.init_db(sys.argv[1])
if store.has_user("admin"):
    store.update_user("admin", password=os.environ["ADMIN_PASSWORD"])
EOF
}

start_server() {
    local mode="host=$HOST port=$PORT auth=${AUTH:-0} artifacts=$ARTIFACTS db=$DATABASE_URI \
workers=$SERVER_WORKERS"
    if alive_pid "$CLUSTER_DIR/mlflow.pid" "mlflow server" >/dev/null; then
        [[ $(cat "$CLUSTER_DIR/mlflow.mode" 2>/dev/null) == "$mode" && -z $NEW_ADMIN_PASSWORD ]] \
            && return
        stop_pid "$CLUSTER_DIR/mlflow.pid" "mlflow server" "the MLflow server (settings changed)"
    fi
    require_free_port "$PORT" "the MLflow server" PORT
    reset_admin_password
    mkdir -p "$ARTIFACTS"
    # the database URI holds a password: in the environment, not on the command line
    local extra=() env=(MLFLOW_FLASK_SERVER_SECRET_KEY="$FLASK_SECRET"
        MLFLOW_BACKEND_STORE_URI="$DATABASE_URI")
    if [[ -n $AUTH ]]; then
        cat >"$CLUSTER_DIR/basic_auth.ini" <<EOF
[mlflow]
default_permission = READ
database_uri = sqlite:///$CLUSTER_DIR/basic_auth.db
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# each password check is a slow PBKDF2 hash; a checked one is trusted for 60 s per worker
# (a changed password takes effect within a minute)
auth_cache_ttl_seconds = 60
EOF
        extra=(--app-name basic-auth)
        env+=(MLFLOW_AUTH_CONFIG_PATH="$CLUSTER_DIR/basic_auth.ini" MLFLOW_AUTH_ADMIN_USERNAME=admin
            MLFLOW_AUTH_ADMIN_PASSWORD="$ADMIN_PASSWORD")
    fi
    env "${env[@]}" setsid "$MLFLOW_BIN" server "${extra[@]}" \
        --serve-artifacts --artifacts-destination "$ARTIFACTS" \
        --host "$HOST" --port "$PORT" --workers "$SERVER_WORKERS" \
        >>"$CLUSTER_DIR/mlflow.log" 2>&1 </dev/null &
    echo $! >"$CLUSTER_DIR/mlflow.pid"
    echo "$mode" | SUDO_USER= write_secret "$CLUSTER_DIR/mlflow.mode"
    mark_started mlflow
    wait_for_server "http://$HOST:$PORT"
    say "started the MLflow server on http://$HOST:$PORT${AUTH:+ (basic auth)}"
}

write_slurm_conf() {
    local node
    node=$(slurmd -C | head -n 1)  # NodeName=<host> CPUs=.. Boards=.. RealMemory=..
    [[ $node == NodeName=* ]] || fail "\`slurmd -C\` did not describe this machine: $node"
    cat >"$SLURM_CONF.new" <<EOF
# written by cluster/up.sh: a one-node cluster, this machine with all its cores
ClusterName=$SLURM_CLUSTER
SlurmctldHost=$(hostname -s)
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/slurmctld.log
SlurmdLogFile=$SLURM_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# a stopped job gets SIGTERM, then SIGKILL after KillWait seconds: time to save a checkpoint
KillWait=60
MinJobAge=3600
MpiDefault=none
$node
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    if ! cmp -s "$SLURM_CONF.new" "$SLURM_CONF"; then
        mv "$SLURM_CONF.new" "$SLURM_CONF"
        return 0  # changed
    fi
    rm -f "$SLURM_CONF.new"
    return 1
}

start_slurm() {
    mkdir -p "$SLURM_DIR/state" "$SLURM_DIR/spool"
    chmod 700 "$SLURM_DIR/state"  # SLURM keeps each job's environment (credentials too) there
    if write_slurm_conf; then  # new settings: daemons of this cluster restart with them
        stop_pid "$SLURM_DIR/slurmd.pid" slurmd slurmd
        stop_pid "$SLURM_DIR/slurmctld.pid" slurmctld slurmctld
    fi
    if ! alive_pid "$SLURM_DIR/slurmctld.pid" slurmctld >/dev/null; then
        require_free_port "$SLURMCTLD_PORT" slurmctld SLURMCTLD_PORT
        slurmctld -f "$SLURM_CONF"
        mark_started slurmctld
        say "started slurmctld (port $SLURMCTLD_PORT)"
    fi
    if ! alive_pid "$SLURM_DIR/slurmd.pid" slurmd >/dev/null; then
        require_free_port "$SLURMD_PORT" slurmd SLURMD_PORT
        slurmd -f "$SLURM_CONF"
        mark_started slurmd
        say "started slurmd (port $SLURMD_PORT)"
    fi
    local state=""
    for _ in $(seq 60); do
        state=$(sinfo -h -N -o %T 2>/dev/null | head -n 1 || true)
        case $state in idle* | mixed* | allocated* | completing*) return ;; esac
        sleep 0.5
    done
    fail "the SLURM node is '${state:-not registered}' after 30 s: $(sinfo -R -h 2>&1 | head -n 1); \
see $SLURM_DIR/slurmctld.log and slurmd.log"
}

write_env() {
    {
        echo "# written by \`make cluster-up\` (cluster/up.sh); use it with: source $ENV_FILE"
        printf 'export %s=%q\n' MLFLOW_TRACKING_URI "http://$HOST:$PORT"
        printf 'export %s=%q\n' DFD_DATABASE_URI "$DATABASE_URI"
        printf 'export %s=%q\n' SLURM_CONF "$SLURM_CONF"
        if [[ -n $AUTH ]]; then
            printf 'export %s=%q\n' MLFLOW_TRACKING_USERNAME "admin"
            printf 'export %s=%q\n' MLFLOW_TRACKING_PASSWORD "$ADMIN_PASSWORD"
        fi
    } | write_secret "$ENV_FILE"
}

install_packages
PG_PASSWORD=$(earlier PG_PASSWORD "$SERVER_ENV")
FLASK_SECRET=$(earlier FLASK_SECRET "$SERVER_ENV")
: "${PG_PASSWORD:=$(random_secret)}" "${FLASK_SECRET:=$(random_secret)}"
printf 'PG_PASSWORD=%s\nFLASK_SECRET=%s\n' "$PG_PASSWORD" "$FLASK_SECRET" \
    | SUDO_USER= write_secret "$SERVER_ENV"
ADMIN_PASSWORD=$(earlier MLFLOW_TRACKING_PASSWORD "$ENV_FILE")
NEW_ADMIN_PASSWORD=
if [[ -n $AUTH && -z $ADMIN_PASSWORD ]]; then
    ADMIN_PASSWORD=$(random_secret)
    NEW_ADMIN_PASSWORD=1
fi
DATABASE_URI="postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DATABASE"

for key in "${SAVED[@]}"; do printf '%s=%s\n' "$key" "${!key}"; done >"$SETTINGS"
start_munge
start_postgres
start_server
start_slurm
write_env
say "ready: source $ENV_FILE  (MLflow http://$HOST:$PORT, PostgreSQL port $PG_PORT, \
SLURM partition main, $(sinfo -h -o %c | head -n 1) CPUs)"
