"""Dataset importers for ``hralign pairs import``: one module per layout, one ClipSource contract (``source.py``)."""
