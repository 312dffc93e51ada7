r"""Structure-aware single-coordinate perturbations of an evoexp :class:`~evoexp.models.SNN` (private helper).

Exact-mode finite differences need the loss at :math:`w \pm \varepsilon e_i` for every coordinate :math:`i`. For
an evoexp SNN most of the network is unchanged by such a perturbation, and the changed part has a known low-rank
form, so the *same* perturbed loss can be computed far more cheaply than by a full batched forward:

* input weight :math:`W_l[j, i]` (or bias :math:`b_l[j]`) of a feed-forward layer :math:`l`: the input current
  changes by :math:`\delta\,h_{l-1}[:, :, i]` (or :math:`\delta`) in column :math:`j` only, so only neuron
  :math:`j` of layer :math:`l` changes; it is simulated alone (one LIF "feature" per perturbation);
* the spikes of layer :math:`l` then change by :math:`\Delta s` in column :math:`j` only, so the next layer's
  current is ``base + Δs ⊗ W_{l+1}[:, j]`` (no GEMM), and later layers run in full on a folded batch;
* the readout is linear up to the reduction over time: its traces change by
  :math:`\mathrm{LI}(\Delta s) \otimes W_{out}[:, j]`, where :math:`\mathrm{LI}` is the leaky integration; a readout
  weight :math:`W_{out}[c, j]` (bias :math:`b_{out}[c]`) changes class :math:`c` only, by
  :math:`\delta\,\mathrm{LI}(s_j)` (:math:`\delta\,\mathrm{LI}(1)`);
* a recurrent layer mixes its neurons: perturbing its input weight or bias changes one current column, and the
  whole layer (and everything after it) is simulated on a folded batch. Perturbations of a recurrent weight are
  left to the generic ``vmap`` path.

Every value is a forward evaluation of the network's loss ``loss_fn(logits, targets)`` at the perturbed parameters
(with :math:`\delta = \mathrm{fl}(w_i \pm \varepsilon) - w_i`, the step the generic path takes), computed with the
model's own functional pieces (:func:`~evoexp.functional.lif.lif_sequence` — the forward loop training runs, with
each layer's ``bptt`` and held reset —, ``sequence_linear``, ``leaky_integrate``, ``readout_logits``); it differs
from a full forward only by floating-point rounding, so the central differences are true central differences of the
loss. A held (replayed) detached reset is a constant of the layer: a perturbation changes the layer's spikes but
not its reset term, exactly as in the model's forward. The path is used only for models whose type is exactly
``SNN`` (hidden ``LIFLayer``\ s, a ``LeakyReadout``, no hooks or patched ``forward``), and only after the caller
(:meth:`~evoexp.verification._batched.LossProblem.coordinates`) has cross-checked a seeded sample of its perturbed
losses against the generic path for the current :meth:`SNNCoordinates.state_key`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeGuard, TypeVar, cast

import torch
from torch import Tensor, nn

from evoexp.functional.lif import leaky_integrate, lif_sequence, readout_logits, sequence_linear
from evoexp.models.snn import SNN, LeakyReadout, LIFLayer

__all__ = ["SNNCoordinates"]

_MAX_PERTURBATIONS_PER_CHUNK = 1024
_CACHE_BYTES = 64 * 2**20


_M = TypeVar("_M", bound=nn.Module)


def _plain(module: nn.Module, cls: type[_M]) -> TypeGuard[_M]:
    """True if ``module`` is exactly ``cls`` with no hooks and no instance-level ``forward`` override."""
    return (
        type(module) is cls
        and "forward" not in vars(module)
        and not module._forward_hooks
        and not module._forward_pre_hooks
    )


class SNNCoordinates:
    """Losses of an evoexp SNN at single-coordinate perturbations, computed structure-aware (module docstring).

    Build with :meth:`build`, which returns ``None`` when the model is not a plain evoexp SNN.

    Args:
        model: The verification copy (an exact ``evoexp.models.SNN``).
        x: Input ``[batch, time, channels]`` in the model's dtype.
        batch_losses: Maps stacked outputs ``[K, batch, classes]`` to ``K`` losses (the loss function, batched).
        memory_budget: Bound in bytes on the temporaries of one chunk of perturbations.
    """

    def __init__(
        self, model: SNN, x: Tensor, batch_losses: Callable[[Tensor], Tensor], *, memory_budget: int
    ) -> None:
        self.model = model
        self.x = x
        self.batch_losses = batch_losses
        self.memory_budget = memory_budget
        self._base: dict[str, Any] | None = None
        self._base_key: tuple[Any, ...] | None = None

    @classmethod
    def build(
        cls, model: nn.Module, inputs: tuple[Any, ...], batch_losses: Callable[[Tensor], Tensor], *, memory_budget: int
    ) -> SNNCoordinates | None:
        """Return an evaluator for a plain evoexp SNN with one tensor input, else ``None``."""
        if len(inputs) != 1 or not isinstance(inputs[0], Tensor) or not _plain(model, SNN):
            return None
        readout, hidden = model.readout, list(model.hidden)
        if not _plain(readout, LeakyReadout) or not all(_plain(m, LIFLayer) for m in hidden):
            return None
        # Stochastic (escape-noise) layers take the generic path.
        if any(m.params.escape_noise is not None for m in cast("list[LIFLayer]", hidden)):
            return None
        x = inputs[0]
        if x.dim() != 3 or x.shape[2] != model.input_size:
            return None
        return cls(model, x.to(readout.weight.dtype), batch_losses, memory_budget=memory_budget)

    @property
    def hidden(self) -> list[LIFLayer]:
        """The model's hidden layers (checked plain ``LIFLayer`` modules by :meth:`build`)."""
        return cast("list[LIFLayer]", list(self.model.hidden))

    @property
    def readout(self) -> LeakyReadout:
        """The model's readout (checked a plain ``LeakyReadout`` by :meth:`build`)."""
        return self.model.readout

    def supports(self, name: str) -> bool:
        """Whether coordinates of parameter ``name`` are handled here (all but recurrent weights)."""
        parts = name.split(".")
        if parts[0] == "readout":
            return parts[1:] in (["weight"], ["bias"])
        return len(parts) == 3 and parts[0] == "hidden" and parts[2] in ("weight", "bias")

    # -- unperturbed state -------------------------------------------------------------------------------------

    def state_key(self) -> tuple[Any, ...]:
        """Everything the losses depend on besides the perturbation: a changed key invalidates cached states.

        Covers each layer's constants (``params``, surrogate, smooth mode, ``bptt``, held reset), the readout's
        ``beta`` and ``mode``, and the storage and version counter of every parameter and of the input, so that
        in-place edits (``p.mul_(...)`` under ``no_grad``, ``load_state_dict``) are seen too; writes through
        ``p.data`` bypass version counters.
        """

        def tensor_key(t: Tensor | None) -> tuple[Any, ...] | None:
            return None if t is None else (t.data_ptr(), t._version, tuple(t.shape), t.dtype)

        hidden = tuple((m.smooth, m.surrogate, m.params, m.bptt, tensor_key(m.replay_reset)) for m in self.hidden)
        readout = (self.readout.beta, self.readout.mode)
        params = tuple((name, tensor_key(p)) for name, p in self.model.named_parameters())
        return (hidden, readout, params, tensor_key(self.x))

    def base(self) -> dict[str, Any]:
        """Unperturbed state, stored time-major (``[T, B, features]`` contiguous) for cheap column gathers.

        Keys: ``inputs`` (input of every hidden layer and of the readout), ``currents`` (of every hidden layer),
        ``traces`` (readout traces) and ``logits`` (``[B, C]``).
        """
        key = self.state_key()
        if self._base is None or self._base_key != key:
            with torch.no_grad():
                inputs, currents = [self.x], []
                for layer in self.hidden:
                    current = sequence_linear(inputs[-1], layer.weight, layer.bias)
                    currents.append(current)
                    inputs.append(self._lif(layer, current, layer.replay_reset))
                readout = self.readout
                traces = leaky_integrate(sequence_linear(inputs[-1], readout.weight, readout.bias), readout.beta)
                logits = readout_logits(traces, readout.mode)

            def time_major(t: Tensor) -> Tensor:
                return t.transpose(0, 1).contiguous()

            self._base = {
                "inputs": [time_major(h) for h in inputs],
                "currents": [time_major(c) for c in currents],
                "traces": time_major(traces),
                "logits": logits,
            }
            self._base_key = key
        return self._base

    def base_loss(self) -> Tensor:
        """Loss of the unperturbed network computed by this evaluator (compared with the model's forward)."""
        return self.batch_losses(self.base()["logits"].unsqueeze(0))[0]

    @staticmethod
    def _lif(layer: LIFLayer, current: Tensor, replay: Tensor | None) -> Tensor:
        """The layer's forward from its input current ``[B', T, H']`` (``replay``: its held reset, same shape)."""
        return lif_sequence(
            current,
            layer.params,
            layer.surrogate,
            recurrent_weight=layer.recurrent_weight,
            smooth=layer.smooth,
            bptt=layer.bptt,
            replay_reset=replay,
        )

    @staticmethod
    def _replay(layer: LIFLayer, k: int, columns: Tensor | None = None) -> Tensor | None:
        """The layer's held reset for ``k`` perturbations folded into the batch, or its ``columns``.

        Folded rows are ``b * k + i`` (perturbation ``i`` of sample ``b``); ``columns`` picks one neuron per
        perturbation (the feed-forward single-neuron path).
        """
        replay = layer.replay_reset
        if replay is None:
            return None
        if columns is not None:
            return replay.index_select(2, columns)
        return replay.repeat_interleave(k, dim=0)

    # -- perturbed losses --------------------------------------------------------------------------------------

    def per_perturbation_bytes(self, name: str) -> int:
        """Rough bytes of temporaries per perturbation of parameter ``name`` (for chunking)."""
        batch, steps, _ = self.x.shape
        hidden = self.hidden
        layer = len(hidden) if name.startswith("readout") else int(name.split(".")[1])
        start = layer if layer < len(hidden) and hidden[layer].recurrent else layer + 1
        widths = sum(m.out_features for m in hidden[start:])
        classes = self.readout.weight.shape[0]
        return self.x.element_size() * batch * steps * (6 + 5 * widths + 3 * classes)

    def perturbations_per_chunk(self, name: str) -> int:
        """Perturbations evaluated together: cache-sized, within the memory budget."""
        per = max(1, self.per_perturbation_bytes(name))
        return int(max(1, min(_MAX_PERTURBATIONS_PER_CHUNK, self.memory_budget // per, max(64, _CACHE_BYTES // per))))

    def losses(self, name: str, index: Tensor, delta: Tensor) -> Tensor:
        """Losses with flat coordinate ``index[k]`` of parameter ``name`` shifted by ``delta[k]`` (one chunk).

        Args:
            name: A supported parameter name (:meth:`supports`).
            index: 1-D long tensor of flat coordinates (row-major), length ``K``.
            delta: 1-D tensor of the actual steps, length ``K``.

        Returns:
            ``K`` losses.
        """
        with torch.no_grad():
            parts = name.split(".")
            if parts[0] == "readout":
                return self.batch_losses(self._readout_logits(parts[1], index, delta))
            layer = int(parts[1])
            return self.batch_losses(self._hidden_logits(layer, parts[2], index, delta))

    def _readout_logits(self, kind: str, index: Tensor, delta: Tensor) -> Tensor:
        """Logits ``[K, B, C]`` for readout weight/bias perturbations: one class's traces change."""
        base = self.base()
        readout = self.readout
        steps = base["traces"].shape[0]
        if kind == "weight":
            cls, j = index // readout.weight.shape[1], index % readout.weight.shape[1]
            spikes = base["inputs"][-1].index_select(2, j).transpose(0, 1)  # [B, T, K]
            change = leaky_integrate(spikes, readout.beta) * delta
        else:
            cls = index
            ones = self.x.new_ones(1, steps, 1)
            change = leaky_integrate(ones, readout.beta) * delta  # [1, T, K]
        column = base["traces"].index_select(2, cls).transpose(0, 1) + change  # [B, T, K]
        logits = base["logits"].unsqueeze(0).repeat(index.numel(), 1, 1)  # [K, B, C]
        logits[torch.arange(index.numel(), device=index.device), :, cls] = readout_logits(column, readout.mode).T
        return logits

    def _hidden_logits(self, layer: int, kind: str, index: Tensor, delta: Tensor) -> Tensor:
        """Logits ``[K, B, C]`` for input-weight/bias perturbations of hidden layer ``layer``."""
        base = self.base()
        module = self.hidden[layer]
        fan_in = module.weight.shape[1]
        j = index // fan_in if kind == "weight" else index
        current = base["currents"][layer]  # [T, B, H]
        # change of the input current of neuron j: delta * h[:, :, i] ([T, B, K]) or delta ([1, 1, K])
        if kind == "weight":
            shift = base["inputs"][layer].index_select(2, index % fan_in) * delta
        else:
            shift = delta.expand(1, 1, -1)
        if module.recurrent:
            k = index.numel()
            steps, batch, width = current.shape
            perturbed = current.unsqueeze(2).repeat(1, 1, k, 1)  # [T, B, K, H]
            perturbed[:, :, torch.arange(k, device=index.device), j] += shift
            folded = perturbed.reshape(steps, batch * k, width).transpose(0, 1)
            spikes = self._lif(module, folded, self._replay(module, k))
            return self._forward_from(layer + 1, spikes, k)
        # neuron j alone, one LIF "feature" per perturbation; [B, T, K] views of time-major memory
        spikes = self._lif(module, (current.index_select(2, j) + shift).transpose(0, 1), self._replay(module, 0, j))
        change = spikes - base["inputs"][layer + 1].index_select(2, j).transpose(0, 1)
        return self._propagate_column(layer + 1, change, j)

    def _propagate_column(self, layer: int, change: Tensor, j: Tensor) -> Tensor:
        """Logits when the input of ``layer`` (or of the readout) changes by ``change[..., k]`` in column ``j[k]``.

        ``change`` is ``[B, T, K]``; the perturbed tensors are built time-major ``[T, B, K, features]``.
        """
        base = self.base()
        batch, steps, k = change.shape
        if layer == len(self.hidden):
            readout = self.readout
            weight = readout.weight[:, j].T.contiguous().reshape(1, 1, k, -1)
            integrated = leaky_integrate(change, readout.beta).transpose(0, 1).unsqueeze(3)  # [T, B, K, 1]
            traces = torch.addcmul(base["traces"].unsqueeze(2), integrated, weight)  # [T, B, K, C], one pass
            logits = readout_logits(traces.reshape(steps, batch, -1).transpose(0, 1), readout.mode)  # [B, K * C]
            return logits.reshape(batch, k, -1).transpose(0, 1)
        module = self.hidden[layer]
        weight = module.weight[:, j].T.contiguous().reshape(1, 1, k, -1)
        current = torch.addcmul(base["currents"][layer].unsqueeze(2), change.transpose(0, 1).unsqueeze(3), weight)
        spikes = self._lif(module, current.reshape(steps, batch * k, -1).transpose(0, 1), self._replay(module, k))
        return self._forward_from(layer + 1, spikes, k)

    def _forward_from(self, layer: int, spikes: Tensor, k: int) -> Tensor:
        """Run hidden layers ``layer..`` and the readout on spikes ``[B * K, T, H]`` (batch-major order).

        Returns:
            Logits ``[K, B, C]``.
        """
        h = spikes
        for module in self.hidden[layer:]:
            h = self._lif(module, sequence_linear(h, module.weight, module.bias), self._replay(module, k))
        return self.readout(h).reshape(self.x.shape[0], k, -1).transpose(0, 1)
