"""What Hydra itself records of a command line, without passwords.

Hydra saves the overrides (``tracking.uri=http://alice:s3cret@host``) in each job's
``.hydra/{overrides,config,hydra}.yaml`` and a sweep's ``multirun.yaml`` before our code runs,
and its launchers log them. The job rewrites those files redacted as it starts, the sweep
again when it ends, and every log record is redacted as it is created.
"""

from __future__ import annotations

import logging
from pathlib import Path

from deepfake_detect.config.output_files import write_atomically
from deepfake_detect.tracking.store import redact


def _redact_file(path: Path) -> None:
    try:
        text = path.read_text()
    except OSError:
        return
    clean = redact(text)
    if clean != text:
        write_atomically(path, lambda tmp: tmp.write_text(clean))


def redact_hydra_outputs() -> None:
    """Rewrite this Hydra job's saved configs (and its sweep's ``multirun.yaml``) redacted."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    if hydra.output_subdir is not None:
        for path in Path(hydra.runtime.output_dir, hydra.output_subdir).glob("*.yaml"):
            _redact_file(path)
    if hydra.mode == RunMode.MULTIRUN:
        redact_multirun_file(Path(hydra.sweep.dir))


def redact_multirun_file(sweep_dir: Path) -> None:
    """Rewrite a sweep's ``multirun.yaml`` redacted."""
    _redact_file(sweep_dir / "multirun.yaml")


def redact_log_records() -> None:
    """Redact every log record created from now on, in this process. Hydra's launchers log
    each job's overrides and reconfigure the logging handlers per job, so it is the record
    factory, not a handler filter, that stays in place."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: logging reports it itself
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
