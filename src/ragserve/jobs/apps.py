"""Apps: the Runnables this process serves as durable jobs, by name (docs/APPS.md).

``--app NAME=module:attribute`` (or ``RAGSERVE_APPS="NAME=module:attribute;..."``) names any
LangChain Runnable: an LCEL chain, a ``RunnableLambda``/``RunnableGenerator`` (sync or async),
a compiled LangGraph graph. The built-in answer pipeline is the app ``rag``, always present;
``NAME=ragserve:rag`` declares another instance of it (a model class, e.g. ``rag-large``) whose
``RAGSERVE_LLM_*`` settings come from ``RAGSERVE_APP_<NAME>_LLM_*``.

Each app runs on a queue: its own name, except ``rag`` whose queue stays ``answer`` (the queue
of answer jobs before apps existed, so that workers of both releases serve the same queue
during a rolling upgrade). This module only describes apps; ``ragserve.jobs.app_streams``
runs them.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from langchain_core.runnables import Runnable
from pydantic import BaseModel, ValidationError

from ragserve.errors import ConfigurationError, InvalidInput, NotFound
from ragserve.jobs.models import AnswerRequest, AnswerResult
from ragserve.settings import ENV_PREFIX, Settings

log = logging.getLogger(__name__)

RAG_APP: Final = "rag"
"""The built-in answer pipeline's app; answer jobs (``POST /v1/jobs``) run through it."""
BUILT_IN_TARGET: Final = "ragserve:rag"
"""``--app NAME=ragserve:rag``: another instance of the built-in pipeline (a model class)."""
ANSWER_QUEUE: Final = "answer"
INGEST_QUEUE: Final = "ingest"
APP_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
"""App names are also queue names (pgqueuer entrypoints; ``@`` marks a canary queue)."""

CONFIG_KEYS: Final = frozenset(
    {"tags", "metadata", "run_name", "configurable", "recursion_limit", "max_concurrency"}
)
"""The ``RunnableConfig`` keys a submission may set (callbacks and the like are not JSON)."""

Adapter = Literal["answer", "runnable"]


