"""Pick the precision policy, XLA and distribution strategy for the machine we run on.

The selection functions are pure (they take the facts as arguments) so they are testable on
any machine; ``detect_*`` helpers read the facts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deepfake_detect.config.validation import PRECISIONS, STRATEGIES

BF16_CPU_FLAGS: frozenset[str] = frozenset({"avx512_bf16", "amx_bf16"})


@dataclass(frozen=True)
class Accelerators:
    """What the process can use: CPU feature flags and GPU compute capabilities."""

    cpu_flags: frozenset[str]
    gpu_compute_capabilities: tuple[tuple[int, int], ...]


def read_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo is absent)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def detect_accelerators() -> Accelerators:
    """Read CPU flags and ask TensorFlow for GPUs (imports TensorFlow)."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return Accelerators(read_cpu_flags(), tuple(capabilities))


def select_precision(requested: str, accelerators: Accelerators) -> str:
    """Resolve ``trainer.precision``: ``auto`` picks the fastest safe mixed policy."""
    if requested not in PRECISIONS:
        raise ValueError(f"trainer.precision={requested!r}; choose one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if accelerators.gpu_compute_capabilities:
        tensor_cores = all(cap >= (7, 0) for cap in accelerators.gpu_compute_capabilities)
        return "mixed_float16" if tensor_cores else "float32"
    if accelerators.cpu_flags & BF16_CPU_FLAGS:
        return "mixed_bfloat16"
    return "float32"


def select_jit_compile(requested: bool | str, accelerators: Accelerators) -> bool:
    """``auto``: XLA on GPUs only (on this CPU it was ~10x slower in a probe)."""
    if isinstance(requested, bool):
        return requested
    if requested != "auto":
        raise ValueError(f"trainer.jit_compile={requested!r}; use true, false or auto")
    return bool(accelerators.gpu_compute_capabilities)


@dataclass(frozen=True)
class Determinism:
    """Whether this run's numbers repeat, and why not when they may not."""

    deterministic: bool
    reason: str  # "" when deterministic


def describe_determinism(requested: bool, accelerators: Accelerators, jit: bool) -> Determinism:
    """What ``trainer.deterministic`` gives on this machine. On the CPU, op determinism plus
    the seeded data order and dropout repeat every number; on a GPU TensorFlow raises on an op
    that has no deterministic kernel, so a finished run repeats there too, but XLA's
    autotuning and other GPUs/cuDNN versions may still differ, which the tag says."""
    if not requested:
        return Determinism(False, "trainer.deterministic=false (TensorFlow may reorder sums)")
    if accelerators.gpu_compute_capabilities and jit:
        return Determinism(
            False, "XLA on GPU autotunes kernels per run; set trainer.jit_compile=false"
        )
    return Determinism(True, "")


def apply_determinism(enabled: bool) -> None:
    """Turn TensorFlow's op determinism on or off for this process (a reused joblib worker
    may train a config that asks for the other setting)."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


# TensorFlow's own variable for the size of its intra-op thread pool (read once, when its
# runtime starts). The pool's size changes the numbers: an op splits its sums into one block
# per thread (measured: float32 losses differ in the 7th digit between 1 and 2 threads, and
# a 12-epoch 128 px demo ends elsewhere), so `reproduce` runs with the original's count.
INTRA_OP_THREADS_ENV = "TF_NUM_INTRAOP_THREADS"


def intra_op_threads() -> int:
    """The threads TensorFlow splits one op over: ``tf.config.threading``'s setting, else
    ``$TF_NUM_INTRAOP_THREADS``, else the CPUs this process may run on (TensorFlow's own
    order; imports TensorFlow)."""
    import tensorflow as tf

    configured = tf.config.threading.get_intra_op_parallelism_threads()
    if configured > 0:
        return int(configured)
    try:
        from_env = int(os.environ.get(INTRA_OP_THREADS_ENV, "0"))
    except ValueError:
        from_env = 0
    if from_env > 0:
        return from_env
    return usable_cpus()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; all CPUs where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_strategy(name: str):  # -> tf.distribute.Strategy
    """``default`` (one device), ``mirrored`` (all local GPUs), ``multi_worker`` (TF_CONFIG)."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "trainer.strategy=multi_worker needs the TF_CONFIG environment variable "
                "(cluster spec and this worker's task); see the README"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"trainer.strategy={name!r}; choose one of {', '.join(STRATEGIES)}")


def global_batch_size(per_replica: int, replicas: int, scale_with_replicas: bool) -> int:
    """The batch fed to ``fit``: per-replica batch times replicas when scaling is on."""
    return per_replica * replicas if scale_with_replicas else per_replica
