"""The paired-clip format: schema, writer, lazy reader, validation, datasets, synthetic demo data."""

from hralign.pairs.reader import PairsFile, open_h5_readonly
from hralign.pairs.writer import PairsWriter

__all__ = ["PairsFile", "PairsWriter", "open_h5_readonly"]
