"""The llava suite's test-time utility through lm-eval (EleutherAI's lm-evaluation-harness).

Optional: needs the extra ``vlm-eval`` (``pip install -e ".[vlm-eval]"``); nothing here imports
lm-eval until a suite asks for it (``--set utility_tasks=...``), and without it the suite fails at
construction with that install line.

lm-eval's ``hf-multimodal`` model (``HFMultimodalLM``) wraps the in-memory LLaVA and its processor,
so the weights a method edited in place are the ones scored. Tasks:
- ``ub_vqa``: the suite's own utility test questions (embedded: the procedural scenes; real:
  ``vqa.jsonl``), the suite's prompt, greedy answers of the suite's length, scored by the suite's
  rule (``vlm.contains_answer``): metric ``acc`` (pooled over question types);
- ``ub_mu_llava_identity``: the "who is this?" questions of the identity test faces (real: each
  ``mu_llava_*`` row's own question and answer) scored as the reference scores them (the suite's
  ``match``, substring on real data): ``forget_acc`` on the target's faces, ``retain_acc`` on every
  other identity's faces (pooled over faces);
- any task name lm-eval knows (``mmmu_val``, ``chartqa``, ...), its data sets read offline from the
  Hugging Face cache folder given as ``hf_cache`` (never downloaded).
Each task's metrics land in the records as ``util:<task>:<metric>`` (lm-eval's scale: fractions)
with ``util:<task>:<metric>_stderr``. Search and stopping never come here: they keep the suite's
own batched scorer, which gives the same answers (tests/test_lm_eval_utility.py).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.records import Metric
from unlearnbench.vlm import PROMPT, contains_answer

log = logging.getLogger(__name__)

INSTALL = 'pip install -e ".[vlm-eval]"'
VQA_TASK = "ub_vqa"
IDENTITY_TASK = "ub_mu_llava_identity"
OWN_TASKS = (VQA_TASK, IDENTITY_TASK)
# The metrics of the tasks defined here, with their direction (lm-eval's scale: fractions).
OWN_METRICS = {VQA_TASK: {"acc": True}, IDENTITY_TASK: {"forget_acc": False, "retain_acc": True}}
PREFIX = "util"


def require_lm_eval(setting: str) -> None:
    """Fail in one line, with the install command, when lm-eval (or what its multimodal model needs) is missing."""
    for module in ("lm_eval", "accelerate"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise UnlearnBenchError(f"llava: {setting} needs lm-eval, an optional extra: {INSTALL}") from None


def parse_tasks(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(set(names)) != len(names):
        raise UnlearnBenchError(f"llava: utility_tasks={text!r} names a task twice")
    return names


def metric_name(task: str, metric: str) -> str:
    return f"{PREFIX}:{task}:{metric}"


def declared_metrics(task: str, higher_is_better: dict[str, bool]) -> tuple[Metric, ...]:
    """Record metadata of a task's metrics and their standard errors (never gated by ``compare``)."""
    out = []
    for metric, higher in higher_is_better.items():
        out.append(Metric(metric_name(task, metric), f"{PREFIX}-{task}", bool(higher), unit="fraction", tolerance=0.01))
        out.append(Metric(metric_name(task, f"{metric}_stderr"), f"{PREFIX}-{task}", False, unit="fraction",
                          tolerance=None))
    return tuple(out)


