"""Settings: config file <- environment <- flags, each value typed; errors are one line."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.settings import Settings, load_settings, parse_overrides

REPO = Path(__file__).resolve().parents[2]


def test_config_file_lists_every_setting_with_the_code_default() -> None:
    documented = tomllib.loads((REPO / "config/worker.toml").read_text())
    defaults = dataclasses.asdict(Settings())
    assert documented == defaults


def test_environment_overrides_file_and_flags_override_environment(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text('input_topic = "from-file"\nbatch_max_records = 10\nactive_poll_s = 3\n')
    env = {"SCORER_INPUT_TOPIC": "from-env", "SCORER_LINGER_MS": "7"}
    settings = load_settings(env, config, parse_overrides(["linger_ms=9"]))
    assert settings.input_topic == "from-env"
    assert settings.batch_max_records == 10
    assert settings.active_poll_s == 3.0
    assert settings.linger_ms == 9


@pytest.mark.parametrize(("raw", "value"), [("false", False), ("No", False), ("1", True)])
def test_a_switch_reads_the_usual_words(raw: str, value: bool) -> None:
    assert load_settings({"SCORER_ALLOW_PICKLE": raw}, None).allow_pickle is value


def test_defaults_apply_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({}) == Settings()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SCORER_INPUT_TOPICS": "x"}, "unknown setting in environment: SCORER_INPUT_TOPICS"),
        ({"SCORER_BATCH_MAX_RECORDS": "many"}, "batch_max_records must be an integer"),
        ({"SCORER_BATCH_MAX_RECORDS": "1.5"}, "batch_max_records must be an integer"),
        ({"SCORER_ACTIVE_POLL_S": "soon"}, "active_poll_s must be a number"),
        ({"SCORER_ALLOW_PICKLE": "maybe"}, "allow_pickle must be true or false"),
        ({"SCORER_ACTIVE_POLL_S": "0"}, "active_poll_s must be positive"),
        ({"SCORER_LOG_FORMAT": "xml"}, "log_format must be one of auto|json|console"),
        ({"SCORER_OUTPUT_TOPIC": "my topic"}, "output_topic is not a legal Kafka topic name"),
        ({"SCORER_METRICS_PORT": "70000"}, "metrics_port must be a TCP port"),
        ({"SCORER_HEARTBEAT_INTERVAL_MS": "60000"}, "heartbeat_interval_ms must be below"),
        ({"SCORER_SIGNING_KEY_FILE": "/nonexistent/key"}, "SCORER_SIGNING_KEY_FILE: cannot read"),
        ({"SCORER_SESSION_TIMEOUT_MS": "400000"}, "max_poll_interval_ms must be at least"),
        ({"SCORER_GROUP_INSTANCE_ID": "pod/0"}, "group_instance_id is not a legal static"),
        ({"SCORER_PARTITION_ASSIGNMENT": "range"}, "must be one of eager|cooperative-sticky"),
        ({"SCORER_GROUP_PROTOCOL": "consumer"}, "group_protocol=consumer needs kafka_client="),
        ({"SCORER_LABELS_TOPIC": "clicks?"}, "labels_topic is not a legal Kafka topic name"),
        ({"SCORER_LABEL_WINDOW_S": "0"}, "label_window_s must be positive"),
        ({"SCORER_QUALITY_WINDOW": "1.5"}, "quality_window must be an integer"),
        ({"SCORER_DECISION_THRESHOLD": "1"}, r"decision_threshold must be within \(0, 1\)"),
        ({"SCORER_GUARD_MIN_AUC": "-0.1"}, r"guard_min_auc must be 0 \(off\) or more"),
        ({"SCORER_GUARD_ROLLBACK_WINDOW_S": "-1"}, "guard_rollback_window_s must be 0"),
        ({"SCORER_GUARD_PROMOTE_MIN_LABELS": "-5"}, "guard_promote_min_labels must be 0"),
        ({"SCORER_RETRAIN_HOLDOUT_SHARE": "1"}, r"retrain_holdout_share must be within \(0, 1\)"),
        ({"SCORER_RETRAIN_CANARY_PERCENT": "60"}, r"canary_percent must be within \(0, 50\]"),
        ({"SCORER_RETRAIN_SAMPLE_PERCENT": "0"}, r"sample_percent must be within \(0, 100\]"),
        ({"SCORER_RETRAIN_MIN_ROWS": "30000"}, "retrain_min_rows .* must not exceed"),
        ({"SCORER_RETRAIN_METHOD": "warm"}, "must be one of refit|partial_fit"),
        ({"SCORER_RETRAIN_INTERVAL_S": "0"}, "retrain_interval_s must be positive"),
        (
            {
                "SCORER_GROUP_PROTOCOL": "consumer",
                "SCORER_KAFKA_CLIENT": "confluent",
                "SCORER_PARTITION_ASSIGNMENT": "cooperative-sticky",
            },
            "partition_assignment does not apply with group_protocol=consumer",
        ),
    ],
)
def test_bad_settings_are_one_line_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(env, None)
    assert "\n" not in str(caught.value)


def test_unknown_key_in_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text("batch_size = 5\n")
    with pytest.raises(ConfigError, match="unknown setting 'batch_size'"):
        load_settings({}, config)


def test_wrong_type_in_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text('batch_max_records = "ten"\n')
    with pytest.raises(ConfigError, match="must be an integer"):
        load_settings({}, config)


def test_missing_or_broken_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({}, tmp_path / "none.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("input_topic = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, broken)


def test_signing_key_from_file_is_read_and_never_shown(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    settings = load_settings({"SCORER_SIGNING_KEY_FILE": str(key_file)}, None)
    assert settings.signing_key == "s3cret"
    assert "s3cret" not in repr(settings.redacted())
    assert "s3cret" not in repr(settings)


def test_override_without_equals_sign_is_refused() -> None:
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_overrides(["linger_ms"])


def test_exactly_once_needs_transactions_that_outlast_their_delivery() -> None:
    with pytest.raises(ConfigError, match="transaction_timeout_ms must be at least"):
        Settings(
            processing_guarantee="exactly-once", delivery_timeout_s=30, transaction_timeout_ms=10000
        )
    assert Settings(processing_guarantee="exactly-once").transaction_timeout_ms == 60000
    with pytest.raises(ConfigError, match=re.escape("one of at-least-once|exactly-once")):
        load_settings({"SCORER_PROCESSING_GUARANTEE": "at-most-once"})
