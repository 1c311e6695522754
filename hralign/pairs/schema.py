"""The pairs HDF5 layout (docs/design.md, "Pairs file"): names, dtypes and version in one place.

Flat layout: every clip of a domain lives in one frames dataset, indexed by
``clip_start``/``clip_length``; never one group per clip (HDF5 metadata cost grows with groups).
"""

from __future__ import annotations

FORMAT_NAME = "pairs"
FORMAT_VERSION = 1
FORMAT_ATTR = "hralign_format"
VERSION_ATTR = "hralign_version"

DOMAINS = ("human", "robot")
TASKS = "tasks"
PAIRS = "pairs"
SPLIT = "split"
FRAMES = "frames"
CLIP_START = "clip_start"
CLIP_LENGTH = "clip_length"
CLIP_TASK = "clip_task"
ACTIONS = "actions"  # optional, per frame, float32 [N, A]
STATE = "state"  # optional, per frame, float32 [N, S]
CLIP_SPLIT = "clip_split"  # optional, per clip, uint8 [C]: 0 train, 1 validation (files without pairs, e.g. imports)
CLIP_INDEX = (CLIP_START, CLIP_LENGTH, CLIP_TASK)
PER_FRAME_OPTIONAL = (ACTIONS, STATE)

SPLIT_TRAIN = 0
SPLIT_VAL = 1
COMPRESSIONS = (None, "gzip", "lzf", "blosc")  # blosc: hdf5plugin.Blosc(zstd 3, bit shuffle)
