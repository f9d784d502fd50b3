"""A version's registry entry: its metadata, and the one table that says how each field is
stored in the version's Redis hash (`P:version:<V>`).

Every field is a hash field of the same name, written as text or JSON; a field absent from
an entry stored before it existed reads as its default, so old entries keep their meaning:
no `feature_kinds` is numbers only, no `input_form` is an array (and says the entry was
stored before publish scored probe rows the way a worker does: `checked` is false).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, cast

import orjson
from redis.typing import EncodableT, FieldT

from worker.errors import ArtifactRejected, RegistryError
from worker.models.artifacts import sha256_hex, signature_hex
from worker.models.compiled import Compiled, Runtime
from worker.models.features import (
    NUMBER,
    FeatureKind,
    FeatureSchema,
    InputForm,
    check_kind,
    parse_form,
)
from worker.models.scoring import ModelKind


@dataclass(frozen=True)
class OnnxArtifact:
    """What the registry keeps about a version's ONNX bytes besides the bytes."""

    sha256: str
    signature: str
    opset: int
    max_difference: float  # largest |ONNX - scikit-learn| score on the probe rows
    probe_rows: int
    joblib_us: float  # scoring cost per event of each runtime, measured at publish
    onnx_us: float
    versions: dict[str, str]  # skl2onnx, onnxruntime, onnx
    missing_text: str = "nan"  # a string input's value for a missing category (onnx_inputs)

    @classmethod
    def of(cls, compiled: Compiled, signing_key: str, versions: dict[str, str]) -> OnnxArtifact:
        return cls(
            sha256_hex(compiled.data),
            signature_hex(compiled.data, signing_key) if signing_key else "",
            compiled.opset,
            compiled.max_difference,
            compiled.probe_rows,
            compiled.joblib_us,
            compiled.onnx_us,
            versions,
            compiled.missing_text,
        )


@dataclass(frozen=True)
class RegistryEntry:
    version: str
    sha256: str
    signature: str
    features: tuple[str, ...]
    kind: ModelKind
    estimator_class: str
    sklearn_version: str
    joblib_version: str
    created_at: float
    note: str
    format: str = "joblib"  # what was stored: joblib, onnx or both
    runtime: Runtime = "joblib"  # what workers score with
    onnx: OnnxArtifact | None = None
    training: dict[str, Any] | None = None  # how the retrainer fitted it (None: a person did)
    feature_kinds: tuple[FeatureKind, ...] = ()  # in `features` order; () is numbers only
    accepts_missing: bool = False
    input_form: InputForm | None = None  # None: stored before publish probed it
    warm_up_row: tuple[object, ...] | None = None  # the row publish scored, None as missing

    @property
    def schema(self) -> FeatureSchema:
        kinds = self.feature_kinds or (NUMBER,) * len(self.features)
        return FeatureSchema(self.features, kinds, self.accepts_missing, self.input_form or "array")

    @property
    def checked(self) -> bool:
        """Publish scored probe rows through the worker's own path (kinds, missing values,
        form); an entry stored before that check was not."""
        return self.input_form is not None

    @property
    def served_sha256(self) -> str:
        """The digest of the bytes workers load."""
        return self.onnx.sha256 if self.runtime == "onnx" and self.onnx else self.sha256

    def runtime_for(self, allow_pickle: bool) -> Runtime:
        """What a worker scores this version with: the one publish chose, or ONNX where
        pickles are refused; a version without ONNX bytes is then refused."""
        if allow_pickle:
            return self.runtime
        if self.onnx is None:
            raise ArtifactRejected(
                f"version {self.version} is a joblib artifact and allow_pickle is false: "
                f"publish it with --format onnx or both"
            )
        return "onnx"

    def summary(self) -> dict[str, object]:
        """JSON-ready metadata, without the signatures; the kinds by feature name."""
        data = asdict(self)
        data["features"] = list(self.features)
        data["feature_kinds"] = self.schema.kinds_by_name()
        data["input_form"] = self.schema.form
        data["served_sha256"] = self.served_sha256
        del data["signature"]
        if isinstance(data["onnx"], dict):
            del data["onnx"]["signature"]
        return data


Encode = Callable[[Any], EncodableT]
Decode = Callable[[str], Any]


def _json_or_empty(value: object) -> EncodableT:
    return orjson.dumps(value) if value else ""


def _identity(text: str) -> str:
    return text


# field: (to the hash's text, from it); "" in the hash (absent) decodes as the field's default
_CODECS: dict[str, tuple[Encode, Decode]] = {
    "sha256": (str, _identity),
    "signature": (str, _identity),
    "features": (lambda v: orjson.dumps(list(v)), lambda t: tuple(orjson.loads(t))),
    "kind": (str, lambda t: "classifier" if t == "classifier" else "regressor"),
    "estimator_class": (str, _identity),
    "sklearn_version": (str, _identity),
    "joblib_version": (str, _identity),
    "created_at": (repr, float),
    "note": (str, _identity),
    "format": (str, _identity),
    "runtime": (str, lambda t: "onnx" if t == "onnx" else "joblib"),
    "onnx": (
        lambda v: orjson.dumps(asdict(v)) if v else "",
        lambda t: OnnxArtifact(**orjson.loads(t)),
    ),
    "training": (_json_or_empty, orjson.loads),
    # {name: kind} in the hash; the entry holds them in `features` order (see decode_entry)
    "feature_kinds": (lambda v: "", orjson.loads),
    "accepts_missing": (lambda v: "1" if v else "0", lambda t: t == "1"),
    "input_form": (lambda v: v or "", parse_form),
    "warm_up_row": (
        lambda v: orjson.dumps(list(v)) if v is not None else "",
        lambda t: tuple(orjson.loads(t)),
    ),
}
META_FIELDS = list(_CODECS)
_DEFAULTS = {f.name: f.default for f in fields(RegistryEntry) if f.default is not MISSING}
_EMPTY = {"features": "[]", "created_at": "0"}  # corrupt or absent: read as nothing


def encode_entry(entry: RegistryEntry) -> dict[FieldT, EncodableT]:
    """The entry as its hash fields (the artifacts are stored beside them by the registry)."""
    encoded = {name: encode(getattr(entry, name)) for name, (encode, _) in _CODECS.items()}
    if entry.feature_kinds:
        encoded["feature_kinds"] = orjson.dumps(entry.schema.kinds_by_name())
    return cast("dict[FieldT, EncodableT]", encoded)


def decode_entry(version: str, values: list[bytes | str | None]) -> RegistryEntry:
    """The entry from its hash fields, read in `META_FIELDS` order; RegistryError if corrupt."""
    text = {
        name: (value.decode() if isinstance(value, bytes) else str(value or ""))
        for name, value in zip(META_FIELDS, values, strict=True)
    }
    try:
        decoded = {
            name: _DEFAULTS[name]
            if not raw and name in _DEFAULTS
            else decode(raw or _EMPTY.get(name, ""))
            for (name, (_, decode)), raw in zip(_CODECS.items(), text.values(), strict=True)
        }
        if decoded["feature_kinds"]:
            kinds = decoded["feature_kinds"]
            decoded["feature_kinds"] = tuple(check_kind(n, kinds[n]) for n in decoded["features"])
        return RegistryEntry(version=version, **decoded)
    except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
        raise RegistryError(f"registry entry for {version} is corrupt: {exc!r}") from None
