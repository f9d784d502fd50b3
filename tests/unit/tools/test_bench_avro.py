"""The Avro bench's arithmetic and table: each worker against the JSON worker and against
its own topic's ceiling, ratios per round."""

from worker.tools.bench import RunResult
from worker.tools.bench_avro import (
    AVRO_CEILING,
    AVRO_WORKER,
    JSON_CEILING,
    JSON_WORKER,
    render,
    summarise,
)


def runs(*rates: float) -> list[RunResult]:
    return [RunResult("x", rate, 150.0) for rate in rates]


def test_each_worker_is_set_against_the_json_worker_and_its_own_ceiling() -> None:
    rows = summarise(
        {
            JSON_CEILING: runs(40_000, 20_000),
            AVRO_CEILING: runs(50_000, 25_000),
            JSON_WORKER: runs(30_000, 16_000),  # 0.75, 0.8 of its ceiling
            AVRO_WORKER: runs(15_000, 10_000),  # 0.5, 0.625 of the JSON worker; 0.3, 0.4
        }
    )

    assert rows[AVRO_WORKER]["ratio_to_json_worker"] == 0.562
    assert rows[AVRO_WORKER]["ratio_to_own_ceiling"] == 0.35
    assert rows[JSON_WORKER]["ratio_to_own_ceiling"] == 0.775
    assert rows[AVRO_CEILING]["ratio_to_own_ceiling"] == 1.0
    table = render({"rows": rows, "per_event_us": {"decode, Avro": 13.4}})
    assert "worker, logistic, Avro" in table and "0.56" in table and "0.35" in table
    assert "13.40" in table


def test_the_decode_costs_are_measured_for_both_formats() -> None:
    from tests.unit.tools.test_avro_events import Registered
    from worker.infra.schema_registry import RegisteredSchema
    from worker.tools.bench_avro import decode_costs

    class Serving(Registered):
        def schema(self, schema_id: int) -> RegisteredSchema:
            return RegisteredSchema(schema_id, "AVRO", self.held["bench-decode-value"])

    costs = decode_costs(Serving())

    assert set(costs) == {"decode, JSON", "decode, Avro"} and all(us > 0 for us in costs.values())
