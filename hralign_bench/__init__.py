"""MetaWorld benchmark experiments built on hralign's public stages (the ``[sim]`` extra).

Kept beside the library, as timm keeps ``benchmark.py`` beside ``timm``: ``hralign_bench`` imports
``hralign``; no module of ``hralign`` imports ``hralign_bench`` except ``hralign.cli.bench``, the
command front that ``hralign bench`` loads on demand.

* :mod:`hralign_bench.v1`: the same-tasks table (``hralign bench metaworld``);
* :mod:`hralign_bench.v2`: corpus base, pair tasks, held-out evaluation tasks, 95% intervals
  (``hralign bench metaworld-v2``);
* :mod:`hralign_bench.draws`: two collect seeds of v2 side by side (``--report --compare``);
* :mod:`hralign_bench.figure`: success and its interval per row and protocol (``--report --figure``);
* :mod:`hralign_bench.alignment`, :mod:`hralign_bench.tasksets`, :mod:`hralign_bench.stages`: the
  diagnostics, the task sets and the stage helpers they share.

Submodules are imported on use: importing this package imports nothing heavy.
"""
