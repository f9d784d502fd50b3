"""Two of skl2onnx's converters (1.20, and its main branch as of 2026-07) mended for the CTR
Pipelines, passed to each conversion (`convert_sklearn`'s custom converters), never
registered globally:

- HistGradientBoosting: the tree attributes hold a Python `False` for each leaf's missing-value
  branch beside integers, which protobuf 7 refuses ("Expected an int, got a boolean"). The
  stock converter runs with every boolean in a list attribute turned into an int.
- OrdinalEncoder: with `encoded_missing_value` left at NaN (the default), scikit-learn codes
  a NaN as NaN, but the stock converter gives the NaN category its position among the
  categories. The stock output is kept, and each column's code of the NaN category turned
  back into NaN.

The fidelity check at publish (compiled.py) still compares every graph with scikit-learn, on
rows with missing values and unseen categories.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def custom_converters() -> dict[str, dict[type, Any]]:
    """`convert_sklearn`'s keyword arguments that put the mended converters in place."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.preprocessing import OrdinalEncoder

    mends = {
        HistGradientBoostingClassifier: ("SklearnHistGradientBoostingClassifier", _ints_only),
        HistGradientBoostingRegressor: ("SklearnHistGradientBoostingRegressor", _ints_only),
        OrdinalEncoder: ("SklearnOrdinalEncoder", _missing_as_nan),
    }
    from skl2onnx.common._registration import get_converter, get_shape_calculator

    return {
        "custom_conversion_functions": {
            model: mend(get_converter(alias)) for model, (alias, mend) in mends.items()
        },
        "custom_shape_calculators": {
            model: get_shape_calculator(alias) for model, (alias, _) in mends.items()
        },
    }


def _ints_only(convert: Any) -> Any:
    def converter(scope: Any, operator: Any, container: Any) -> None:
        convert(scope, operator, _IntAttributes(container))

    return converter


class _IntAttributes:
    """A container whose nodes get integers where a converter passed booleans."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def add_node(self, op_type: str, inputs: Any, outputs: Any, **attributes: Any) -> Any:
        for name, value in attributes.items():
            if isinstance(value, list):
                attributes[name] = [int(v) if isinstance(v, bool) else v for v in value]
        return self._container.add_node(op_type, inputs, outputs, **attributes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)


def _missing_as_nan(convert: Any) -> Any:
    def converter(scope: Any, operator: Any, container: Any) -> None:
        from skl2onnx.proto import onnx_proto

        encoder = operator.raw_operator
        if not _nan_coded(encoder):
            convert(scope, operator, container)
            return
        codes = scope.get_unique_variable_name("ordinal_codes")
        convert(scope, _Output(operator, codes), container)
        missing_at = [_missing_position(values) for values in encoder.categories_]
        at, nan, is_missing = (
            scope.get_unique_variable_name(name) for name in ("missing_code", "nan", "missing")
        )
        float_type = onnx_proto.TensorProto.FLOAT
        container.add_initializer(at, float_type, [1, len(missing_at)], missing_at)
        container.add_initializer(nan, float_type, [], [np.nan])
        container.add_node("Equal", [codes, at], is_missing)
        container.add_node("Where", [is_missing, nan, codes], operator.output_full_names)

    return converter


def _nan_coded(encoder: Any) -> bool:
    """Whether scikit-learn codes this encoder's missing category as NaN and the stock
    converter does not: NaN for missing, no infrequent categories (mapped otherwise)."""
    return (
        bool(np.isnan(encoder.encoded_missing_value))
        and not getattr(encoder, "_infrequent_enabled", False)
        and any(not np.isnan(_missing_position(values)) for values in encoder.categories_)
    )


def _missing_position(values: np.ndarray) -> float:
    """The code the stock converter gives the NaN category (scikit-learn keeps it last), NaN
    where there is none (NaN equals no code). None is a category like any other to
    scikit-learn's OrdinalEncoder, and coded so by both."""
    last = values[-1] if len(values) else None
    return float(len(values) - 1) if isinstance(last, float) and np.isnan(last) else float("nan")


class _Output:
    """An operator whose output is `name` (the stock converter's result, mended after)."""

    def __init__(self, operator: Any, name: str) -> None:
        self._operator = operator
        self.output_full_names = [name]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._operator, name)
