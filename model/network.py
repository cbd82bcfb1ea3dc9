"""The network: one shared BERT encoder, mean pooling, one linear head per task.

One forward pass serves every task: with a target the pair (target, quote) is encoded once and all heads read
the pooled vector; without one, the quote alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from diplotag.model.bert import BertConfig, BertEncoder

IGNORE = -100  # label value for "this task is not labelled on this row"; the loss masks it


@dataclass
class NetworkConfig:
    """Everything needed to rebuild the network's shape (weights live in safetensors)."""

    encoder: dict  # the encoder's BERT config (HF config.json keys; see model/bert.py)
    tasks: dict[str, int]  # task name -> number of labels, in schema order
    dropout: float = 0.1
    pooling: str = "mean"  # "mean" over non-padding tokens (what all-MiniLM-L6-v2 was trained with) or "cls"
    # Tasks that do not take a target (tone) pool over the quote's tokens only (segment B of a pair), so the
    # target's words do not enter their vector directly: the same quote keeps its tone whatever the target.
    quote_only_tasks: list[str] = field(default_factory=list)
    # per-task class weights for the loss (None = unweighted); not needed at inference, kept for the record
    class_weights: dict[str, list[float]] | None = field(default=None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        return cls(**data)


class MultiTaskClassifier(nn.Module):
    def __init__(self, config: NetworkConfig, encoder: BertEncoder | None = None):
        super().__init__()
        if config.pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {config.pooling!r}")
        self.config = config
        self.encoder = encoder if encoder is not None else BertEncoder(BertConfig.from_dict(config.encoder))
        hidden = self.encoder.config.hidden_size
        self.dropout = nn.Dropout(config.dropout)
        self.label_smoothing = 0.0  # a training-time setting, not part of the saved shape
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, n) for name, n in config.tasks.items()})
        for name, n in config.tasks.items():
            weights = (config.class_weights or {}).get(name)
            if weights is not None and len(weights) != n:
                raise ValueError(f"class_weights for {name!r} has {len(weights)} values, task has {n} labels")
            self.register_buffer(
                f"class_weight_{name}",
                torch.tensor(weights, dtype=torch.float32) if weights is not None else None,
                persistent=False,
            )

    @property
    def task_names(self) -> list[str]:
        return list(self.config.tasks)

    def pool(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled over all tokens, pooled over the quote's tokens). Without a target both are the same."""
        hidden = self.encoder(input_ids, attention_mask, token_type_ids)
        if self.config.pooling == "cls":
            return hidden[:, 0], hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        if not self.config.quote_only_tasks or token_type_ids is None:
            return pooled, pooled
        is_pair = (token_type_ids == 1).any(dim=1, keepdim=True)
        quote = torch.where(is_pair, (token_type_ids == 1).to(attention_mask.dtype), attention_mask) * attention_mask
        qmask = quote.unsqueeze(-1).to(hidden.dtype)
        return pooled, (hidden * qmask).sum(1) / qmask.sum(1).clamp(min=1.0)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Returns {"logits_<task>": [B, n_labels]...}, plus "loss" when labels ([B, n_tasks], IGNORE = missing)
        are given. The loss is the sum over tasks of each task's mean cross-entropy over its labelled rows."""
        pooled_all, pooled_quote = self.pool(input_ids, attention_mask, token_type_ids)
        pooled_all, pooled_quote = self.dropout(pooled_all), self.dropout(pooled_quote)
        out: dict[str, torch.Tensor] = {}
        loss = None
        for i, (name, head) in enumerate(self.heads.items()):
            logits = head(pooled_quote if name in self.config.quote_only_tasks else pooled_all)
            out[f"logits_{name}"] = logits
            if labels is not None:
                target = labels[:, i]
                if (target != IGNORE).any():
                    task_loss = F.cross_entropy(
                        logits.float(), target, weight=getattr(self, f"class_weight_{name}"), ignore_index=IGNORE,
                        label_smoothing=self.label_smoothing,
                    )
                else:  # keep the graph connected so DDP sees every parameter used
                    task_loss = logits.sum() * 0.0
                loss = task_loss if loss is None else loss + task_loss
        if loss is not None:
            out["loss"] = loss
        return out
