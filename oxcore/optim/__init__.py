"""Optimizers, gradient clipping and learning-rate schedules (``mlx.optimizers``' shape).

An optimizer is a pure function of ``(params, grads, state)`` underneath (``init`` and
``apply``, usable inside ``oxcore.compile``), with MLX's stateful ``opt.update(model, grads)``
on top. A schedule may be passed wherever a learning rate is.

Example:
    >>> import oxcore as ox
    >>> from oxcore import nn, optim
    >>> model = nn.Linear(3, 1)
    >>> x, y = ox.random.normal((16, 3), seed=0), ox.random.normal((16, 1), seed=1)
    >>> loss_and_grad = nn.value_and_grad(model, lambda: nn.losses.mse_loss(model(x), y))
    >>> opt = optim.AdamW(optim.cosine_decay(1e-1, 50))
    >>> first = loss_and_grad()[0].item()
    >>> for _ in range(50):
    ...     loss, grads = loss_and_grad()
    ...     opt.update(model, grads)
    >>> loss.item() < first, opt.step
    (True, 50)
"""

from ._optimizers import (SGD, Adagrad, Adam, AdamW, Lion, Optimizer, RMSprop, clip_grad_norm, state_from_items,
                          state_items)
from .schedules import cosine_decay, exponential_decay, join_schedules, linear_schedule, step_decay

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Lion", "clip_grad_norm", "state_items",
           "state_from_items", "exponential_decay", "step_decay", "cosine_decay", "linear_schedule", "join_schedules"]
