"""How the house is layered, and what every process loads before it serves.

Imports run one way, from the faces down to the core (tests/test_imports.py holds every
package to it):

- core: config, fields, metrics (pure statistics), console, store (the model and dataset
  store machines share), db, statements, templating, errors. Knows no domain.
- engine: jobs (the job table, kinds registry, runner, child process, lease, reaper, sweep,
  the Celery app). Knows no domain: a job's kind and what happens to its round are
  registered with it.
- domains, each above the ones before it: auth; prompts; queue; labeling; agreement;
  registry; exports; evaluation.
- the loop: rounds (stages, schedule, stage config, the /jobs pages), then loop (/loop and
  the reward-hacking watch).
- faces: models (every table), wiring, health, home, demo, main, worker, cli.

The simulated labelers are a client of the API, in a package of their own (simulation/),
which adds `rlhf-studio simulate` through an entry point.

Where a lower layer must call up (a task kind's submit handler, a job kind's body, a round's
next stage, a flag that holds a promotion), the higher one registers itself when imported.
`wire()` imports all of them, so every process (web, worker, CLI, a test) sees the same
registries whichever module it started from.
"""

import importlib
import importlib.util

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("config", "fields", "metrics", "console", "store", "db", "statements",
              "templating", "errors")),
    ("engine", ("jobs",)),
    ("domains", ("auth", "prompts", "queue", "labeling", "agreement", "registry", "exports",
                 "evaluation")),
    ("loop", ("rounds", "loop")),
    ("faces", ("models", "wiring", "health", "home", "demo", "main", "worker", "cli")),
)
# Every package of app/ from the lowest to the highest: a package imports only those before it.
ORDER: tuple[str, ...] = tuple(p for _, packages in LAYERS for p in packages)
DOMAINS: tuple[str, ...] = tuple(p for layer, packages in LAYERS
                                 if layer in ("engine", "domains", "loop") for p in packages)

# Modules that register job kinds (`@job_kind`).
KIND_MODULES = (
    "app.prompts.jobs", "app.exports.tasks", "app.registry.generation",
    "app.evaluation.jobs", "app.rounds.jobs", "app.rounds.judged",
)
# Domains' Celery tasks (a worker consumes them; the web process sends them).
TASK_MODULES = tuple(f"app.{d}.tasks" for d in DOMAINS
                     if importlib.util.find_spec(f"app.{d}.tasks") is not None)
# Modules that register a handler with a lower layer when imported: the round hook the
# runner calls, the submit handler of compare tasks, the watch's flags that hold a round.
SELF_REGISTERING = ("app.queue.candidates", "app.rounds.service", "app.evaluation.judging",
                    "app.loop.watch")


def wire() -> None:
    """Import every table, job kind, task and self-registering module (idempotent)."""
    importlib.import_module("app.models")
    for name in (*KIND_MODULES, *TASK_MODULES, *SELF_REGISTERING):
        importlib.import_module(name)
