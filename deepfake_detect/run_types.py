"""Names shared by writers and readers of runs: the ``run_type`` tag, parent tag, model name."""

RUN_TYPE_TAG = "run_type"
TRAINING = "training"
SWEEP = "sweep"
EVALUATION = "evaluation"
PARENT_TAG = "mlflow.parentRunId"
MODEL_ARTIFACT = "model"  # name of the logged Keras model in every training run
ERROR_TAG = "error"  # the message of the exception that failed a run
