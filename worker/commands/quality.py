"""`scorer quality`: every version's figures from the labelled windows that the monitors keep
in Redis, and the canary-versus-primary verdict. Reads only; any number of monitors feed it."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from worker.infra.clients import connect_redis
from worker.lifecycle.join import JoinStore
from worker.lifecycle.report import build_report
from worker.models.registry import Registry
from worker.models.usage import UsageStore
from worker.settings import Settings

_CLASSIFIER_COLUMNS = (
    ("labelled", "labelled", "{:.0f}"),
    ("auc", "AUC", "{:.4f}"),
    ("logloss", "logloss", "{:.4f}"),
    ("brier", "Brier", "{:.4f}"),
    ("calibration", "calib", "{:.3f}"),
    ("accuracy", "acc", "{:.3f}"),
    ("precision", "prec", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
)
_REGRESSOR_COLUMNS = (
    ("labelled", "labelled", "{:.0f}"),
    ("mae", "MAE", "{:.4f}"),
    ("rmse", "RMSE", "{:.4f}"),
)


def show_quality(args: argparse.Namespace, settings: Settings) -> int:
    report = quality_report(settings)
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_quality(report))
    return 0


def quality_report(settings: Settings) -> dict[str, Any]:
    client = connect_redis(settings)
    return build_report(
        JoinStore.for_settings(client, settings),
        UsageStore.for_settings(client, settings),
        Registry.for_settings(client, settings),
        settings,
    ).as_json()


def render_quality(report: dict[str, Any]) -> str:
    joins = report["joins"]
    lines = [
        f"active version  {report['active_version'] or '(none set)'}",
        f"window          newest {report['settings']['quality_window']} labelled predictions "
        f"per version and arm; threshold {report['settings']['decision_threshold']:g}",
        f"joins           {joins.get('joined', 0)} labelled, {joins['pending']} waiting, "
        f"dropped {joins.get('unlabelled', 0)} unlabelled and "
        f"{joins.get('unmatched_labels', 0)} unmatched labels",
    ]
    if not report["versions"]:
        lines.append("\nno labelled predictions yet (is `scorer monitor` running?)")
    for version, entry in report["versions"].items():
        lines += ["", f"{version}  ({entry['role']}, {entry['kind']})"]
        lines += _table(entry)
        lines += [_errors_line(entry["errors"]), _drift_line(entry["drift"])]
    comparison = report["comparison"]
    if comparison is not None:
        lines += ["", _comparison_line(comparison)]
    return "\n".join(lines)


def _table(entry: dict[str, Any]) -> list[str]:
    columns = _REGRESSOR_COLUMNS if entry["kind"] == "regressor" else _CLASSIFIER_COLUMNS
    header = f"  {'arm':<9}" + "".join(f"{title:>10}" for _, title, _ in columns)
    rows = [header]
    for arm, figures in entry["arms"].items():
        cells = "".join(f"{_cell(figures.get(name), fmt):>10}" for name, _, fmt in columns)
        interval = ""
        if figures.get("auc_low") is not None:
            interval = f"  AUC 95 % {figures['auc_low']:.4f}..{figures['auc_high']:.4f}"
        rows.append(f"  {arm:<9}{cells}{interval}")
    return rows


def _errors_line(errors: dict[str, Any]) -> str:
    if errors["error_rate"] is None:
        return "  errors    no rows scored in the drift window"
    return (
        f"  errors    {errors['failed']} of its newest {errors['rows']} rows failed "
        f"({errors['error_rate']:.2%})"
    )


def _drift_line(drift: dict[str, Any]) -> str:
    if not drift["reference"]:
        return f"  drift     {drift['note']}"
    if not drift["rows"]:
        return "  drift     no rows scored in the drift window"
    top = ", ".join(f"{name} {value:.3f}" for name, value in list(drift["features"].items())[:3])
    score = "-" if drift["score_psi"] is None else f"{drift['score_psi']:.3f}"
    return f"  drift     PSI over {drift['rows']} rows: score {score}; top features {top}"


def _cell(value: object, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _comparison_line(c: dict[str, Any]) -> str:
    if c["difference"] is None:
        figures = "AUC difference not measurable yet"
    elif c["low"] is None:  # a side with fewer than two of a class: no variance yet
        figures = f"AUC difference {c['difference']:+.4f} (no interval yet)"
    else:
        figures = f"AUC difference {c['difference']:+.4f} (95 % {c['low']:+.4f}..{c['high']:+.4f})"
    return (
        f"canary {c['canary']} vs primary {c['primary']} since the canary started "
        f"({c['canary_labelled']} vs {c['primary_labelled']} labelled): {figures}: "
        f"{c['verdict'].upper()} [{c['test']}]"
    )
