"""`scorer`: the composition root. Parses flags, builds settings, runs one command and maps
its errors to exit codes. Operator commands live in worker/commands/, tooling in worker/tools/
(imported only by the commands that need it, so `scorer run` never loads it)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

import orjson
import structlog

from worker.commands.model import (
    cmd_model_activate,
    cmd_model_candidates,
    cmd_model_list,
    cmd_model_publish,
    cmd_model_rollback,
)
from worker.commands.route import (
    cmd_model_abort,
    cmd_model_canary,
    cmd_model_promote,
    cmd_model_route,
    cmd_model_shadow,
)
from worker.commands.status import cmd_status
from worker.errors import ConfigError, ScorerError
from worker.infra.clients import build_producer
from worker.ops.logs import bind_process_fields, configure_logging
from worker.settings import Settings, load_settings, parse_overrides

log = structlog.get_logger(__name__)

DEFAULT_STATE_DIR = Path(".scorer/stack")

Command = Callable[[argparse.Namespace, Settings], int]

_DESCRIPTION = (
    "Score ad-click feature events from Kafka with the model version that Redis names as "
    "active, and operate the model registry and the fleet."
)


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal; the examples (an epilog) kept line by line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(os.environ, args.config, parse_overrides(args.set))
        if getattr(args, "interactive", False):  # an operator waits: give up within seconds
            settings = settings.replace(startup_timeout_s=settings.command_timeout_s)
        configure_logging(settings.log_format, settings.log_level)
        command: Command = args.command
        return command(args, settings)
    except ScorerError as exc:
        print(f"scorer: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        help="TOML settings file (default: $SCORER_CONFIG, else config/worker.toml if present)",
    )
    common.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one setting (repeatable)",
    )
    parser = argparse.ArgumentParser(prog="scorer", description=_DESCRIPTION)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        parents=[common],
        help="run a worker process (or several under one supervisor)",
        description="Join the consumer group on the input topic and score every event with the "
        "active version (and the route's canary and shadows), writing one prediction per event "
        "to the output topic. SIGTERM or Ctrl-C finishes the batch in hand, commits and leaves "
        "the group; a second signal exits at once.",
        epilog="examples:\n"
        "  SCORER_KAFKA_BOOTSTRAP=kafka:9092 SCORER_REDIS_URL=redis://redis:6379/0 scorer run\n"
        "  scorer run --processes auto --set metrics_port=9500   # one worker per core",
        formatter_class=HelpFormatter,
    )
    run.add_argument(
        "--processes",
        default="1",
        help="worker processes in this group under "
        "one supervisor: a number, or 'auto' for one per core (default 1)",
    )
    run.set_defaults(command=cmd_run)
    status = commands.add_parser(
        "status",
        parents=[common],
        help="active version, live workers, lag, dead letters",
        description="The active version and route, every live worker (from its heartbeat in "
        "Redis) with the version and route it applies, whether the fleet has converged, the "
        "group's lag per partition and the dead-letter count.",
        epilog="example: scorer status --json | jq '.workers[] | {worker_id, model_version}'",
        formatter_class=HelpFormatter,
    )
    status.add_argument("--json", action="store_true", help="one JSON object, for tools")
    status.set_defaults(command=cmd_status, interactive=True)
    monitor = commands.add_parser(
        "monitor",
        parents=[common],
        help="join click labels to predictions, measure each version, enforce the guardrails",
        description="Run a monitor process: it reads the output, shadow and labels topics in "
        "its own consumer group (monitor_group_id), joins each label to the predictions of its "
        "event_id within label_window_s, keeps each version's quality window in Redis, exports "
        "the figures on /metrics, and aborts a failing canary or rolls back a failing new "
        "version when the guard_* settings say so. Run one or several: they share the work.",
        epilog="example: SCORER_GUARD_MIN_AUC=0.6 scorer monitor --set metrics_port=9465",
        formatter_class=HelpFormatter,
    )
    monitor.set_defaults(command=cmd_monitor)
    retrain = commands.add_parser(
        "retrain",
        parents=[common],
        help="retrain from the labelled stream; publish a better version as a canary",
        description="Run a retrainer process: it reads the input and labels topics in its own "
        "consumer group (retrain_group_id), joins each label to its feature event within "
        "label_window_s, keeps the newest retrain_window_rows labelled rows in Redis, and "
        "every retrain_interval_s (or after retrain_min_new_labels new rows, or when the "
        "primary breaches a guard) fits a candidate from the active version, judges it on the "
        "newest rows against the primary, and publishes a better one as a canary at "
        "retrain_canary_percent. The monitor's guardrails then promote it "
        "(guard_promote_min_labels) or abort it. Run one or several: each round is taken once.",
        epilog="example: SCORER_RETRAIN_INTERVAL_S=300 scorer retrain --set metrics_port=9466",
        formatter_class=HelpFormatter,
    )
    retrain.set_defaults(command=cmd_retrain)
    quality = commands.add_parser(
        "quality",
        parents=[common],
        help="each version's AUC, log loss, calibration... and the canary's verdict",
        description="Every version's figures over its quality window (labelled predictions "
        "the monitors joined), per arm, and, while a canary runs, its AUC against the "
        "primary's over the same span with a verdict: better, worse or inconclusive.",
        epilog="example: scorer quality --json | jq '.versions.v2.auc, .comparison.verdict'",
        formatter_class=HelpFormatter,
    )
    quality.add_argument("--json", action="store_true", help="one JSON object, for tools")
    quality.set_defaults(command=cmd_quality, interactive=True)
    _add_model_commands(commands, common)
    _add_stack_commands(commands, common)

    _add_demo_command(commands, common)

    bench = commands.add_parser(
        "bench",
        parents=[common],
        help="the benchmark",
        description="Measure the worker side by side with the raw broker passthrough (its "
        "ceiling) on the embedded stack or, with --external, on the Kafka and Redis the "
        "settings name; results go to --out as JSON and a chart.",
        epilog="examples:\n"
        "  scorer bench --rounds 5\n"
        "  scorer bench --mode latency --rate 1000 --duration 20\n"
        "  scorer bench --mode experiments --client confluent   # canary, shadow, drift cost\n"
        "  scorer bench --mode monitor   # scorer monitor beside the worker, join memory\n"
        "  scorer bench --mode compiled  # joblib against ONNX, per model kind\n"
        "  scorer bench --mode retrain   # scorer retrain beside the worker, fitting\n"
        "  scorer bench --mode avro      # schema-registry records against JSON",
        formatter_class=HelpFormatter,
    )
    bench.add_argument(
        "--mode",
        choices=[
            "throughput",
            "latency",
            "swap",
            "backlog",
            "rebalance",
            "experiments",
            "monitor",
            "compiled",
            "retrain",
            "ctr",
            "avro",
        ],
        default="throughput",
        metavar="MODE",
        help="throughput (default), latency, swap, backlog, rebalance, experiments, monitor, "
        "compiled, retrain, ctr or avro",
    )
    bench.add_argument(
        "--events", type=int, help="events pre-filled (default 50000; backlog: 1000000)"
    )
    bench.add_argument("--partitions", type=int, default=4)
    bench.add_argument("--rounds", type=int, default=3)
    bench.add_argument("--batch-size", type=int, default=1000, help="batch_max_records")
    bench.add_argument("--processes", type=int, default=1, help="worker processes per run")
    bench.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offered load for latency and "
        "swap (default: half the last measured worker throughput)",
    )
    bench.add_argument("--duration", type=float, default=20.0, help="seconds of offered load")
    bench.add_argument("--out", type=Path, default=Path("bench-results"))
    bench.add_argument(
        "--client",
        choices=["kafka-python", "confluent"],
        default="kafka-python",
        help="Kafka client of the worker and ceiling",
    )
    _add_broker_flag(bench)
    bench.add_argument(
        "--external",
        action="store_true",
        help="use SCORER_KAFKA_BOOTSTRAP and "
        "SCORER_REDIS_URL instead of starting the embedded stack",
    )
    bench.set_defaults(command=cmd_bench)

    loadgen = commands.add_parser(
        "loadgen",
        parents=[common],
        help="synthetic feature events",
        description="Send synthetic ad-click feature events (keyed by event_id) to the input "
        "topic, optionally with a share of malformed ones to see the dead-letter topic at work.",
        epilog="example: scorer loadgen --count 10000 --rate 500 --bad-fraction 0.01",
        formatter_class=HelpFormatter,
    )
    loadgen.add_argument("--count", type=int, required=True)
    loadgen.add_argument("--rate", type=float, default=0.0, help="events/s (0: unthrottled)")
    loadgen.add_argument("--bad-fraction", type=float, default=0.0)
    loadgen.add_argument("--id-prefix", default="e")
    loadgen.add_argument("--seed", type=int, default=0)
    loadgen.add_argument(
        "--profile",
        choices=["ads", "ctr"],
        default="ads",
        help="ads: 20 numeric features f0..f19; ctr: Criteo's shape, 13 counts I1..I13 and 26 "
        "hashed categories C1..C26, with missing values (null) and Zipf-like frequencies",
    )
    loadgen.add_argument(
        "--format",
        choices=["json", "avro"],
        default="json",
        help="avro: records in the Confluent wire format, under a schema registered as "
        "<input_topic>-value at schema_registry_url",
    )
    loadgen.set_defaults(command=cmd_loadgen)
    return parser


def _add_demo_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="the whole story on the embedded stack",
        description="Start a local broker and Redis, publish three versions, run two workers "
        "with a canary and a shadow, stream synthetic events, promote the canary mid-stream and "
        "report that every event was scored once, by which version.",
        epilog="examples:\n"
        "  scorer demo --events 20000 --rate 2000\n"
        "  scorer demo --quality --rate 500 --label-delay 2\n"
        "  scorer demo --scenario drift   # retraining closes the loop on its own\n"
        "  scorer demo --scenario ctr     # categorical Pipelines, missing values",
        formatter_class=HelpFormatter,
    )
    demo.add_argument("--events", type=int, default=20000)
    demo.add_argument(
        "--rate", type=float, help="events per second (default 2000; quality, drift: 500)"
    )
    demo.add_argument(
        "--quality",
        action="store_true",
        help="the model lifecycle instead: clicks arrive later, the monitor judges, a better "
        "canary is promoted on its verdict and a broken one aborted on its own",
    )
    demo.add_argument(
        "--scenario",
        choices=["story", "ctr", "quality", "drift"],
        default="story",
        help="story (default): the end-to-end story; ctr: the same story with CTR Pipelines "
        "(13 counts, 26 hashed categories, missing values); quality: as --quality; drift: the true "
        "click probability changes mid-run, the retrainer publishes a candidate fitted on "
        "post-change rows, the monitor promotes it on its verdict (a report and a PNG chart)",
    )
    demo.add_argument(
        "--label-delay",
        type=float,
        default=2.0,
        help="--quality, drift: seconds until a click arrives",
    )
    demo.add_argument(
        "--change-after",
        type=float,
        default=60.0,
        help="drift: seconds of stream before the truth changes",
    )
    demo.add_argument("--out", type=Path, help="drift: where the chart goes (default: its logs')")
    _add_broker_flag(demo)
    demo.set_defaults(command=cmd_demo)


def _add_model_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    registry = commands.add_parser(
        "model",
        help="the model registry",
        description="Publish model versions into the registry in Redis, switch the active "
        "one, try one on a share of the traffic (canary) or on all of it unseen (shadow). "
        "Every change is announced to the workers on the control topic.",
        epilog="examples:\n"
        "  scorer model publish model.joblib --version v3 --note 'retrained 2026-11-20'\n"
        "  scorer model canary v3 --percent 10 --reason 'new click features'\n"
        "  scorer model promote        # or: scorer model abort --reason worse\n"
        "  scorer model rollback",
        formatter_class=HelpFormatter,
    )
    registry.set_defaults(interactive=True)  # command_timeout_s, not startup_timeout_s
    model = registry.add_subparsers(required=True, metavar="ACTION")
    change = argparse.ArgumentParser(add_help=False, parents=[common])
    change.add_argument("--by", help="who makes the change, for the record (default: user@host)")
    change.add_argument("--reason", default="", help="why, for the record")
    publish = model.add_parser(
        "publish", parents=[change], help="store a joblib artifact, its ONNX conversion or both"
    )
    publish.add_argument("file", type=Path)
    publish.add_argument("--version", required=True)
    publish.add_argument(
        "--features",
        help="comma-separated feature order, if the estimator has no feature_names_in_",
    )
    publish.add_argument(
        "--feature-types",
        metavar="SPEC",
        help="each feature's kind, number or category: 'I1:number,C1:category' or @FILE (a "
        "JSON object of the same); by default what the fitted Pipeline reveals, else number",
    )
    publish.add_argument(
        "--missing",
        choices=["accept", "reject"],
        help="whether workers give missing (null or absent) features to the model or "
        "dead-letter the event; by default found by scoring probe rows with missing values "
        "(with --format onnx or both: refused where the ONNX graph scores them otherwise)",
    )
    publish.add_argument("--note", default="")
    publish.add_argument(
        "--reference",
        type=Path,
        help="CSV (header row) or Parquet file of training rows: stored as the reference "
        "profile that drift (PSI) is measured against",
    )
    publish.add_argument(
        "--format",
        choices=["joblib", "onnx", "both"],
        default="joblib",
        help="what to store: the joblib file as given; its ONNX conversion only (workers never "
        "unpickle it); or both, workers using whichever scored the probe rows faster "
        "(needs the onnx extra for onnx and both)",
    )
    publish.add_argument(
        "--tolerance",
        type=float,
        default=1e-5,
        help="largest score difference allowed between ONNX and scikit-learn on the probe rows",
    )
    publish.add_argument("--activate", action="store_true")
    publish.set_defaults(command=cmd_model_publish)
    activate = model.add_parser("activate", parents=[change], help="make a version active")
    activate.add_argument("version")
    activate.set_defaults(command=cmd_model_activate)
    model.add_parser(
        "rollback", parents=[change], help="activate the previous version"
    ).set_defaults(command=cmd_model_rollback)
    canary = model.add_parser(
        "canary", parents=[change], help="score a share of the keys with another version"
    )
    canary.add_argument("version")
    canary.add_argument("--percent", type=float, required=True, help="0 < P <= 50")
    canary.add_argument("--force", action="store_true", help="allow a percent above 50")
    canary.set_defaults(command=cmd_model_canary)
    shadow = model.add_parser(
        "shadow", parents=[change], help="score every event with more versions, unseen"
    )
    shadow.add_argument("versions", nargs="*")
    shadow.add_argument("--off", action="store_true", help="no shadow versions")
    shadow.set_defaults(command=cmd_model_shadow)
    model.add_parser(
        "promote", parents=[change], help="make the canary the active version"
    ).set_defaults(command=cmd_model_promote)
    model.add_parser("abort", parents=[change], help="canary and shadows off").set_defaults(
        command=cmd_model_abort
    )
    route = model.add_parser("route", parents=[common], help="show the route and the fleet's")
    route.add_argument("--json", action="store_true")
    route.set_defaults(command=cmd_model_route)
    listing = model.add_parser("list", parents=[common], help="list versions")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(command=cmd_model_list)
    candidates = model.add_parser(
        "candidates",
        parents=[common],
        help="the retrainer's latest candidates: published or not, why, their figures",
    )
    candidates.add_argument("--json", action="store_true")
    candidates.add_argument("--limit", type=int, default=20)
    candidates.set_defaults(command=cmd_model_candidates)


def _add_stack_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    stack = commands.add_parser(
        "stack",
        help="the embedded broker and Redis",
        description="A local Kafka-compatible broker (Apache Kafka when Java and its jars are "
        "here, else Tansu) and redis-server on free loopback ports, for trying the worker "
        "without installing anything else.",
        epilog="example: eval $(scorer stack up | grep ^export) && scorer run",
        formatter_class=HelpFormatter,
    ).add_subparsers(required=True, metavar="ACTION")
    up = stack.add_parser("up", parents=[common], help="start them on free loopback ports")
    up.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    up.add_argument("--kafka-port", type=int, default=0, help="0: any free port")
    up.add_argument("--redis-port", type=int, default=0, help="0: any free port")
    up.add_argument(
        "--schema-registry",
        action="store_true",
        help="also Apicurio Registry (in-memory storage; Java 21+; fetched with "
        "`scorer stack fetch-schema-registry`), its Confluent-compatible API exported as "
        "SCORER_SCHEMA_REGISTRY_URL",
    )
    up.add_argument("--schema-registry-port", type=int, default=0, help="0: any free port")
    _add_broker_flag(up)
    up.set_defaults(command=cmd_stack_up)
    down = stack.add_parser("down", parents=[common], help="stop what `stack up` started")
    down.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    down.set_defaults(command=cmd_stack_down)
    fetch = stack.add_parser(
        "fetch-kafka",
        parents=[common],
        help="resolve the pinned Apache Kafka's jars with Maven into a cache, once",
    )
    fetch.add_argument(
        "--if-possible",
        action="store_true",
        help="without Java or Maven, say so in one line and exit 0 (the stack then uses Tansu)",
    )
    fetch.set_defaults(command=cmd_stack_fetch_kafka)
    fetch_registry = stack.add_parser(
        "fetch-schema-registry",
        parents=[common],
        help="resolve the pinned Apicurio Registry with Maven into a cache, once",
    )
    fetch_registry.set_defaults(command=cmd_stack_fetch_schema_registry)


def _add_broker_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker",
        choices=["kafka", "tansu", "auto"],
        default="auto",
        help="the embedded broker: Apache Kafka, Tansu, or auto (Apache Kafka when Java and "
        "its fetched jars are here, else Tansu)",
    )


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from worker.service import Worker

    processes = _process_count(args.processes)
    if processes > 1:
        from worker.ops.supervisor import run_supervised

        child_args = ["--config", str(args.config)] if args.config else []
        for override in args.set:
            child_args += ["--set", override]
        identities = {
            name: getattr(settings, name)
            for name in ("group_instance_id", "transactional_id")
            if getattr(settings, name)
        }
        return run_supervised(processes, child_args, settings.metrics_port, identities)

    worker = Worker(settings)
    bind_process_fields(worker_id=worker.worker_id)
    install_stop_handlers(worker.stop)
    worker.run()
    return 0


def cmd_quality(args: argparse.Namespace, settings: Settings) -> int:
    from worker.commands.quality import show_quality  # scikit-learn's metrics: load when asked

    return show_quality(args, settings)


def cmd_monitor(args: argparse.Namespace, settings: Settings) -> int:
    from worker.lifecycle.monitor import Monitor

    monitor = Monitor(settings)
    bind_process_fields(monitor_id=monitor.process_id)
    install_stop_handlers(monitor.stop)
    monitor.run()
    return 0


def cmd_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from worker.lifecycle.retrainer import Retrainer

    retrainer = Retrainer(settings)
    bind_process_fields(retrainer_id=retrainer.process_id)
    install_stop_handlers(retrainer.stop)
    retrainer.run()
    return 0


def _process_count(value: str) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--processes takes a positive number or 'auto', got {value!r}")
    return int(value)


def install_stop_handlers(stop: Callable[[], None]) -> None:
    """First SIGTERM/SIGINT: finish the batch, commit, leave the group. Second: exit at once."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if getattr(handle, "seen", False):
            os._exit(128 + signum)
        handle.seen = True  # type: ignore[attr-defined]
        log.info("worker.stopping", signal=signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def cmd_stack_up(args: argparse.Namespace, settings: Settings) -> int:
    from worker.tools.stack import choose_broker, stack_up

    kind, notice = choose_broker(args.broker)
    print(f"# {notice}")
    registry_port = args.schema_registry_port if args.schema_registry else None
    state = stack_up(args.state_dir, args.kafka_port, args.redis_port, kind, registry_port)
    registry = (
        f", Apicurio Registry pid {state.schema_registry_pid}" if state.schema_registry_pid else ""
    )
    print(
        f"# broker pid {state.broker_pid}, redis-server pid {state.redis_pid}{registry}; "
        f"state in {args.state_dir}"
    )
    print(state.exports())
    return 0


def cmd_stack_down(args: argparse.Namespace, settings: Settings) -> int:
    from worker.tools.stack import stack_down

    state = stack_down(args.state_dir)
    print("stack stopped" if state else "no stack was running")
    return 0


def cmd_stack_fetch_schema_registry(args: argparse.Namespace, settings: Settings) -> int:
    from worker.tools import apicurio

    apicurio.java_binary()
    started = time.monotonic()
    runner = apicurio.fetch_apicurio()
    print(
        f"Apicurio Registry {apicurio.APICURIO_VERSION} in {runner.parent} "
        f"({time.monotonic() - started:.1f}s)"
    )
    return 0


def cmd_stack_fetch_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from worker.tools import apache_kafka

    try:
        apache_kafka.java_binary()
        started = time.monotonic()
        jars = apache_kafka.fetch_kafka()
    except ScorerError as exc:
        if not args.if_possible:
            raise
        print(f"scorer: Apache Kafka not fetched, the embedded stack uses Tansu: {exc}")
        return 0
    print(
        f"Apache Kafka {apache_kafka.KAFKA_VERSION} jars in {jars} "
        f"({time.monotonic() - started:.1f}s)"
    )
    return 0


def cmd_loadgen(args: argparse.Namespace, settings: Settings) -> int:
    from worker.tools.loadgen import generate

    if not 0 <= args.bad_fraction <= 1 or args.count < 0 or args.rate < 0:
        raise ConfigError("--count and --rate must be >= 0 and --bad-fraction within 0..1")
    avro = None
    if args.format == "avro":
        from worker.infra.schema_registry import SchemaRegistry
        from worker.tools.avro_events import avro_encoder

        registry = SchemaRegistry(settings.schema_registry_url)
        avro = avro_encoder(registry, settings.input_topic, args.profile)
    producer = build_producer(settings)
    try:
        result = generate(
            producer,
            settings.input_topic,
            args.count,
            rate=args.rate,
            bad_fraction=args.bad_fraction,
            id_prefix=args.id_prefix,
            seed=args.seed,
            progress=sys.stderr.isatty(),
            profile=args.profile,
            avro=avro,
        )
    finally:
        producer.close()
    print(
        orjson.dumps(
            {"sent": result.sent, "bad": len(result.bad_ids), "seconds": round(result.seconds, 3)}
        ).decode()
    )
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from worker.tools.bench import BenchOptions, run_bench

    default_events = 1_000_000 if args.mode == "backlog" else 50_000
    options = BenchOptions(
        events=args.events or default_events,
        partitions=args.partitions,
        rounds=args.rounds,
        batch_max_records=args.batch_size,
        processes=args.processes,
        rate=args.rate,
        duration_s=args.duration,
        out_dir=args.out,
        external=args.external,
        client=args.client,
        broker=args.broker,
    )
    if min(options.events, options.partitions, options.rounds, options.processes) < 1:
        raise ConfigError("--events, --partitions, --rounds and --processes must be >= 1")
    return run_bench(settings, options, args.mode)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    if args.scenario == "drift":
        from worker.tools.demo_drift import run_drift_demo

        rate = args.rate or 500.0
        return run_drift_demo(rate, args.label_delay, args.change_after, args.broker, args.out)
    if args.quality or args.scenario == "quality":
        from worker.tools.demo_quality import run_quality_demo

        return run_quality_demo(args.rate or 500.0, args.label_delay, args.broker, timeout_s=120)
    from worker.tools.demo import CTR, STORY, run_demo

    cast = CTR if args.scenario == "ctr" else STORY
    return run_demo(settings, args.events, args.rate or 2000.0, args.broker, cast)