@contextlib.contextmanager
def offline_hf_cache(root: str | None) -> Iterator[None]:
    """Hugging Face hub and ``datasets`` offline, reading ``root`` (an HF_HOME-style folder: ``hub/``
    and/or ``datasets/``) for the duration: environment and the constants already imported."""
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if root is not None:
        base = Path(root)
        hub = base / "hub" if (base / "hub").is_dir() else base
        env["HF_HUB_CACHE"] = str(hub)
        env["HF_DATASETS_CACHE"] = str(base / "datasets" if (base / "datasets").is_dir() else base)
    saved_env = {key: os.environ.get(key) for key in env}
    patched: list[tuple[object, str, object]] = []

    def patch(module_name: str, attribute: str, value) -> None:
        module = importlib.import_module(module_name)
        if hasattr(module, attribute):
            patched.append((module, attribute, getattr(module, attribute)))
            setattr(module, attribute, value)

    try:
        os.environ.update(env)
        patch("huggingface_hub.constants", "HF_HUB_OFFLINE", True)
        patch("datasets.config", "HF_HUB_OFFLINE", True)
        patch("datasets.config", "HF_DATASETS_OFFLINE", True)
        if root is not None:
            patch("huggingface_hub.constants", "HF_HUB_CACHE", env["HF_HUB_CACHE"])
            patch("datasets.config", "HF_DATASETS_CACHE", Path(env["HF_DATASETS_CACHE"]))
        yield
    finally:
        for module, attribute, value in reversed(patched):
            setattr(module, attribute, value)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def quiet_lm_eval() -> Iterator[None]:
    """lm-eval's own warnings stay out of the terminal unless ``-v`` (the ``unlearnbench`` logger at INFO):
    its log messages (about how it wraps an in-memory model, task metadata) are for its own command line, and
    the Python warnings it and its libraries raise say nothing about the scores. With ``-v`` they reach the
    terminal once, through the root handler: ``simple_evaluate`` is given no ``verbosity``, which would add
    lm-eval's own handler beside it and print each message twice."""
    if logging.getLogger("unlearnbench").isEnabledFor(logging.INFO):
        yield
        return
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def in_memory_lm(model, processor, batch_size: int, max_new_tokens: int):
    """lm-eval's ``HFMultimodalLM`` around a loaded LLaVA and its processor (not read from a folder:
    lm-eval's own ``tokenizer=`` route leaves the processor unset, so the subclass sets it)."""
    from lm_eval.models.hf_vlms import HFMultimodalLM

    class InMemoryLlava(HFMultimodalLM):
        def _create_tokenizer(self, *args, **kwargs) -> None:
            self.processor = processor
            self.tokenizer = processor.tokenizer

    return InMemoryLlava(pretrained=model, batch_size=batch_size, max_gen_toks=max_new_tokens)


def generation_task(name: str, docs: list[dict], image: Callable[[int], object], max_new_tokens: int,
                    score: Callable[[dict, str], dict[str, float]], metrics: dict[str, bool]) -> dict:
    """An lm-eval task config (a dict: lm-eval's Python route) asking each doc's question about its
    image with the suite's prompt, greedy, ``max_new_tokens`` tokens; ``score(doc, answer)`` gives
    the doc's metrics (a doc may give only some; each is averaged over the docs that give it)."""
    import datasets

    return {
        "task": name,
        "custom_dataset": lambda **_: {"test": datasets.Dataset.from_list(docs)},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_image": lambda doc: [image(doc["image"])],
        "doc_to_text": lambda doc: PROMPT.format(question=doc["question"]),
        "doc_to_target": lambda doc: doc["answer"],
        "generation_kwargs": {"until": [], "max_gen_toks": max_new_tokens, "do_sample": False},
        "process_results": lambda doc, results: score(doc, results[0].strip()),
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": h} for m, h in metrics.items()],
        "metadata": {"version": 1},
    }


