"""`--engine ray`: the same work on Ray actors, each holding the model, batches streamed to them.

One actor per GPU when the cluster has GPUs (or `workers` actors sharing them), else one per CPU (or
`workers`). Each actor loads the model once from a ModelSpec (plain data) and runs
work.explain_samples, the function of the local engine, so the two give the same records and maps.
The driver reads the image files and sends their bytes with the batches (the workers need no access
to the dataset folder), keeps `in_flight` batches queued per actor, and writes the results as they
come back (in any order). With an address it joins that cluster (its nodes need this project and its
requirements installed, e.g. the same container image, and a custom model's checkpoint at the same
path); without one it starts a local instance, bounded to `workers` CPUs, and stops it at the end.
Ray is imported here only.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .dataset import Sample
from .model_spec import ModelSpec
from .work import ImageResult, Settings, explain_samples

ROOT = Path(__file__).resolve().parents[2]
_PASSED_ENVIRONMENT = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "TORCH_HOME", "HF_HOME")


class _Worker:
    """A Ray actor's state: the model, loaded once."""

    def __init__(self, spec: ModelSpec, settings: Settings, device: str) -> None:
        self.model = spec.load(device)
        self.settings = settings

    def run(self, batch: list[Sample]) -> list[ImageResult]:
        return explain_samples(self.model, batch, self.settings)


class RayEngine:
    """Ray actors explaining batches of samples; a context manager (it stops what it started)."""

    def __init__(
        self,
        spec: ModelSpec,
        settings: Settings,
        workers: int | None = None,
        address: str | None = None,
        in_flight: int = 2,
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1")
        self.spec, self.settings, self.workers, self.address = spec, settings, workers, address
        self.in_flight = max(1, in_flight)
        self.actors: list = []
        self.started = False

    def __enter__(self) -> RayEngine:
        import ray

        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address)
            else:
                environment = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
                environment |= {k: os.environ[k] for k in _PASSED_ENVIRONMENT if k in os.environ}
                ray.init(
                    num_cpus=self.workers or os.cpu_count(),
                    include_dashboard=False,
                    runtime_env={"env_vars": environment},
                    log_to_driver=False,
                )
            self.started = True
        try:
            self._start_actors(ray)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start_actors(self, ray) -> None:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if gpus and self.spec.device != "cpu":
            count = self.workers or gpus  # more workers than GPUs share them
            options, device = {"num_gpus": min(1.0, gpus / count), "num_cpus": 1}, "cuda"
        else:
            count, options, device = self.workers or max(1, int(resources.get("CPU", 1))), {"num_cpus": 1}, "cpu"
        actor = ray.remote(_Worker)
        self.actors = [actor.options(**options).remote(self.spec, self.settings, device) for _ in range(count)]

    def __exit__(self, *exc_info: object) -> None:
        import ray

        for handle in self.actors:
            ray.kill(handle)
        self.actors = []
        if self.started:
            ray.shutdown()
            self.started = False

    def run(self, batches: Iterable[list[Sample]]) -> Iterator[list[ImageResult]]:
        """The results of each batch as they come back (not in order)."""
        import ray

        queue = iter(batches)
        pending: dict = {}  # object ref -> actor

        def submit(actor) -> None:
            batch = next(queue, None)
            if batch is not None:
                pending[actor.run.remote([_with_bytes(sample) for sample in batch])] = actor

        for _ in range(self.in_flight):
            for actor in self.actors:
                submit(actor)
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            actor = pending.pop(ready)
            results = ray.get(ready)
            submit(actor)
            yield results


def _with_bytes(sample: Sample) -> Sample:
    """The sample carrying its file's bytes, so that a worker on another machine needs no shared disk
    (a file the driver cannot read is left to the worker, whose error is recorded)."""
    try:
        return dataclasses.replace(sample, data=sample.path.read_bytes())
    except OSError:
        return sample
