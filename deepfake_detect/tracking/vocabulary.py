"""The names and limits every writer and reader of runs agrees on: tags, metrics, sizes.

Keras metric names are set explicitly (`name=`) so Keras never suffixes them (`auc_1`).
"""

from __future__ import annotations

# tags: what kind of run, its parent, why it failed
RUN_TYPE_TAG = "run_type"
TRAINING = "training"
SWEEP = "sweep"
EVALUATION = "evaluation"
PARENT_TAG = "mlflow.parentRunId"
ERROR_TAG = "error"  # the message of the exception that failed a run
MODEL_ARTIFACT = "model"  # name of the logged Keras model in every training run
THRESHOLD_METRIC = "val_youden_threshold"  # decision threshold logged with each training run
BEST_EPOCH_METRIC = "best_epoch"  # the epoch whose weights are the run's model
MONITOR_PARAM = "trainer.monitor"  # the metric that picked that epoch
PRUNED_TAG = "pruned"  # "true" on a sweep trial stopped early by pruning
PRUNED_EPOCH_TAG = "pruned_at_epoch"  # the last epoch it trained

# long runs: liveness, checkpoints, resumption (see tracking/run_state.py, tracking/resume.py)
HEARTBEAT_TAG = "heartbeat"  # unix seconds of the last sign of life of a RUNNING run
LAST_EPOCH_TAG = "last_epoch"  # the last finished epoch
CHECKPOINT_EPOCH_TAG = "checkpoint_epoch"  # the epoch of the newest resumable checkpoint
RESUMABLE_TAG = "resumable"  # "true" on a KILLED/FAILED run that can continue from a checkpoint
REAPED_TAG = "reaped"  # "true" on a RUNNING run `runs reap` marked KILLED (no heartbeat)
CONFIG_HASH_TAG = "config_hash"  # what was trained, minus settings that do not change it
SWEEP_HASH_TAG = "sweep_hash"  # a sweep parent's identity: experiment, overrides, search space
RESUME_COUNT_TAG = "resume_count"  # how many times the run was resumed
RESUME_CHANGES_TAG = "resume_changes"  # config keys changed at a resume (resume_allow_changes)
HOST_TAG = "host"  # the machine of the run's latest attempt
PID_TAG = "pid"  # its process id there
SLURM_JOB_TAG = "slurm_job_id"  # the SLURM job of the latest attempt (`scontrol show job ID`)
SLURM_RESTARTS_TAG = "slurm_restart_count"  # how often SLURM requeued that job

# how repeatable a training run is, and with what it ran (reproduce compares these)
DETERMINISTIC_TAG = "deterministic"  # "true" when the same command repeats every number
DETERMINISTIC_REASON_TAG = "deterministic_reason"  # why not, when "false"
VERSION_TAG_PREFIX = "version."  # version.tensorflow, version.keras, ... version.python
VERSIONED_PACKAGES: tuple[str, ...] = ("tensorflow", "keras", "mlflow", "numpy")
REPRODUCES_TAG = "reproduces"  # on a run made by `deepfake-detect reproduce ID`: that ID
OVERRIDES_JSON_TAG = "hydra_overrides_json"  # the command-line overrides, exactly (a list)

# what a training run was trained on (tags) and at which size (param)
MODEL_TAG = "model"
GIT_COMMIT_TAG = "git_commit"
DATASET_TAG = "dataset"
FINGERPRINT_TAG = "dataset_fingerprint"
CLASS_NAMES_TAG = "class_names"  # "negative,positive"
POSITIVE_CLASS_TAG = "positive_class"
IMAGE_SIZE_PARAM = "data.image_size"
# an evaluation run (deepfake-detect evaluate): DATASET_TAG and FINGERPRINT_TAG name the data
# it scored (that one split), these what and whose model it scored
SOURCE_RUN_TAG = "source_run_id"  # the training run of the evaluated model
EVALUATION_SPLIT_TAG = "split"  # the split folder scored (Test, Validation, ...)
TRAIN_DATASET_TAG = "train_dataset"  # the dataset tag of that training run
TRAIN_FINGERPRINT_TAG = "train_dataset_fingerprint"
ROBUSTNESS_TAG = "robustness"  # the perturbations scored, e.g. jpeg:90,70,50;blur:1,2


