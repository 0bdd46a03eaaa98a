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

from .additive import AdditiveHead
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
        return self._gradient_at(self.cut)

    def gradient_of(self, images: Tensor) -> Tensor:
        """``du/dA`` at the layer for other images of the batch (a noisy copy ``x + delta``), same targets.

        One forward and one backward of the network: the copy is a different game, with its own players.
        """
        assert self.cut.recut is not None  # both splits and every layout give their cuts one
        return self._gradient_at(self.cut.recut(images))

    def _gradient_at(self, cut: Cut) -> Tensor:
        """``du/dA`` at a cut's activations, through its head; 0 in a null game (``u`` reads only outputs the
        layer does not reach)."""
        activations = cut.activations.detach().clone().requires_grad_()
        with torch.enable_grad():
            value = self.payoff(cut.head(activations, None))
            if not value.requires_grad:
                return torch.zeros_like(activations)
            grad, = torch.autograd.grad(value.sum(), activations)
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

        Ordering ``pi`` visits the coalitions ``{}, {pi_1}, {pi_1, pi_2}, ..., N``: K + 1 values. A channel whose
        map is zero is a null player (joining changes no coalition): its marginals are 0 without evaluation,
        and the ordering visits only the coalitions of the other channels.
        """
        marginals = self.activations.new_zeros(len(self.activations), *orderings.shape)
        for image, activations in enumerate(self.activations):
            active = activations.flatten(1).ne(0).any(1)
            kept = orderings[active[orderings]].view(len(orderings), int(active.sum()))  # null players left out
            per_chunk = max(1, self.batch_size // (kept.shape[1] + 1))
            marginals[image][:, active] = torch.cat([self._ordering_marginals(image, chunk)
                                                     for chunk in kept.split(per_chunk)])
        return marginals

    def _ordering_marginals(self, image: int, orderings: Tensor) -> Tensor:
        """Marginals of one image along a chunk of orderings of some channels, in the order of the channels' indices."""
        count, players = orderings.shape
        if self._additive is None:  # coalition s of ordering p holds its first s channels: masks[p, s, pi_j] = j < s
            steps = torch.arange(players + 1, device=orderings.device)
            joined = (steps[None, :, None] > steps[None, None, :-1]).expand(count, -1, -1)
            masks = torch.zeros(count, players + 1, self.num_players, dtype=torch.bool, device=orderings.device)
            masks.scatter_(2, orderings[:, None, :].expand(-1, players + 1, -1), joined)
            values = self._values(image, masks.flatten(0, 1).to(self.activations)).view(count, players + 1)
        else:
            values = self._tail_values(image, self._running_sums(image, orderings).flatten(0, 1))
            values = values.view(count, players + 1)
        gains = values.diff(dim=1)
        return gains.gather(1, orderings.argsort(1))  # argsort: where each channel, by index, joins

    def _running_sums(self, image: int, orderings: Tensor) -> Tensor:
        """Pre-activations ``z`` of the K + 1 coalitions along each ordering, ``[P, K + 1, D]``.

        ``z(empty)``, then one channel term added per step. On a CPU, when a step adds long rows (a hidden
        layer's pre-activations), adding all orderings' rows at once per step is several times faster than
        ``cumsum``, which walks the middle dimension one element at a time.
        """
        z0, terms, _ = self._parts()[1]
        sums = torch.cat([z0[image].expand(len(orderings), 1, -1), terms[image][orderings]], 1)
        if not sums.is_cpu or sums[:, 0].numel() < 1024:
            return sums.cumsum(1)
        for step in range(1, sums.shape[1]):
            sums[:, step] += sums[:, step - 1]
        return sums

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

    def _parts(self) -> tuple[AdditiveHead, tuple[Tensor, Tensor, torch.Size]]:
        """The additive head and ``_additive``'s terms, for the code that runs only when the head is additive."""
        additive, parts = self.cut.additive, self._additive
        assert additive is not None and parts is not None
        return additive, parts

    def _tail_values(self, image: int, z: Tensor) -> Tensor:
        """``u`` of the head's tail applied to pre-activations ``z`` ``[n, D]`` of one image."""
        additive, (_, _, shape) = self._parts()
        with torch.no_grad():
            if additive.is_output and is_linear(self.utility):
                return z[:, 0]
            rows = torch.full((len(z),), image, device=z.device)
            if additive.readout is not None and is_linear(self.utility):  # y_c needs one row of the readout
                return additive.target_logit(z, self.cut.tail_skips(rows), shape, self.target[image])
            logits = additive.logits(z, self.cut.tail_skips(rows), shape)
            return self.payoff(logits, rows)

