"""HR-Align: the contrastive loss, language-query pooling and the adapter training loop.

See docs/design.md ("align") for how the loss, the feature cache and the trainer fit together.
"""
