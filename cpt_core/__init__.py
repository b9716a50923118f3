"""cptflow's library: continued pre-training from crawl to promotion, with no orchestrator import.

Every stage is a plain function over folders: it reads the previous stage's output folder and writes its
own, finishing with a ``_manifest.json`` (see :mod:`cpt_core.stage`). Prefect wrappers live in ``tasks/``.
"""

__version__ = "0.1.0"