class InputRejected(InvalidInput):
    """A submission's ``input`` or ``config`` fails its checks; ``errors`` in pydantic's shape
    (``loc`` starting at the body's field, ``msg``, ``type``), for the API's usual 422."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


def _rejected(field_name: str, message: str, type_: str = "value_error") -> InputRejected:
    return InputRejected([{"loc": ("config", field_name), "msg": message, "type": type_}])


@dataclass(frozen=True)
class AppSpec:
    name: str
    target: str
    """``module:attribute``, or ``ragserve:rag`` for the built-in pipeline."""

    @property
    def built_in(self) -> bool:
        return self.target == BUILT_IN_TARGET


def parse_app_specs(text: str | None, flags: Iterable[str] = ()) -> list[AppSpec]:
    """``RAGSERVE_APPS`` (``;``-separated) and then ``--app`` flags; a later name wins."""
    items = [part for part in (text or "").split(";") if part.strip()] + list(flags)
    specs: dict[str, AppSpec] = {}
    for item in items:
        name, sep, target = item.strip().partition("=")
        name, target = name.strip(), target.strip()
        module, colon, attribute = target.partition(":")
        if not sep or not colon or not module or not attribute:
            raise ConfigurationError(
                f"RAGSERVE_APPS / --app: {item.strip()!r} is not NAME=module:attribute"
            )
        if not APP_NAME.match(name):
            raise ConfigurationError(
                f"RAGSERVE_APPS / --app: app name {name!r} must match {APP_NAME.pattern}"
            )
        specs[name] = AppSpec(name, target)
    if RAG_APP in specs:
        raise ConfigurationError(f"RAGSERVE_APPS / --app: {RAG_APP!r} is the built-in app's name")
    return list(specs.values())


def declared_queues(names: Iterable[str]) -> list[str]:
    """The queues of a process serving the apps ``names`` (besides ``rag``): ``answer`` (the
    app ``rag``), ``ingest``, then one per app, named like it."""
    found = [ANSWER_QUEUE, INGEST_QUEUE]
    return found + [name for name in names if name not in found and name != RAG_APP]


def select_queues(declared: Sequence[str], wanted: Iterable[str]) -> list[str]:
    """The queues a worker serves: ``wanted`` (queue names; ``rag`` means ``answer``), by
    default every declared one; ``ConfigurationError`` for a queue no app here runs."""
    chosen: list[str] = []
    for name in wanted:
        queue = ANSWER_QUEUE if name == RAG_APP else name
        if queue not in declared:
            raise ConfigurationError(
                f"--queue {name}: no such queue here (queues: {', '.join(declared)});"
                " declare its app with --app or RAGSERVE_APPS"
            )
        if queue not in chosen:
            chosen.append(queue)
    return chosen or list(declared)


def load_runnable(target: str) -> Runnable[Any, Any]:
    """Import ``module:attribute`` (dots in the attribute walk into it) as a Runnable."""
    module_name, _, attribute = target.partition(":")
    # As uvicorn does: modules next to where the command runs are importable.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"app {target!r} cannot be loaded: {exc}") from exc
    if not isinstance(value, Runnable):
        raise ConfigurationError(
            f"app {target!r} is a {type(value).__name__}, not a LangChain Runnable"
        )
    return value


def worker_queues(settings: Settings) -> list[str]:
    """``RAGSERVE_WORKER_QUEUES`` (``--queue``) as a list; empty: every queue."""
    return [q.strip() for q in (settings.worker_queues or "").split(",") if q.strip()]


def load_apps(settings: Settings) -> dict[str, Runnable[Any, Any]]:
    """The Runnables of ``RAGSERVE_APPS`` by name (built-in instances left out), after checking
    the declarations and ``RAGSERVE_WORKER_QUEUES``: every mistake is a one-line
    ``ConfigurationError`` before anything starts."""
    specs = parse_app_specs(settings.apps)
    select_queues(declared_queues(spec.name for spec in specs), worker_queues(settings))
    return {spec.name: load_runnable(spec.target) for spec in specs if not spec.built_in}


def app_llm_settings(settings: Settings, name: str, environ: Mapping[str, str]) -> Settings:
    """``settings`` with ``RAGSERVE_APP_<NAME>_LLM_*`` in place of ``RAGSERVE_LLM_*``
    (``NAME`` upper-cased, ``-`` as ``_``): the model class of a built-in ``rag`` instance."""
    prefix = f"{ENV_PREFIX}APP_{name.upper().replace('-', '_')}_"
    overrides = {
        field_name: environ[prefix + field_name.upper()]
        for field_name in Settings.model_fields
        if field_name.startswith("llm_") and environ.get(prefix + field_name.upper())
    }
    if not overrides:
        return settings
    values = {k: getattr(settings, k) for k in Settings.model_fields}
    try:
        return Settings.model_validate({**values, **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        variable = prefix + str(first["loc"][0]).upper() if first["loc"] else prefix + "LLM_*"
        raise ConfigurationError(f"{variable}: {first['msg']}") from None


def schema_of(runnable: Runnable[Any, Any], which: Literal["input", "output"]) -> dict[str, Any]:
    """The Runnable's JSON schema; ``{}`` (anything) when it cannot say.

    Some Runnables build schemas that pydantic cannot render (arbitrary types, forward
    references); a schema is a description, so a broken one must not break ``GET /v1/apps``.
    """
    try:
        schema = (
            runnable.get_input_jsonschema()
            if which == "input"
            else runnable.get_output_jsonschema()
        )
        json.dumps(schema)
    except Exception as exc:
        log.warning(
            "app schema unavailable",
            extra={"event": "app.schema", "which": which, "error": repr(exc)},
        )
        return {}
    return dict(schema)


@dataclass(frozen=True)
class App:
    """One served Runnable and how its jobs run."""

    name: str
    runnable: Runnable[Any, Any]
    queue: str
    adapter: Adapter
    """``answer``: the built-in pipeline's event stream (sources, token, done) and result
    ``{answer, sources}``; ``runnable``: any Runnable, driven by ``astream_events``."""
    target: str
    fingerprint: str | None = None
    """What keys cached results of a built-in instance (its answerer's name); None: no cache."""
    input_schema: dict[str, Any] = field(default_factory=dict)
    output_schema: dict[str, Any] = field(default_factory=dict)
    _input_model: type[BaseModel] | None = None

    @classmethod
    def of_runnable(cls, name: str, runnable: Runnable[Any, Any], target: str) -> App:
        model: type[BaseModel] | None = None
        try:
            schema = runnable.get_input_schema()
            if isinstance(schema, type) and issubclass(schema, BaseModel):  # not pydantic.v1
                model = schema
        except Exception:  # an odd Runnable: no validation before the job (see schema_of)
            model = None
        return cls(
            name=name,
            runnable=runnable,
            queue=name,
            adapter="runnable",
            target=target,
            input_schema=schema_of(runnable, "input"),
            output_schema=schema_of(runnable, "output"),
            _input_model=model,
        )

    @classmethod
    def of_pipeline(cls, name: str, pipeline: Runnable[Any, Any], answerer_name: str) -> App:
        """The built-in pipeline (``rag`` and its model classes)."""
        return cls(
            name=name,
            runnable=pipeline,
            queue=ANSWER_QUEUE if name == RAG_APP else name,
            adapter="answer",
            target=BUILT_IN_TARGET,
            fingerprint=answerer_name,
            input_schema=AnswerRequest.model_json_schema(),
            output_schema=AnswerResult.model_json_schema(),
            _input_model=AnswerRequest,
        )

    def check_input(self, value: Any) -> Any:
        """``value`` as the job stores it, or ``InvalidInput`` naming the failing field.

        The Runnable gets the input as sent (it coerces it itself); the built-in pipeline
        gets it normalised (defaults filled in), as answer jobs always did.
        """
        if self._input_model is None:
            return value
        try:
            checked = self._input_model.model_validate(value)
        except ValidationError as exc:
            raise InputRejected(
                [
                    {"loc": ("input", *error["loc"]), "msg": error["msg"], "type": error["type"]}
                    for error in exc.errors(include_url=False)
                ]
            ) from None
        except Exception:  # a schema that cannot validate: let the Runnable judge
            return value
        if self.adapter == "answer":
            return checked.model_dump(mode="json")
        return value


def check_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A submission's ``config``: only JSON-able ``RunnableConfig`` keys (422 otherwise)."""
    if config is None:
        return {}
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        allowed = ", ".join(sorted(CONFIG_KEYS))
        raise _rejected(unknown[0], f"not allowed (allowed: {allowed})", "extra_forbidden")
    for key in ("metadata", "configurable"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise _rejected(key, "must be an object")
    if config.get("tags") is not None and not (
        isinstance(config["tags"], list) and all(isinstance(t, str) for t in config["tags"])
    ):
        raise _rejected("tags", "must be a list of strings")
    for key in ("recursion_limit", "max_concurrency"):
        value = config.get(key)
        if value is not None and (type(value) is not int or value < 1):
            raise _rejected(key, "must be a positive integer")
    return dict(config)


class AppRegistry:
    """The apps of this process, by name (``ragserve.services`` always includes ``rag``)."""

    def __init__(self, apps: Iterable[App]) -> None:
        self._apps = {app.name: app for app in apps}

    def __iter__(self) -> Any:
        return iter(self._apps.values())

    def __contains__(self, name: object) -> bool:
        return name in self._apps

    def get(self, name: str) -> App:
        app = self._apps.get(name)
        if app is None:
            raise NotFound(f"app {name!r} not found (GET /v1/apps lists them)")
        return app

    def queue_of(self, kind: str, app: str | None) -> str:
        """The queue of a job: its app's, else the one named like its kind (ingest)."""
        if app is not None and app in self._apps:
            return self._apps[app].queue
        if app is not None:  # an app this process does not serve: its default queue
            return ANSWER_QUEUE if app == RAG_APP else app
        return kind

    def queues(self) -> list[str]:
        """Every queue of this process's jobs: ``answer``, ``ingest`` and the apps' own."""
        return declared_queues(app.queue for app in self._apps.values())
