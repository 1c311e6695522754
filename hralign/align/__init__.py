"""HR-Align: the contrastive loss, language-query pooling and the adapter training loop.

See docs/design.md ("HR-Align loss", "The training layer") and docs/adapt.md for how the loss,
the feature cache and the trainer fit together.
"""