class LmEvalUtility:
    """The lm-eval tasks a llava suite scores at test time (``utility_tasks``) and how to run them."""

    def __init__(self, suite, tasks: str, hf_cache: str | None, limit: int | None) -> None:
        require_lm_eval(f"utility_tasks={tasks}")
        self.suite = suite
        self.tasks = parse_tasks(tasks)
        self.hf_cache = hf_cache
        self.limit = limit
        if hf_cache is not None and not Path(hf_cache).is_dir():
            raise UnlearnBenchError(f"llava: hf_cache={hf_cache} is not a folder (a Hugging Face cache: hub/, "
                                    "datasets/)")
        others = [name for name in self.tasks if name not in OWN_TASKS]
        if others:
            from lm_eval.tasks import TaskManager

            known = set(TaskManager().all_tasks)
            unknown = [name for name in others if name not in known]
            if unknown:
                raise UnlearnBenchError(f"llava: utility_tasks: lm-eval knows no task {', '.join(unknown)}; this "
                                        f"suite's own: {', '.join(OWN_TASKS)}; lm-eval's: `lm_eval ls tasks`")
        self.metrics: tuple[Metric, ...] = tuple(m for name in self.tasks if name in OWN_METRICS
                                                 for m in declared_metrics(name, OWN_METRICS[name]))
        self._lm = None

    def lm(self, model):
        """The lm-eval model around ``model`` (built once per model object: edits in place are seen)."""
        if self._lm is None or self._lm.model is not model:
            assets = self.suite.assets
            with quiet_lm_eval():
                self._lm = in_memory_lm(model, assets.processor, self.suite.config.eval_batch_size,
                                        assets.max_new_tokens)
        return self._lm

    # -- the suite's own tasks ----------------------------------------------------------------------
    def vqa_task(self) -> dict:
        qs = self.suite.assets.utility["test"]
        docs = [{"image": qs.image_index[i], "question": qs.questions[i], "answer": qs.answers[i], "type": qs.kinds[i]}
                for i in range(len(qs))]
        match = self.suite.match
        return generation_task(VQA_TASK, docs, lambda i: qs.images[i], self.suite.assets.max_new_tokens,
                               lambda doc, reply: {"acc": float(contains_answer(reply, doc["answer"], match))},
                               OWN_METRICS[VQA_TASK])

    def identity_task(self, target: str) -> dict:
        faces = self.suite.assets.identities["test"]
        rows = list(range(len(faces)))
        questions, answers = self.suite.asked("test", rows)
        names = [faces.classnames[int(label)] for label in faces.labels]
        docs = [{"image": i, "question": questions[i], "answer": answers[i], "target": names[i] == target}
                for i in rows]
        match = self.suite.match

        def score(doc: dict, reply: str) -> dict[str, float]:
            hit = float(contains_answer(reply, doc["answer"], match))
            return {"forget_acc": hit} if doc["target"] else {"retain_acc": hit}

        return generation_task(IDENTITY_TASK, docs, lambda i: faces[i], self.suite.assets.max_new_tokens, score,
                               OWN_METRICS[IDENTITY_TASK])

    def task_specs(self, target: str) -> list:
        own = {VQA_TASK: self.vqa_task, IDENTITY_TASK: lambda: self.identity_task(target)}
        return [own[name]() if name in own else name for name in self.tasks]

    # -- running ------------------------------------------------------------------------------------
    def run(self, model, target: str, log_samples: bool = False) -> dict:
        """lm-eval's results dict for ``model`` (the suite's LLaVA, as edited) and ``target``."""
        import lm_eval

        was_training = model.training
        try:
            with offline_hf_cache(self.hf_cache), quiet_lm_eval():
                results = lm_eval.simple_evaluate(
                    model=self.lm(model), tasks=self.task_specs(target), limit=self.limit, log_samples=log_samples,
                    bootstrap_iters=1000, random_seed=None, numpy_random_seed=None, torch_random_seed=None)
        except (ConnectionError, FileNotFoundError) as err:  # offline, not in the cache
            if any(name not in OWN_TASKS for name in self.tasks):
                first = str(err).splitlines()[0] if str(err) else ""
                raise UnlearnBenchError(
                    f"llava: lm-eval could not read a task's data set offline ({type(err).__name__}: {first}) from "
                    f"{self.hf_cache or 'the default cache'}; nothing is downloaded: give the Hugging Face cache that "
                    "holds it with --set hf_cache=PATH") from err
            raise
        finally:
            model.train(was_training)
        return results

    def evaluate(self, model, target: str) -> dict[str, float]:
        """``util:<task>:<metric>`` (and ``..._stderr``) for every metric of every task; declares the
        metadata of metrics not known before (lm-eval's own tasks) on the suite."""
        return self.values(self.run(model, target))

    def values(self, results: dict) -> dict[str, float]:
        out: dict[str, float] = {}
        directions = results.get("higher_is_better", {})
        new: list[Metric] = []
        declared = {m.name for m in self.metrics}
        for task, metrics in results["results"].items():
            for key, value in metrics.items():
                if key == "alias" or "," not in key or not isinstance(value, (int, float)):
                    continue  # "N/A" stderrs, aliases, sample counts
                metric, filtered = key.split(",", 1)
                base = metric.removesuffix("_stderr")
                suffix = "" if filtered == "none" else f":{filtered}"  # one metric under several answer filters
                out[metric_name(task, metric + suffix)] = float(value)
                if metric_name(task, base + suffix) not in declared and base in directions.get(task, {}):
                    new += declared_metrics(task, {base + suffix: directions[task][base]})
                    declared.add(metric_name(task, base + suffix))
        if new:
            self.metrics += tuple(new)
            self.suite.metrics = (*type(self.suite).metrics, *self.metrics)
        return out
