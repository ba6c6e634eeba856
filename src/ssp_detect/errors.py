"""Errors a user can cause: one base class, so that a mistake and a bug never look alike.

Every error whose message is meant for the person running ssp-detect (a missing file, a bad option
value, an unusable checkpoint or data folder) derives from :class:`SSPError`, and its ``str()`` is
one sentence that names the file or value and says what to do. The command line prints an
``SSPError`` as ``ssp <command>: error: <sentence>`` and exits with status 2; any other exception
is a bug and keeps its traceback.

The hierarchy (each class lives beside the code that raises it)::

    SSPError(Exception)
        UsageError(SSPError, ValueError)            errors.py: an option or argument value
        ConfigError(SSPError, ValueError)           config.py: a preset or config key
        DatasetError(SSPError, ValueError)          data/layouts.py: a data location or manifest
        ImageDecodeError(SSPError, ValueError)      data/decode.py: an unreadable image
        CheckpointError(SSPError, ValueError)       models/checkpoint.py: an unusable weights file
        UnknownModelError(SSPError, KeyError)       models/registry.py: a model name not registered
        DeviceError(SSPError, ValueError)           engine/runtime.py: a device not available here
        TrainError(SSPError, ValueError)            engine/train.py: a training set-up that cannot run
        DemoBuildError(SSPError, ValueError)        demo/errors.py: the demo benchmark cannot be built
        ScoreError(SSPError, ValueError)            verdict.py: a non-finite score, a threshold outside [0, 1]
        OutputError(SSPError, OSError)              outputs.py: a result that cannot be written
        ExportError(SSPError, ValueError)           models/export.py: a model that does not export to ONNX

The second base (``ValueError``, ``KeyError`` for an unknown model, ``OSError`` for a failed write)
is what each class was before it had this one; it stays so that callers of the library who catch
``ValueError`` (or ``KeyError`` from :func:`~ssp_detect.models.registry.get_spec`, ``OSError`` from a
write) keep working. New code should catch ``SSPError``.
"""

from __future__ import annotations


class SSPError(Exception):
    """An error the user can fix; ``str()`` is the one-sentence message, whatever the second base."""

    def __str__(self) -> str:
        # KeyError would show its message in quotes; every SSPError shows the sentence itself.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class UsageError(SSPError, ValueError):
    """An option or argument value that cannot be used (out of range, unknown name, wrong count)."""