def evaluation_version_tag(dataset: str, key: str) -> str:
    """The model version tag holding an evaluation's ``key`` on ``dataset``:
    ``evaluation.<dataset>.test_auc``."""
    return f"evaluation.{dataset}.{key}"


# how to read a logged model's score, in its MLmodel metadata
THRESHOLD_KEY = "decision_threshold"
CLASS_NAMES_KEY = "class_names"
POSITIVE_CLASS_KEY = "positive_class"
IMAGE_SIZE_KEY = "image_size"

# MLflow's size limits (params 6000 characters, tags 8000; we keep tags to 5000)
PARAM_VALUE_LIMIT = 6000
TAG_VALUE_LIMIT = 5000

# Per-split metrics in the seed notebook's column order.
SPLIT_METRICS: tuple[str, ...] = (
    "loss",
    "acc",
    "precision",
    "recall",
    "auc",
    "fn",
    "fp",
    "tn",
    "tp",
)
COUNT_METRICS: frozenset[str] = frozenset({"fn", "fp", "tn", "tp"})
SPLITS: tuple[str, ...] = ("train", "val", "test")
# the field's threshold-free metrics beside AUC (DeepfakeBench): equal error rate, average
# precision; exact, from the same scores, for validation (every epoch), test and evaluations
RANKING_METRICS: tuple[str, ...] = ("eer", "ap")


def split_keys(split: str, names: tuple[str, ...] = SPLIT_METRICS) -> list[str]:
    """MLflow metric keys of one split, e.g. ``val_auc``."""
    return [f"{split}_{name}" for name in names]


SEED_EPOCH_KEYS: list[str] = split_keys("train") + split_keys("val")  # the seed's 18 columns
SEED_TEST_KEYS: list[str] = split_keys("test")
# every epoch: the seed's 18, then val_eer and val_ap (Keras computes neither for train)
EPOCH_KEYS: list[str] = SEED_EPOCH_KEYS + split_keys("val", RANKING_METRICS)
# at the best epoch: the seed's nine test metrics, then test_eer and test_ap
TEST_KEYS: list[str] = SEED_TEST_KEYS + split_keys("test", RANKING_METRICS)
LR_KEY = "lr"
IMAGES_PER_SECOND_KEY = "images_per_second"  # training throughput of each epoch (wall clock)


def higher_is_better(metric: str) -> bool:
    """True for metrics to maximise (auc, acc, precision, recall, ap, tp, tn)."""
    base = metric.rsplit("_", 1)[-1]
    return base not in {"loss", "fn", "fp", "eer", "ece"}


# --- imported runs (`deepfake-detect import-csv`, leaderboard/import_table.py) ---------------
# rows of a hand-kept model_eval.csv logged as FINISHED training runs (metrics at step 0, no
# model): promote never picks them
IMPORTED_TAG = "imported"  # "true" on a run made from a table row, not by training
IMPORTED_SHA256_TAG = "imported_sha256"  # the sha256 of the file's bytes (re-import: no-op)
IMPORTED_FILE_TAG = "imported_file"  # the file's absolute path at import
IMPORTED_ROW_TAG = "imported_row"  # the row's position among the data rows (0 = first)
COLUMNS_FIXED_TAG = "columns_fixed"  # which file columns the logged values came from
INCONSISTENT_TAG = "inconsistent"  # "true": rates contradict counts, no permutation fixes them
INCONSISTENT_SPLITS_TAG = "inconsistent_splits"  # which splits, e.g. "train,val"
