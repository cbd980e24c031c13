"""Command line: ``bench.py [run] --suite clip --methods slug,noop``, ``bench.py ls``.

Every user-facing problem is an UnlearnBenchError: printed as one line, exit status 2, no
traceback, and nothing already written is touched (units are written atomically as they finish).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from unlearnbench.config import parse_assignments
from unlearnbench.errors import UnlearnBenchError

log = logging.getLogger("unlearnbench")

COMMANDS = ("run", "ls", "paper", "compare", "report", "costs", "train-embedded", "runs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.py", description="Benchmark machine-unlearning methods.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", parents=[common],
                         help="unlearn targets with methods and report (the default command)")
    add_run_arguments(run)
    run.add_argument("--suite", default="clip", help="benchmark suite (see `bench.py ls`); default: clip")
    run.add_argument("--methods", default="slug,noop", help="comma-separated methods; default: slug,noop")

    paper = sub.add_parser("paper", parents=[common],
                           help="regenerate a table of the SLUG paper, published numbers alongside")
    paper.add_argument("table", metavar="TABLE", help="which table: " + "; ".join(
        f"{name} ({table.caption.split(':')[0]})" for name, table in paper_tables().items())
        + "; claims (the paper's claims, each checked on the embedded suites: reproduced or not)"
        + "; robustness (methods x attacks of one suite, --suite; its --attacks default relearn,quantize,prompt)")
    add_run_arguments(paper)
    paper.add_argument("--suite", help="robustness only: the suite (clip, llava, unlearncanvas); default: clip")
    paper.add_argument("--methods", help="robustness only: comma-separated methods; default: the suite's set "
                       "(clip: slug,ga,salun-ga,ssd; llava: slug,slug-lm,ga; unlearncanvas: slug,salun)")
    paper.set_defaults(seeds="0")

    ls = sub.add_parser("ls", parents=[common], help="list methods and suites, or one's settings: ls slug")
    ls.add_argument("name", nargs="?", help="a method or suite: show its settings, defaults and help")
    ls.add_argument("--plugin", action="append", metavar="MODULE",
                    help="import a module or .py file that registers your own methods or suites (repeatable)")

    compare = sub.add_parser("compare", parents=[common], help="compare two runs metric by metric; gate on regressions",
                             description="Compare NEW against BASE per (method, metric) over the (target, seed) units "
                             "both ran: means, difference, direction, Welch's t-test p-value; writes compare.md. The "
                             "gate also fails on NaN or missing values, units of BASE missing in NEW and changed "
                             "settings.")
    compare.add_argument("base", metavar="BASE", help="the reference run: a run folder or its records.parquet")
    compare.add_argument("new", metavar="NEW", help="the run to check, likewise")
    compare.add_argument("--tolerance", action="append", metavar="METRIC=POINTS",
                         help="how far METRIC may move the wrong way before it counts as a regression (repeatable); "
                         "defaults: 1 point for accuracy metrics, 0 for goal_met, timings and counts not gated")
    compare.add_argument("--fail-on-regression", action="store_true",
                         help="exit with status 1 if any metric regressed beyond its tolerance or is NaN or missing "
                         "in NEW, a method, target or seed of BASE is missing in NEW, or settings changed")
    compare.add_argument("--allow-config-change", action="store_true",
                         help="a method's or the suite's changed settings are shown but do not fail the gate; the "
                         "metrics of the changed methods are gated as usual")
    compare.add_argument("--out", help="folder for compare.md; default: NEW's run folder")
    compare.add_argument("--plugin", action="append", metavar="MODULE",
                         help="import the module (or .py file) that registers the runs' suite, if it is your own, so "
                         "its metrics' directions come from its code (repeatable)")

    report = sub.add_parser("report", parents=[common], help="rebuild a stored run's report.html, tables and plots",
                            description="Rebuild report.html, table.md, table.tex and the plots of a finished run "
                            "from its records, manifest and artifacts; nothing is recomputed.")
    report.add_argument("run", metavar="RUN", help="the run folder (runs/<run-id>)")
    report.add_argument("--ci", type=float, metavar="LEVEL",
                        help="show the t confidence interval of the mean at LEVEL (e.g. 0.95) instead of ± std")
    report.add_argument("--plugin", action="append", metavar="MODULE",
                        help="import the module that registers the run's suite, if it is your own (repeatable)")

    costs = sub.add_parser("costs", parents=[common], help="a run's passes per model component; --real-scale: "
                           "its runtimes projected to the real models",
                           description="Print each unit's sample passes per model component (forward / backward, "
                           "sampling steps at the real protocol's count). With --real-scale, time one pass of each "
                           "component of the suite's real architecture (random weights, cached per device) and print "
                           "each unit's projected runtime beside the measured one; writes costs.md and costs.csv.")
    costs.add_argument("run", metavar="RUN", help="the run folder (runs/<run-id>)")
    costs.add_argument("--real-scale", action="store_true",
                       help="project each unit to the real models (times them once per device: minutes on a CPU)")
    costs.add_argument("--device", default="auto", help="device for the real-scale timing; default: cuda if present")
    costs.add_argument("--dtype", default="float32", help="float32 (default), float16 or bfloat16")
    costs.add_argument("--refresh", action="store_true", help="time the real components again instead of the cache")
    costs.add_argument("--plugin", action="append", metavar="MODULE",
                       help="import the module that registers the run's suite, if it is your own (repeatable)")
    costs.add_argument("--cache-dir", help="cache folder (default: $UNLEARNBENCH_CACHE or ~/.cache/unlearnbench)")

    runs = sub.add_parser("runs", parents=[common], help="list the runs in an output folder (and write its index.md)",
                          description="List every run folder under --out, newest first: its id, when, suite, "
                          "methods, targets, seeds and the command that made it; rewrites --out/index.md.")
    runs.add_argument("--out", default="runs", help="the output folder; default: runs/")

    train = sub.add_parser("train-embedded", parents=[common], help="retrain a suite's embedded models from code",
                           description="Train the embedded models of a suite from code into the cache (progress "
                           "bars, then the bars each model measured); a run uses them with --set "
                           "embedded_weights=trained. --ship copies them over the models shipped in the package.")
    train.add_argument("--suite", required=True, help="clip, llava or unlearncanvas")
    train.add_argument("--preset", default="tiny", help="the embedded preset to train; default: tiny")
    train.add_argument("--reuse", action="store_true",
                       help="take the models already trained into the cache from this code instead of retraining")
    train.add_argument("--ship", action="store_true",
                       help="copy them over the shipped models (unlearnbench/models/weights/), cards included")
    train.add_argument("--cache-dir", help="cache folder (default: $UNLEARNBENCH_CACHE or ~/.cache/unlearnbench)")
    return parser


def paper_tables():
    from unlearnbench.reports.paper import PAPER_TABLES

    return PAPER_TABLES


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--targets", help="target names (comma-separated) or k for the suite's first k; "
                        "default: the first target")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; default: 0")
    parser.add_argument("--config", choices=("embedded", "real"), help="suite configuration; default: embedded")
    parser.add_argument("--data", help="root folder of the real data sets (config real)")
    parser.add_argument("--weights", help="model weights file or cache dir (config real)")
    parser.add_argument("--set", dest="suite_set", action="append", metavar="KEY=VALUE",
                        help="override a suite setting, e.g. --set forget_metric=FA@1 (repeatable)")
    parser.add_argument("--method-set", action="append", metavar="METHOD.KEY=VALUE",
                        help="override a method setting, e.g. --method-set slug.search_steps=5 (repeatable)")
    parser.add_argument("--attacks", default="", help="comma-separated attacks run on every unit's unlearned model "
                        "and on the base model, recorded as METRIC|VARIANT (see `bench.py ls`); default: none")
    parser.add_argument("--attack-set", action="append", metavar="ATTACK.KEY=VALUE",
                        help="override an attack setting, e.g. --attack-set relearn.steps=10,50 (repeatable)")
    parser.add_argument("--plugin", action="append", metavar="MODULE",
                        help="import a module (examples.my_method) or .py file (examples/my_method.py) that registers "
                        "your own methods, suites or attacks (repeatable; docs/PLUGINS.md)")
    parser.add_argument("--ci", type=float, metavar="LEVEL",
                        help="show the t confidence interval of the mean at LEVEL (e.g. 0.95) instead of ± std")
    parser.add_argument("--out", default="runs", help="folder for run outputs; default: runs/")
    parser.add_argument("--run-id", help="name of the run folder; default: derived from the configuration, "
                        "so the same command resumes the same run")
    parser.add_argument("--cache-dir", help="cache for trained embedded models and base evaluations "
                        "(default: $UNLEARNBENCH_CACHE or ~/.cache/unlearnbench)")
    parser.add_argument("--executor", choices=("sequential", "ray"), default="sequential",
                        help="how units are computed: one after another here (default), or as Ray tasks in "
                        "parallel, one CPU (or one GPU on cuda) each; ray needs pip install -e \".[ray]\"")
    parser.add_argument("--address", help="with --executor ray: the address of an existing Ray cluster (its run "
                        "folder and cache on a filesystem every node shares); default: a local cluster on this "
                        "machine's CPUs")


def run_spec(args: argparse.Namespace):
    from unlearnbench.runner import RunSpec

    suite_overrides = parse_assignments(args.suite_set, "--set")
    for key in ("config", "data", "weights"):
        if getattr(args, key) is not None:
            suite_overrides[key] = getattr(args, key)
    method_overrides: dict[str, dict[str, str]] = {}
    for key, value in parse_assignments(args.method_set, "--method-set").items():
        method, dot, setting = key.partition(".")
        if not dot or not setting:
            raise UnlearnBenchError(f"--method-set expects METHOD.KEY=VALUE, got {key}={value}")
        method_overrides.setdefault(method, {})[setting] = value
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    attacks = [a.strip() for a in (args.attacks or "").split(",") if a.strip()]
    attack_overrides: dict[str, dict[str, str]] = {}
    for key, value in parse_assignments(args.attack_set, "--attack-set").items():
        attack, dot, setting = key.partition(".")
        if not dot or not setting:
            raise UnlearnBenchError(f"--attack-set expects ATTACK.KEY=VALUE, got {key}={value}")
        attack_overrides.setdefault(attack, {})[setting] = value
    return RunSpec(suite=args.suite, methods=methods, suite_overrides=suite_overrides,
                   method_overrides=method_overrides, targets=args.targets, seeds=parse_seeds(args.seeds),
                   out_dir=Path(args.out), run_id=args.run_id, executor=args.executor, address=args.address,
                   command=getattr(args, "command_line", None), attacks=attacks, attack_overrides=attack_overrides)


SEED_RANGE = (0, 2**63 - 1)  # records store seeds as int64
RUN_ID_BYTES = 255  # NAME_MAX of ext4, xfs, btrfs, APFS and NTFS: the longest name of one folder


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise UnlearnBenchError(f"--seeds expects comma-separated integers, got {text!r}") from None
    for seed in seeds:
        if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise UnlearnBenchError(f"--seeds {seed}: seeds must be between 0 and 2**63 - 1 = {SEED_RANGE[1]} "
                                    "(records store them as int64)")
    check_no_duplicates(list(seeds), "--seeds")
    return seeds


def check_no_duplicates(items: list, flag: str) -> None:
    seen = set()
    for item in items:
        if item in seen:
            raise UnlearnBenchError(f"{flag} names {item!r} twice; give each once")
        seen.add(item)


def check_run_arguments(args: argparse.Namespace) -> None:
    """Reject malformed --targets/--methods/--seeds/--run-id, --ci and --executor before anything is built."""
    check_ci(args.ci)
    if args.executor == "ray":
        from unlearnbench.executors import import_ray

        import_ray()  # Ray missing: one line, before any work
    elif args.address is not None:
        raise UnlearnBenchError("--address is the address of a Ray cluster; give it with --executor ray")
    if args.targets is not None:
        from unlearnbench.benchmarks.base import target_names

        names = target_names(args.targets)
        if not any(names):
            raise UnlearnBenchError(f"--targets {args.targets!r} names no target; give target names "
                                    "(comma-separated) or k for the suite's first k, or leave it out for the first")
        check_no_duplicates([n for n in names if n], "--targets")
    if getattr(args, "methods", None):
        check_no_duplicates([m.strip() for m in args.methods.split(",") if m.strip()], "--methods")
    if getattr(args, "attacks", None):
        check_no_duplicates([a.strip() for a in args.attacks.split(",") if a.strip()], "--attacks")
    parse_seeds(args.seeds)
    run_id = args.run_id
    if run_id is not None and (not run_id or run_id.startswith(".") or os.path.isabs(run_id)
                               or any(c in run_id for c in ("/", "\\", os.sep, "\0"))):
        raise UnlearnBenchError(f"--run-id {run_id!r}: give a plain folder name, without '/' or '\\' and not "
                                "starting with '.'; the run is written to --out/RUN_ID")
    if run_id is not None and len(os.fsencode(run_id)) > RUN_ID_BYTES:
        raise UnlearnBenchError(f"--run-id {run_id[:20]}... is {len(os.fsencode(run_id))} bytes long; a folder name "
                                f"can have at most {RUN_ID_BYTES} (most filesystems), so give a shorter one")


def check_output_folders(args: argparse.Namespace) -> None:
    """--out and the cache must be writable; checked after the names, before any training."""
    from unlearnbench.cache import cache_root, check_writable_folder

    check_writable_folder(Path(args.out), "--out")
    if args.run_id is not None and (Path(args.out) / args.run_id).exists():  # an earlier run's folder, resumed
        from unlearnbench.runner import check_run_folder

        check_run_folder(Path(args.out) / args.run_id)
    check_writable_folder(cache_root(), cache_flag(args))


def cache_flag(args: argparse.Namespace) -> str:
    """How the user named the cache folder, for messages."""
    from unlearnbench.cache import CACHE_ENV

    return "--cache-dir" if args.cache_dir else (f"${CACHE_ENV}" if os.environ.get(CACHE_ENV) else "cache")


def check_ci(level: float | None) -> None:
    if level is not None and not 0 < level < 1:
        raise UnlearnBenchError(f"--ci {level}: give a confidence level between 0 and 1, e.g. 0.95")


def cmd_run(args: argparse.Namespace) -> int:
    from unlearnbench.reports.index import write_index
    from unlearnbench.reports.run_report import write_run_report
    from unlearnbench.runner import prepare, prepare_attacks, run

    check_run_arguments(args)
    spec = run_spec(args)
    suite, _ = prepare(spec)  # fail on bad names before training anything
    prepare_attacks(spec, suite)
    check_output_folders(args)
    result = run(spec, suite)
    print(result.reuse_line())
    print(write_run_report(result, type(suite), args.ci).terminal)
    index = write_index(Path(args.out))
    print(f"\nwrote {result.run_dir}/ (records.parquet, manifest.json, table.md, plots, report.html); runs: {index}")
    return 0


def cmd_paper(args: argparse.Namespace) -> int:
    import json
    import shutil
    import time
    from dataclasses import asdict, replace

    import pandas as pd

    from unlearnbench.cache import atomic_write_text
    from unlearnbench.reports.html import write_report
    from unlearnbench.reports.index import write_index
    from unlearnbench.reports.paper import ROBUSTNESS, for_variant, label_records, paper_table, with_published
    from unlearnbench.reports.run_report import write_run_report
    from unlearnbench.reports.tables import MISSED, MISSED_NOTE, latex_escape, to_latex, to_markdown, to_terminal
    from unlearnbench.runner import prepare, run

    from unlearnbench.reports import claims

    if args.table == claims.NAME:
        return cmd_claims(args)
    if args.table == ROBUSTNESS:
        return cmd_robustness(args)
    if args.suite is not None or args.methods is not None:
        raise UnlearnBenchError(f"paper {args.table}: --suite and --methods are for `paper robustness`; table "
                                f"{args.table} runs its own suite and methods")
    table = paper_table(args.table)
    args.suite, args.methods = table.suite, ",".join(table.methods)
    check_run_arguments(args)
    args.targets = args.targets or table.targets
    spec = run_spec(args)
    specs = {label: for_variant(spec, table, label) for label, _ in table.variants}
    suites = {label: prepare(s)[0] for label, s in specs.items()}  # every bad name fails before any work
    check_output_folders(args)
    start = time.perf_counter()
    results = {}
    for label in specs:
        results[label] = run(specs[label], suites[label])
        print(f"{label or args.table}: {results[label].reuse_line()}")
    records = pd.concat([label_records(r.records, label) for label, r in results.items()], ignore_index=True)
    settings = asdict(next(iter(suites.values())).config)
    view = with_published(records, table, args.ci, settings)
    note = "\n".join(n for n in (table.note(settings), MISSED_NOTE if any(r.endswith(MISSED) for r in view.index)
                                  else "") if n)
    note = f"\n{note}\n" if note else ""
    out = Path(args.out) / f"paper-{args.table}"
    stem = out / f"paper_{args.table.replace('-', '_')}"
    first = next(iter(results.values()))
    model_id = next(iter(suites.values())).model_id()
    atomic_write_text(stem.with_suffix(".md"), f"{table.caption}; model `{model_id}`, "
                      f"targets per run: {', '.join(first.manifest['targets'])}.\n\n" + to_markdown(view) + note)
    atomic_write_text(stem.with_suffix(".tex"), to_latex(view) + (latex_escape(note.strip()) + "\n" if note else ""))
    run_dirs = {label: str(r.run_dir) for label, r in results.items()}
    atomic_write_text(out / "runs.json", json.dumps(run_dirs, indent=2))
    parts = []
    for label, result in results.items():
        # Each run gets its own report too, and lends the table's page its figures, settings and units;
        # its forget-vs-retain and cost figures are the table's, copied rather than drawn twice.
        part = write_run_report(result, type(suites[label]), args.ci).part
        parts.append(replace(part, label=label))
        suffix = f"_{label}" if label else ""
        for figure in part.figures:
            shutil.copyfile(figure.path, out / f"{figure.path.stem}{suffix}.png")
    write_report(out / "report.html", f"paper {args.table}: {table.caption}",
                 [f"Model {model_id}; targets per run: {', '.join(first.manifest['targets'])}.", note.strip()],
                 view, parts)
    print(to_terminal(view) + note)
    write_index(Path(args.out))
    print(f"\nwrote {out}/ (tables, plots, report.html; runs in runs.json) in {time.perf_counter() - start:.0f} s")
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    """``bench.py paper claims``: one run per suite of ``CLAIM_RUNS`` (embedded), the unlearncanvas run's
    runtime projected to SD v1.5 as ``bench.py costs --real-scale`` does, and the claims checked on them."""
    import time

    import torch

    from unlearnbench.cache import atomic_write_text
    from unlearnbench.real_scale import pass_times, resolve_device
    from unlearnbench.reports.claims import CLAIM_RUNS, FOOTNOTE, claims_table, evidence_from
    from unlearnbench.reports.costs import cost_table
    from unlearnbench.reports.index import write_index
    from unlearnbench.reports.tables import to_markdown, to_terminal
    from unlearnbench.runner import RunSpec, prepare, run

    given = [flag for flag, value in (("--config", args.config), ("--data", args.data), ("--weights", args.weights),
                                      ("--set", args.suite_set), ("--method-set", args.method_set),
                                      ("--run-id", args.run_id), ("--suite", args.suite),
                                      ("--methods", args.methods), ("--attacks", getattr(args, "attacks", None)))
             if value]
    if given:
        raise UnlearnBenchError(f"bench.py paper claims runs every suite's embedded default; {', '.join(given)} "
                                "would apply to all of them: run one suite with `bench.py --suite ...` instead")
    check_run_arguments(args)
    out = Path(args.out)
    specs = {name: RunSpec(suite=c.suite, methods=list(c.methods), targets=args.targets or c.targets,
                           seeds=parse_seeds(args.seeds), out_dir=out, run_id=f"paper-claims-{name}",
                           executor=args.executor, address=args.address, command=getattr(args, "command_line", None))
             for name, c in CLAIM_RUNS.items()}
    suites = {name: prepare(spec)[0] for name, spec in specs.items()}  # every bad name fails before any work
    check_output_folders(args)
    start = time.perf_counter()
    records, projected, device = {}, {}, resolve_device("auto")
    for name, spec in specs.items():
        result = run(spec, suites[name])
        print(f"{name}: {result.reuse_line()}")
        records[name] = result.records
        if name == "unlearncanvas":
            table, _ = cost_table(result, pass_times(suites[name].kind, "auto"))
            projected[name] = table.groupby("method").without_base_val_s.mean()
    threads = torch.get_num_threads()
    where = f"{device} ({threads} torch thread{'s' if threads > 1 else ''}, random weights)"
    claims = claims_table(evidence_from(records, projected, where)).set_index("suite")
    folder = out / "paper-claims"
    text = ("The SLUG paper's claims checked on the embedded suites (`python bench.py paper claims`); targets per "
            f"suite: {', '.join(f'{n} {s.targets}' for n, s in specs.items())}.\n\n"
            + to_markdown(claims, index_name="suite") + f"\n\n{FOOTNOTE}\n")
    atomic_write_text(folder / "claims.md", text)
    print(to_terminal(claims, index_name="suite"))
    print(FOOTNOTE)
    write_index(out)
    print(f"\nwrote {folder / 'claims.md'} (runs: {', '.join(str(out / s.run_id) for s in specs.values())}) in "
          f"{time.perf_counter() - start:.0f} s")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    """`bench.py paper robustness`: one run of a suite's methods with attacks, and its methods x attacks table."""
    import time

    from unlearnbench.benchmarks.base import SUITES
    from unlearnbench.cache import atomic_write_text
    from unlearnbench.config import as_text
    from unlearnbench.reports.index import write_index
    from unlearnbench.reports.paper import (ROBUSTNESS_ATTACKS, ROBUSTNESS_METHODS, ROBUSTNESS_TARGETS,
                                            robustness_table)
    from unlearnbench.reports.run_report import write_run_report
    from unlearnbench.reports.tables import to_latex, to_markdown, to_terminal
    from unlearnbench.runner import prepare, prepare_attacks, run

    args.suite = args.suite or "clip"
    suite_cls = SUITES.get(args.suite)
    args.methods = args.methods or ",".join(ROBUSTNESS_METHODS.get(args.suite, ()))
    if not args.methods:
        raise UnlearnBenchError(f"paper robustness: suite {args.suite!r} has no default methods; give --methods")
    args.attacks = args.attacks or ROBUSTNESS_ATTACKS
    args.targets = args.targets or ROBUSTNESS_TARGETS
    check_run_arguments(args)
    spec = run_spec(args)
    suite, _ = prepare(spec)
    attacks = prepare_attacks(spec, suite)
    check_output_folders(args)
    start = time.perf_counter()
    result = run(spec, suite)
    print(f"robustness: {result.reuse_line()}")
    forget = suite_cls.plot_axes[0]
    view = robustness_table(result.records, forget, args.ci)
    budgets = "; ".join(f"{a.name}: " + ", ".join(f"{k}={as_text(v)}" for k, v in dataclasses.asdict(a.config).items())
                        for a in attacks)
    caption = (f"Robustness of unlearning on {args.suite} (model `{suite.model_id()}`, targets: "
               f"{', '.join(result.manifest['targets'])}): {forget} on test with no attack and after each attack "
               f"variant (lower is better: forgetting survived), mean ± std over targets and seeds; the original row "
               f"is the base model attacked alike. Budgets: {budgets}. Runtime: each attack's own work per unit.")
    out = Path(args.out) / f"paper-robustness-{args.suite}"
    atomic_write_text(out / "paper_robustness.md", caption + "\n\n" + to_markdown(view) + "\n")
    atomic_write_text(out / "paper_robustness.tex", to_latex(view))
    atomic_write_text(out / "run.txt", str(result.run_dir) + "\n")
    write_run_report(result, suite_cls, args.ci)
    print(to_terminal(view))
    print(f"\n{caption}")
    write_index(Path(args.out))
    seconds = time.perf_counter() - start
    print(f"\nwrote {out}/ (paper_robustness.md, .tex; the run: {result.run_dir}) in {seconds:.0f} s")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from unlearnbench.reports.index import run_index, write_index
    from unlearnbench.reports.tables import to_terminal

    out = Path(args.out)
    if not out.is_dir():
        raise UnlearnBenchError(f"--out {out}: no such folder; give the folder runs were written to")
    table = run_index(out)
    print(to_terminal(table.set_index("run"), index_name="run") if len(table) else f"no runs in {out}")
    print(f"\nwrote {write_index(out)}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from unlearnbench.attacks.base import ATTACKS
    from unlearnbench.benchmarks.base import SUITES
    from unlearnbench.config import as_text
    from unlearnbench.methods.base import METHODS

    if args.name:
        print(describe_registered(args.name))
        return 0
    print("methods:")
    for name, cls in METHODS.items():
        print(f"  {name:<10} [{', '.join(sorted(cls.kinds))}] {cls.summary()}")
    print("suites:")
    for name, cls in SUITES.items():
        print(f"  {name:<10} v{cls.version} [{cls.kind}] {cls.summary()}")
    print("attacks (--attacks; settings: --attack-set ATTACK.KEY=VALUE, `bench.py ls ATTACK`):")
    for name, cls in ATTACKS.items():
        settings = ", ".join(f"{f.name}={as_text(getattr(cls.Config(), f.name))}"
                             for f in dataclasses.fields(cls.Config))
        print(f"  {name:<10} [{', '.join(sorted(cls.kinds))}] {cls.summary()}\n  {'':<10} {settings}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from unlearnbench.cache import atomic_write_text
    from unlearnbench.reports.compare import StoredRun, compare, comparison_table, summary_line
    from unlearnbench.reports.tables import to_markdown, to_terminal

    tolerances = {}
    for metric, text in parse_assignments(args.tolerance, "--tolerance").items():
        try:
            tolerances[metric] = float(text)
        except ValueError:
            raise UnlearnBenchError(f"--tolerance {metric}={text}: give a number of points, e.g. {metric}=2") from None
        if not math.isfinite(tolerances[metric]):
            raise UnlearnBenchError(f"--tolerance {metric}={text}: give a finite number of points, e.g. {metric}=2")
        if tolerances[metric] < 0:
            raise UnlearnBenchError(f"--tolerance {metric}={text}: a tolerance cannot be negative")
    base, new = StoredRun.load(args.base, "BASE"), StoredRun.load(args.new, "NEW")
    comparison = compare(base, new, tolerances, args.allow_config_change)
    out = Path(args.out) if args.out else new.path
    title = f"# compare: NEW `{new.path}` against BASE `{base.path}`\n\n"
    text = "\n".join([summary_line(comparison), *(f"FAIL: {f}" for f in comparison.failures), *comparison.notes])
    table = comparison_table(comparison.rows)
    atomic_write_text(out / "compare.md", title + to_markdown(table) + "\n" + text + "\n")
    print(to_terminal(comparison_table(comparison.rows, gated_only=True)))
    print(f"\n{text}\nwrote {out / 'compare.md'} (every metric, timings and counts included)")
    return 1 if args.fail_on_regression and comparison.failed else 0


def stored_run(path: str):
    """A finished run folder (read, nothing recomputed) and the registered suite class it ran."""
    from unlearnbench.benchmarks.base import SUITES
    from unlearnbench.reports.run_report import stored_result

    run_dir = Path(path)
    if not run_dir.is_dir():
        what = "a file, not a folder" if run_dir.exists() else "no such folder"
        raise UnlearnBenchError(f"RUN {run_dir}: {what}; give a run folder (runs/<run-id>)")
    result = stored_result(run_dir)
    name = result.manifest["suite"]["name"]
    if name not in SUITES:
        raise UnlearnBenchError(f"RUN {run_dir} is a run of suite {name!r}, which is not registered; give --plugin "
                                f"MODULE for the module that registers it (suites: {', '.join(SUITES.names())})")
    return run_dir, result, SUITES.get(name)


def cmd_report(args: argparse.Namespace) -> int:
    from unlearnbench.reports.run_report import write_run_report
    from unlearnbench.runner import run_lock

    check_ci(args.ci)
    run_dir, result, suite = stored_run(args.run)
    with run_lock(run_dir):  # never while a run writes the same files
        report = write_run_report(result, suite, args.ci)
    print(report.terminal)
    print(f"\nwrote {run_dir / 'report.html'} (and table.md, table.tex, plots) from the stored run; nothing recomputed")
    return 0


def cmd_costs(args: argparse.Namespace) -> int:
    import pandas as pd
    import torch

    from unlearnbench.cache import atomic_write_text
    from unlearnbench.real_scale import REAL_MODELS, pass_times, resolve_device
    from unlearnbench.reports.costs import cost_table
    from unlearnbench.reports.tables import to_markdown, to_terminal

    run_dir, result, suite = stored_run(args.run)
    kind = suite.kind
    times = pass_times(kind, args.device, args.dtype, refresh=args.refresh) if args.real_scale else None
    table, passes = cost_table(result, times)
    lines = ["Sample passes per component, forward / backward, as the real protocol would run them (embedded "
             "sampling steps scaled to the real count); runtime_s is the measured embedded runtime."]
    if times is not None:
        lines.append(f"real_scale_s: those passes times one pass of each {REAL_MODELS[kind]} component, timed here "
                     f"({resolve_device(args.device)}, {args.dtype}, {torch.get_num_threads()} threads, "
                     "random weights; passes only, so a lower bound); without_base_val_s: the same without the base "
                     "model's validation (run for every method, to judge the goal; papers leave it out); x_slug, "
                     "x_slug_without: their ratios to SLUG's on the same target; x_floor: real_scale_s over the "
                     "projected floor (the passes of its precompute phase and the base validation), for methods "
                     "with a floor: runtime_over_floor at real scale.")
        lines += [f"  {c}: {t.forward_s:.4g} s forward" + (f", {t.backward_s:.4g} s backward" if t.backward_s else "")
                  + f" per sample{f' ({t.note})' if t.note else ''}" for c, t in times.items()]
    shown = table.set_index("method").assign(runtime_s=table.runtime_s.map("{:.1f}".format).values)
    if times is not None:
        seconds = ("real_scale_s", "without_base_val_s")
        ratios = [c for c in ("x_slug", "x_slug_without", "x_floor") if c in table]
        shown = shown.assign(**{c: table[c].map("{:,.1f}".format).values for c in seconds},
                             **{c: table[c].map(lambda v: "" if pd.isna(v) else f"{v:.2f}").values for c in ratios})
    print(to_terminal(shown))
    print("\n".join(lines))
    atomic_write_text(run_dir / "costs.md", "# costs\n\n" + to_markdown(shown) + "\n\n" + "\n".join(lines) + "\n")
    atomic_write_text(run_dir / "costs.csv", passes.drop(columns="unit").to_csv(index=False))
    print(f"wrote {run_dir / 'costs.md'} and {run_dir / 'costs.csv'}")
    return 0


def cmd_train_embedded(args: argparse.Namespace) -> int:
    import json

    from unlearnbench.cache import cache_root, check_writable_folder
    from unlearnbench.models.embedded import train_embedded
    from unlearnbench.models.shipped import CARD

    check_writable_folder(cache_root(), cache_flag(args))  # before minutes of training (--ship: train_embedded)
    for folder in train_embedded(args.suite, args.preset, reuse=args.reuse, ship_them=args.ship):
        card = json.loads((folder / CARD).read_text())
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        bars = ", ".join(f"{k} {v:.3f}" for k, v in card["bars"].items()  # accuracies; not losses or seconds
                         if isinstance(v, float) and 0 <= v <= 1 and "loss" not in k)
        print(f"{card['name']}: {folder} ({size / 1e6:.1f} MB, {len(card['files'])} files with sha256 in {CARD}); "
              f"trained in {card['trained']['seconds']:.0f} s on {card['trained']['threads'] or '?'} thread(s); {bars}")
    return 0


def describe_registered(name: str) -> str:
    """``bench.py ls NAME``: a method's or suite's summary and every setting with its default and help."""
    import dataclasses
    import difflib

    from unlearnbench.attacks.base import ATTACKS
    from unlearnbench.benchmarks.base import SUITES
    from unlearnbench.config import as_text, setting_help
    from unlearnbench.methods.base import METHODS

    blocks = []
    if name in ATTACKS:
        cls = ATTACKS.get(name)
        blocks.append((f"attack {name} [{', '.join(sorted(cls.kinds))}]: {cls.summary()}",
                       f"--attack-set {name}.KEY=VALUE", cls.Config))
    if name in METHODS:
        cls = METHODS.get(name)
        blocks.append((f"method {name} [{', '.join(sorted(cls.kinds))}]: {cls.summary()}",
                       f"--method-set {name}.KEY=VALUE", cls.Config))
    if name in SUITES:
        cls = SUITES.get(name)
        blocks.append((f"suite {name} v{cls.version} [{cls.kind}]: {cls.summary()}", "--set KEY=VALUE", cls.Config))
    if not blocks:
        close = difflib.get_close_matches(name, METHODS.names() + SUITES.names() + ATTACKS.names(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnlearnBenchError(f"Unknown method, suite or attack {name!r}.{hint} Methods: "
                                f"{', '.join(METHODS.names())}; suites: {', '.join(SUITES.names())}; "
                                f"attacks: {', '.join(ATTACKS.names())}.")
    lines = []
    for title, flag, config in blocks:
        fields = dataclasses.fields(config)
        defaults = {f.name: as_text(getattr(config(), f.name)) for f in fields}
        helps = setting_help(config)
        lines += [title, f"settings ({flag}):" if fields else "settings: none"]
        width = max((len(f.name) for f in fields), default=0)
        value_width = max((len(v) for v in defaults.values()), default=0)
        lines += [f"  {f.name:<{width}}  {defaults[f.name]:<{value_width}}  {helps[f.name]}".rstrip() for f in fields]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command_line = shlex.join(["bench.py", *argv])  # as typed, before `run` is implied
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    args.command_line = command_line
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "cache_dir", None):
        os.environ["UNLEARNBENCH_CACHE"] = args.cache_dir
    commands = {"run": cmd_run, "ls": cmd_ls, "paper": cmd_paper, "compare": cmd_compare, "report": cmd_report,
                "costs": cmd_costs, "train-embedded": cmd_train_embedded, "runs": cmd_runs}
    previous = handle_sigterm()
    try:
        from unlearnbench.plugins import load_plugins

        # compare too: its metrics' directions and tolerances come from the suites' declarations
        if args.command != "runs":  # it reads stored runs alone, never suite or method code
            load_plugins(getattr(args, "plugin", None))
        return commands[args.command or "run"](args)
    except UnlearnBenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        how, code = ("interrupted (SIGTERM)", 143) if isinstance(err, Terminated) else ("interrupted", 130)
        print(f"{how}; finished units are kept and a rerun of the same command resumes", file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler's time limit), raised where the program is, like Ctrl-C, so the
    same cleanup runs: the unit in progress is abandoned, temporary files are removed, finished units stay."""


def handle_sigterm():
    """Make SIGTERM raise Terminated; returns the previous handler (None where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None  # Python lets only the main thread set signal handlers

    def terminate(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, terminate)
