"""The warm parts of an engine: the local generator and one black-box client per endpoint profile (an embedded
model's llama.cpp server started on first use). Loaded once per process and kept across runs, because loading
takes seconds to a minute and every run after the first should not pay it again.

A mixin of :class:`engine.runner.Engine` (which sets the attributes declared here in its ``__init__``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import Config, EndpointProfile
from engine.models.embedded import EmbeddedServers
from engine.run_state import Emit, noop
from engine.store import History
from engine.tasks import Task
from engine.wire.events import Status

if TYPE_CHECKING:  # the backends import torch: only their type is needed here
    from engine.generators.base import InstructionWriter


class WarmParts:
    config: Config
    history: History
    _generator: InstructionWriter | None
    _blackboxes: dict[str, Any]
    _embedded: EmbeddedServers
    _lock: asyncio.Lock | None

    def _alock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def generator(self, emit: Emit = noop, run_id: int = 0) -> InstructionWriter:
        """The local model, loaded once per process (it takes seconds; every run after the first reuses it)."""
        async with self._alock():
            if self._generator is None:
                from engine.generator_setup import generator_spec, make_run_generator
                from engine.preparation import Preparation, run_prepared

                g = self.config.generator
                path, name = await asyncio.to_thread(generator_spec, g)
                prep = Preparation(f"preparing generator {name or Path(path).name}")
                self._generator = await run_prepared(lambda p: make_run_generator(g, progress=p), prep,
                                                     lambda text: emit(Status(run_id, text)))
            return self._generator

    async def blackbox(self, name: str, profile: EndpointProfile, emit: Emit = noop, run_id: int = 0) -> Any:
        """One client per endpoint profile; an embedded model's server is started on first use and shared."""
        from engine.blackbox import BlackBox

        key = f"{name}|{profile.model_dump_json()}"
        async with self._alock():
            if key not in self._blackboxes:
                base_url, identity = None, None
                if profile.embedded:
                    server = self._embedded.for_model(profile.model)
                    if not server.running:
                        from engine.preparation import Preparation, run_prepared

                        prep = Preparation(f"starting the embedded llama.cpp server ({server.alias})")
                        prep("loading the model")
                        await run_prepared(lambda _p: server.start(), prep, lambda text: emit(Status(run_id, text)))
                    base_url = server.base_url
                    identity = server.identity
                self._blackboxes[key] = BlackBox(profile, self.history, base_url=base_url, cache_identity=identity)
            return self._blackboxes[key]

    async def _scorers(
        self, task: Task, name: str, profile: EndpointProfile, emit: Emit = noop, run_id: int = 0
    ) -> tuple[Any, Any]:
        """The client that scores ``task`` on this endpoint and, for a ``judge`` task, the judge's client.

        A task that sets ``api`` gets the profile with that api (the api is part of the profile, hence of the cache
        key); its other prompt settings travel as per-request overrides (engine.blackbox.scoring). The judge is the
        task's named profile, else this endpoint as configured; its calls are ordinary calls of the run.
        """
        scoring = profile.model_copy(update={"api": task.api}) if task.api and task.api != profile.api else profile
        bb = await self.blackbox(name, scoring, emit, run_id)
        judge = None
        if task.judge is not None:
            jname, jprofile = self.config.endpoint(task.judge.endpoint) if task.judge.endpoint else (name, profile)
            judge = await self.blackbox(jname, jprofile, emit, run_id)
        return bb, judge

    async def aclose(self) -> None:
        for bb in self._blackboxes.values():
            await bb.aclose()
        self._blackboxes.clear()
        await asyncio.to_thread(self._embedded.stop_all)

    def status(self) -> dict[str, Any]:
        return {
            "generator_loaded": self._generator is not None,
            "embedded_url": self._embedded.base_url(),
            "history": str(self.history.path),
        }
