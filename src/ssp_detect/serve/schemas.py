"""The JSON the service speaks: response models (for the OpenAPI docs) and the error body."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, create_model

from ssp_detect.detector import Detection


def _result_schema() -> type[BaseModel]:
    """The JSON of one uploaded file: :meth:`Detection.to_dict` with ``source`` named ``filename``
    (``error`` set and the rest null when the file could not be read). Built from the record's
    fields, so the service and the API cannot diverge; tuples travel as JSON lists."""
    hints = typing.get_type_hints(Detection)
    fields: dict[str, Any] = {"filename": (str, ...)}
    for f in dataclasses.fields(Detection):
        if f.name == "source":
            continue
        kind = hints[f.name]
        if typing.get_origin(kind) is tuple:
            kind = list[typing.get_args(kind)[0]]
        elif kind in (tuple[int, int, int, int] | None, tuple[int, int] | None):
            kind = list[int] | None
        fields[f.name] = (kind, ...)
    return create_model("FileResult", __doc__="The verdict on one uploaded file.", **fields)


FileResult = _result_schema()


class Timings(BaseModel):
    """Wall-clock time of a request's stages, in milliseconds."""

    decode_and_patch: float
    queue_and_model: float
    total: float


class DetectResponse(BaseModel):
    """Response of ``POST /v1/detect``: results in upload order, the model that made them, timings."""

    results: list[FileResult]
    model: dict[str, Any]
    timings_ms: Timings


class ErrorBody(BaseModel):
    """Body of every error response."""

    error: str


def error_response(
    status_code: int, sentence: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The JSON body of an error: ``{"error": sentence, **extra}``, with any ``headers``."""
    return JSONResponse({"error": sentence, **extra}, status_code=status_code, headers=headers)
