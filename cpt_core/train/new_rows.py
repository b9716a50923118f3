"""A learning rate of their own for the rows of newly added tokens (after a tokenizer extension).

The new rows live in the same tensor as the old ones (the input embedding and, when untied, lm_head), so they
cannot sit in their own optimizer group without splitting the embedding. For AdamW with no weight decay on
embeddings (``optim.py``) a per-row learning rate is the same as scaling that row's update: the optimizer
steps the whole tensor at the embeddings' LR, then each new row is moved ``ratio`` times as far from where it
was (``ratio = new_token_lr_mult / embedding_lr_mult``). New rows usually start from sub-token means and
must travel further than the trained ones, hence a larger LR.
"""

from __future__ import annotations


class NewRowsLR:
    """Rescales the update of rows ``first_new_id..`` of the vocabulary tensors by ``ratio`` at every step."""

    def __init__(self, model, first_new_id: int, ratio: float) -> None:
        tensors = [model.get_input_embeddings().weight]
        head = model.get_output_embeddings()
        if head is not None and head.weight is not tensors[0]:
            tensors.append(head.weight)
        self.tensors, self.first, self.ratio = tensors, first_new_id, ratio
        self._before: list = []

    def before_step(self) -> None:
        self._before = [t.detach()[self.first :].clone() for t in self.tensors]

    def after_step(self) -> None:
        import torch

        with torch.no_grad():
            for tensor, old in zip(self.tensors, self._before, strict=True):
                rows = tensor[self.first :]
                rows.copy_(old + self.ratio * (rows - old))
        self._before = []
