"""The channel game ``v(S) = u(F(A_S))``: players are the K activation maps of one layer.

``A_S`` keeps the channels in ``S`` and zeroes the others. Coalitions are evaluated in batches of
``batch_size`` rows on the model's device; when the head is additive up to its first affine layer
(see ``additive``) a coalition is a sum of channel terms instead of a pass through the head.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from .deeplift import rescale_rule, utility_multiplier, warn_uncovered
from .split import Cut
from .utility import CallableUtility, Utility, is_linear, tensor_leaves


class ChannelGame:
    """The game of one batch of images, with everything a CAM method may ask of it.

    ``utility``: a named utility of logits and ``target`` (the class of each image), or a
    ``CallableUtility`` of whatever the head returns (then ``target`` is -1: no class).
    """

    def __init__(self, cut: Cut, utility: Utility | CallableUtility, target: Tensor, images: Tensor,
                 batch_size: int = 1024, logits: Any = None):
        self.cut, self.utility, self.target, self.images = cut, utility, target, images
        self.batch_size = batch_size
        self.activations = cut.activations.detach()
        if logits is not None:  # F(A) is already known: v(N) costs nothing
            self.score = self.payoff(logits)

    @property
    def num_players(self) -> int:
        return self.activations.shape[1]

    def payoff(self, outputs: Any, rows: Tensor | None = None) -> Tensor:
        """``u(y)`` of a batch of outputs (logits, or whatever the model returns); row ``i`` is image ``rows[i]``."""
        if rows is None:
            rows = torch.arange(len(self.target), device=self.target.device)
        if isinstance(self.utility, CallableUtility):
            return self.utility(outputs, rows)
        return self.utility(outputs, self.target[rows])

    def value(self, activations: Tensor, rows: Tensor | None = None) -> Tensor:
        """``u(F(A'))`` for a batch of activations (row ``i`` belongs to image ``rows[i]``)."""
        return self.payoff(self.cut.head(activations, rows), rows)

    def network_value(self, images: Tensor, rows: Tensor) -> Tensor:
        """``u(f(x'))`` of the whole network on new images (row ``i`` from image ``rows[i]``)."""
        return self.payoff(self.cut.network(images, rows), rows)

    @cached_property
    def score(self) -> Tensor:
        """``v(N) = u(F(A))``."""
        with torch.no_grad():
            return self.value(self.activations)

    @cached_property
    def baseline(self) -> Tensor:
        """``v(empty) = u(F(0))``."""
        with torch.no_grad():
            return self.value(torch.zeros_like(self.activations))

    @cached_property
    def gradient(self) -> Tensor:
        """``g = du/dA``, one backward pass through the head."""
        activations = self.activations.clone().requires_grad_()
        with torch.enable_grad():
            value = self.value(activations)
            if not value.requires_grad:  # u reads only outputs the layer does not reach: a null game
                return torch.zeros_like(activations)
            grad, = torch.autograd.grad(value.sum(), activations)
        return grad

    def gradient_of(self, images: Tensor) -> Tensor:
        """``du/dA`` at the layer for other images of the batch (a noisy copy ``x + delta``), same targets.

        One forward and one backward of the network: the copy is a different game, with its own players.
        """
        cut = self.cut.recut(images)
        activations = cut.activations.detach().clone().requires_grad_()
        with torch.enable_grad():
            grad, = torch.autograd.grad(self.payoff(cut.head(activations)).sum(), activations)
        return grad

    def gradient_and_hvp(self) -> tuple[Tensor, Tensor]:
        """``g`` and the Hessian-vector product ``H A``: a backward pass, then the backward of ``g . A``.

        Images never interact in the head, so one batched double-backward gives each image its own ``H A``.
        """
        activations = self.activations.clone().requires_grad_()
        with torch.enable_grad():
            value = self.value(activations)
            if not value.requires_grad:  # a null game
                return torch.zeros_like(activations), torch.zeros_like(activations)
            grad, = torch.autograd.grad(value.sum(), activations, create_graph=True)
            if not grad.requires_grad:  # g does not depend on A (an affine head, a linear u): H = 0
                return grad.detach(), torch.zeros_like(grad)
            hvp, = torch.autograd.grad(grad, activations, grad_outputs=self.activations, allow_unused=True)
        return grad.detach(), torch.zeros_like(grad) if hvp is None else hvp

    def deeplift_multipliers(self) -> Tensor:
        """DeepLIFT-Rescale multipliers ``m = C(dA -> du) / dA`` through the head, reference ``A = 0``."""
        warn_uncovered(self.cut.uncovered)
        batch = self.activations.shape[0]
        pair = torch.cat([self.activations, torch.zeros_like(self.activations)]).requires_grad_()
        rows = torch.arange(batch, device=pair.device).repeat(2)
        with torch.enable_grad(), rescale_rule():
            outputs = self.cut.head(pair, rows)
        with torch.enable_grad():
            values = self.payoff(outputs, rows)
            if not values.requires_grad:  # a null game
                return torch.zeros_like(self.activations)
            # every output tensor the activations reach (an auxiliary head before the layer reaches none)
            leaves = [leaf for leaf in tensor_leaves(outputs) if leaf.requires_grad]
            multiplier, = torch.autograd.grad([leaf[:batch] for leaf in leaves], pair,
                                              utility_multiplier(leaves, values), allow_unused=True)
        return torch.zeros_like(self.activations) if multiplier is None else multiplier[:batch]

    def coalition_values(self, masks: Tensor) -> Tensor:
        """``v(S)`` for the same coalitions ``masks`` ``[n, K]`` (1 = present) in every image: ``[B, n]``."""
        masks = masks.to(self.activations)
        return torch.stack([torch.cat([self._values(image, chunk) for chunk in masks.split(self.batch_size)])
                            for image in range(len(self.activations))])

    def marginals(self, orderings: Tensor) -> Tensor:
        """Marginal contribution of each channel when it joins, along each ordering ``[P, K]``: ``[B, P, K]``.

        Ordering ``pi`` visits the coalitions ``{}, {pi_1}, {pi_1, pi_2}, ..., N``: K + 1 values.
        """
        per_chunk = max(1, self.batch_size // (self.num_players + 1))
        return torch.stack([torch.cat([self._ordering_marginals(image, chunk)
                                       for chunk in orderings.split(per_chunk)])
                            for image in range(len(self.activations))])

    def _ordering_marginals(self, image: int, orderings: Tensor) -> Tensor:
        """Marginals of one image along a chunk of orderings, scattered back to channel order."""
        count, players = orderings.shape
        rank = orderings.argsort(1)  # position of each channel in its ordering
        if self._additive is None:
            steps = torch.arange(players + 1, device=orderings.device)
            masks = (rank[:, None, :] < steps[None, :, None]).flatten(0, 1)
            values = self._values(image, masks.to(self.activations)).view(count, players + 1)
        else:
            z0, terms, _ = self._additive
            running = terms[image][orderings].cumsum(1)
            prefix = torch.cat([torch.zeros_like(running[:, :1]), running], 1) + z0[image]
            values = self._tail_values(image, prefix.flatten(0, 1)).view(count, players + 1)
        gains = values.diff(dim=1)
        return gains.gather(1, rank)

    def _values(self, image: int, masks: Tensor) -> Tensor:
        """``v(S)`` of one image for a chunk of coalitions ``[n, K]``."""
        with torch.no_grad():
            if self._additive is not None:
                z0, terms, _ = self._additive
                return self._tail_values(image, z0[image] + masks @ terms[image])
            rows = torch.full((len(masks),), image, device=masks.device)
            return self.value(self.activations[image] * masks[:, :, None, None], rows)

    @cached_property
    def _additive(self) -> tuple[Tensor, Tensor, torch.Size] | None:
        """``(z(empty), t, shape of z)`` when the head is additive; only the target logit when ``u`` is too."""
        additive = self.cut.additive
        if additive is None:
            return None
        with torch.no_grad():
            z0, terms = additive.terms(self.activations)
        if additive.is_output and is_linear(self.utility):
            index = self.target[:, None, None].expand(-1, terms.shape[1], 1)
            return z0.gather(1, self.target[:, None]), terms.gather(2, index), z0.shape[1:]
        return z0.flatten(1), terms, z0.shape[1:]

    def _tail_values(self, image: int, z: Tensor) -> Tensor:
        """``u`` of the head's tail applied to pre-activations ``z`` ``[n, D]`` of one image."""
        with torch.no_grad():
            if self.cut.additive.is_output and is_linear(self.utility):
                return z[:, 0]
            rows = torch.full((len(z),), image, device=z.device)
            logits = self.cut.additive.logits(z, self.cut.tail_skips(rows), self._additive[2])
            return self.payoff(logits, rows)

