"""Loss evaluations at many perturbed parameter sets, batched with :mod:`torch.func` (private helper).

The gradient verifiers (finite differences, gradient alignment) all need the same primitive: the scalar loss
``loss_fn(model(*inputs), targets)`` evaluated at parameter sets that differ from the model's in a few tensors.
:class:`LossProblem` owns a private copy of the model (cast to the verification dtype) and evaluates such sets with
``torch.func.functional_call`` under ``torch.func.vmap``, in chunks whose size keeps the extra memory under a budget.
Models that ``vmap`` cannot transform (for example a custom ``autograd.Function`` without a vmap rule, or
data-dependent Python control flow) fall back to a sequential loop; the fallback is recorded as a warning.

Chunks are also kept cache-sized: a batched forward whose activations spill out of the CPU caches costs more per
evaluation than a smaller one, while very small chunks pay ``vmap``'s fixed per-op overhead too often.

Every path evaluates the forward that training runs: evoexp's LIF node has a ``vmap`` rule that folds the
batched parameter sets into its batch, so batched, sequential and structure-aware evaluations all run its one
forward loop (:mod:`evoexp.functional.lif`).

For a plain evoexp SNN, single-coordinate perturbations (exact-mode finite differences) can be evaluated
structure-aware by :class:`~evoexp.verification._snn_coordinates.SNNCoordinates` (:meth:`LossProblem.coordinates`),
after a seeded sample of its perturbed losses has been cross-checked against the generic path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from evoexp.functional import backward_once
from evoexp.verification._snn_coordinates import SNNCoordinates
from evoexp.verification.spiking import private_copy

__all__ = ["DEFAULT_MEMORY_BUDGET", "LossFn", "LossProblem"]

LossFn = Callable[[Any, Any], Tensor]
"""A loss ``loss_fn(model_output, targets) -> scalar tensor``."""

DEFAULT_MEMORY_BUDGET = 512 * 2**20
"""Default bound (bytes) on the extra memory of one batched evaluation: perturbed parameters plus activations."""

_MAX_FORWARDS_PER_CHUNK = 4096
_MIN_FORWARDS_PER_CHUNK = 8
_CACHE_BYTES = 16 * 2**20
# Structure-aware guard: coordinates per tensor whose perturbed losses are compared with the generic path, at the
# finite-difference steps and at a large step (where a structural error cannot hide under rounding).
_GUARD_COORDINATES = 4
_GUARD_STEP = 0.1
_GUARD_RTOL = 1e-10


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """Cast floating tensors (also inside tuples/lists/dicts) to ``dtype``; leave everything else unchanged."""
    if isinstance(value, Tensor):
        return value.detach().to(dtype) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(_cast(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    return value


class LossProblem:
    """A scalar loss as a function of named parameters, on a private copy of the model.

    Args:
        model: The user's model; it is deep-copied and never modified.
        inputs: Model input; a tuple is unpacked into positional arguments.
        targets: Passed unchanged (after dtype casting of floating tensors) to ``loss_fn``.
        loss_fn: ``loss_fn(model_output, targets) -> scalar tensor``.
        dtype: Floating dtype of the copy, the inputs and floating targets.
        parameters: Names of the parameters to study; ``None`` means every parameter that requires grad.
        memory_budget: Bound in bytes on the extra memory of one batched evaluation.
        chunk_size: Fixed number of forward evaluations per batched call (overrides ``memory_budget``).
        structure_aware: Allow the structure-aware evaluation of single-coordinate perturbations of evoexp SNNs
            (:meth:`coordinates`); ``False`` always uses the generic batched path.

    Raises:
        ValueError: ``parameters`` names an unknown parameter, the model has no trainable parameter,
            ``memory_budget`` or ``chunk_size`` is not positive.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: Any,
        targets: Any,
        loss_fn: LossFn,
        *,
        dtype: torch.dtype,
        parameters: Sequence[str] | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        chunk_size: int | None = None,
        structure_aware: bool = True,
    ) -> None:
        if memory_budget <= 0:
            raise ValueError(f"memory_budget must be > 0 bytes, got {memory_budget!r}")
        if chunk_size is not None and chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive number of forward evaluations, got {chunk_size!r}")
        self.copy = private_copy(model, dtype=dtype)
        self.model = self.copy.model
        trainable = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        if parameters is None:
            selected = list(trainable)
        else:
            unknown = [name for name in parameters if name not in trainable]
            if unknown:
                raise ValueError(
                    f"parameters: unknown or frozen parameter(s) {unknown}; trainable: {sorted(trainable)}"
                )
            selected = list(dict.fromkeys(parameters))
        if not selected:
            raise ValueError("model has no trainable parameter to verify (parameters is empty)")
        self.params: dict[str, Tensor] = {name: trainable[name] for name in selected}
        self.inputs: tuple[Any, ...] = _cast(inputs if isinstance(inputs, tuple) else (inputs,), dtype)
        self.targets = _cast(targets, dtype)
        self.loss_fn = loss_fn
        self.dtype = dtype
        self.memory_budget = memory_budget
        self.chunk_size = chunk_size
        self.activation_bytes = 0
        self.batched = True
        self.n_evaluations = 0
        self.warnings: list[str] = []
        self._coordinates: SNNCoordinates | bool | None = False if structure_aware else None  # False: not built
        self._guarded: dict[tuple[str, float], tuple[Any, ...]] = {}  # (tensor, eps) -> evaluator state checked
        self.structured_names: set[str] = set()

    def spiking(self, smooth: bool | None) -> bool:
        """Whether the copy runs spiking neurons, after checking that ``smooth=True`` has a smooth mode to run.

        Raises:
            ValueError: ``smooth`` is true and the model has no smooth mode (no spiking-network adapter claims it).
        """
        if smooth and not self.copy.spiking:
            raise ValueError(
                "smooth=True needs a spiking network with a smooth mode (evoexp.verification.spiking); "
                f"{type(self.model).__name__} has none"
            )
        return self.copy.spiking

    @property
    def n_parameters(self) -> int:
        """Number of scalar coordinates in the studied parameters."""
        return sum(p.numel() for p in self.params.values())

    def _loss(self, overrides: dict[str, Tensor]) -> Tensor:
        output = functional_call(self.model, overrides, self.inputs) if overrides else self.model(*self.inputs)
        return self._output_loss(output)

    def loss(self) -> float:
        """Loss at the unperturbed parameters."""
        with torch.no_grad():
            self.n_evaluations += 1
            return float(self._loss({}))

    def forward(self) -> Any:
        """The model's output at the unperturbed parameters (no graph)."""
        with torch.no_grad():
            return self.model(*self.inputs)

    def gradient(self) -> dict[str, Tensor]:
        """Autograd gradient of the loss with respect to the studied parameters, as training computes it.

        See :meth:`gradients`; the call also measures the bytes autograd saves during the forward, used as the
        per-evaluation activation estimate when sizing chunks.
        """
        return self.gradients(1)[0]

    def gradients(self, repeats: int) -> list[dict[str, Tensor]]:
        """``repeats`` autograd gradients (detached copies), each from its own forward and backward pass.

        The first is computed as a training step computes it, inside :func:`evoexp.functional.backward_once` (evoexp
        LIF nodes write their gradient over the memory they saved); the others with fresh gradient buffers.
        Comparing them exposes a non-deterministic forward or backward, and any difference between the two ways
        the backward stores its result.
        """
        results = []
        for r in range(repeats):
            saved: dict[tuple[int, int], int] = {}

            def pack(tensor: Tensor, saved: dict[tuple[int, int], int] = saved) -> Tensor:
                if tensor.layout == torch.strided and tensor.device.type != "meta":
                    saved[(tensor.data_ptr(), tensor.numel())] = tensor.numel() * tensor.element_size()
                return tensor

            with (
                backward_once() if r == 0 else nullcontext(),
                torch.enable_grad(),
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
            ):
                loss = self._loss({})
            self.activation_bytes = max(self.activation_bytes, sum(saved.values()))
            self.n_evaluations += 1
            grads = torch.autograd.grad(loss, list(self.params.values()), allow_unused=True)
            results.append(
                {
                    name: (torch.zeros_like(p) if g is None else g.detach().clone())
                    for (name, p), g in zip(self.params.items(), grads)
                }
            )
        return results

    def gradient_at(self, overrides: dict[str, Tensor]) -> dict[str, Tensor]:
        """Autograd gradient with respect to the overridden tensors, at the parameters with ``overrides`` applied.

        The gradient training would compute at that point (the same forward and backward, through
        ``torch.func.functional_call``); parameters absent from ``overrides`` keep their values. One evaluation.
        """
        leaves = {name: value.detach().requires_grad_(True) for name, value in overrides.items()}
        with torch.enable_grad():
            loss = self._loss(leaves)
        self.n_evaluations += 1
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        pairs = zip(leaves.items(), grads)
        return {name: (torch.zeros_like(leaf) if g is None else g.detach()) for (name, leaf), g in pairs}

    def forwards_per_chunk(self, perturbed_numel: int) -> int:
        """Number of forward evaluations per batched call for overrides of ``perturbed_numel`` elements each."""
        if self.chunk_size is not None:
            return self.chunk_size
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        per_forward = max(1, self.activation_bytes + perturbed_numel * itemsize)
        cache_sized = max(_MIN_FORWARDS_PER_CHUNK, _CACHE_BYTES // per_forward)
        return int(max(1, min(_MAX_FORWARDS_PER_CHUNK, self.memory_budget // per_forward, cache_sized)))

    def chunks(self, n: int, perturbed_numel: int) -> Iterator[slice]:
        """Split ``range(n)`` forward evaluations into memory-bounded slices."""
        step = self.forwards_per_chunk(perturbed_numel)
        for start in range(0, n, step):
            yield slice(start, min(n, start + step))

    def losses(self, overrides: dict[str, Tensor]) -> Tensor:
        """Losses at ``n`` parameter sets: each override has a leading batch dimension ``n``.

        Parameters absent from ``overrides`` keep their unperturbed values. The call is not chunked: callers
        build overrides chunk by chunk (see :meth:`chunks`) so that the perturbed tensors also stay bounded.

        Returns:
            A 1-D tensor of ``n`` losses.
        """
        sizes = {v.shape[0] for v in overrides.values()}
        if len(sizes) != 1:
            raise ValueError(f"overrides must share one leading batch size, got {sorted(sizes)}")
        n = sizes.pop()
        self.n_evaluations += n
        with torch.no_grad():
            if self.batched:
                try:
                    return vmap(self._loss, in_dims=(0,), randomness="error")(overrides)
                except (RuntimeError, NotImplementedError) as error:
                    self.batched = False
                    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    self.warnings.append(
                        "torch.func.vmap could not batch this model's forward "
                        f"({type(error).__name__}: {first_line}); fell back to a sequential loop (slower)"
                    )
            return torch.stack([self._loss({k: v[i] for k, v in overrides.items()}) for i in range(n)])

    def _output_loss(self, output: Tensor) -> Tensor:
        loss = self.loss_fn(output, self.targets)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn must return a scalar tensor (one element)")
        return loss.reshape(())

    def output_losses(self, outputs: Tensor) -> Tensor:
        """``loss_fn`` applied to each of ``K`` stacked model outputs ``[K, ...]``; returns ``K`` losses.

        Batched with ``vmap`` over the outputs (a loop if ``loss_fn`` cannot be batched). Not counted as
        evaluations: the caller counts the forwards that produced the outputs.
        """
        with torch.no_grad():
            try:
                return vmap(self._output_loss, randomness="error")(outputs)
            except (RuntimeError, NotImplementedError):
                return torch.stack([self._output_loss(o) for o in outputs])

    def coordinates(self, name: str, *, eps: float) -> SNNCoordinates | None:
        """Structure-aware evaluator of single-coordinate perturbations of ``name``, or ``None`` (generic path).

        Available for plain evoexp SNNs (see :mod:`evoexp.verification._snn_coordinates`). Before its first use for
        a tensor (and again after any change of the model's state, see ``SNNCoordinates.state_key``) it must
        reproduce the model's own forward: the unperturbed loss, and the losses at a seeded sample of coordinates
        of ``name`` shifted by ``± eps`` and by a large step, against the generic path. On a mismatch it is disabled
        for the rest of the problem, with a warning naming the tensor and coordinate. Call in the mode (smooth or
        spiking, held resets) the losses are wanted in.
        """
        evaluator = self._structured()
        if evaluator is None or not evaluator.supports(name):
            return None
        key = evaluator.state_key()
        if self._guarded.get((name, eps)) == key:
            return evaluator
        mismatch = self._guard(evaluator, name, eps)
        if mismatch is not None:
            self._coordinates = None
            self.warnings.append(
                f"structure-aware SNN evaluation disagreed with the model's forward ({mismatch}); used the generic "
                "batched path"
            )
            return None
        self._guarded[(name, eps)] = key
        return evaluator

    def _structured(self) -> SNNCoordinates | None:
        """The structure-aware evaluator, built on first use (``None`` when unavailable or disabled)."""
        if self._coordinates is False:
            self._coordinates = SNNCoordinates.build(
                self.model, self.inputs, self.output_losses, memory_budget=self.memory_budget
            )
        return self._coordinates if isinstance(self._coordinates, SNNCoordinates) else None

    def _guard(self, evaluator: SNNCoordinates, name: str, eps: float) -> str | None:
        """Compare the evaluator with the generic path; return a description of the first mismatch, if any."""
        reference = self.loss()
        value = float(evaluator.base_loss())
        if not abs(value - reference) <= _GUARD_RTOL * max(1.0, abs(reference)):
            return f"unperturbed loss {value!r} vs {reference!r}"
        param = self.params[name]
        base = param.detach().reshape(-1)
        generator = torch.Generator().manual_seed(0)
        sample = torch.randperm(base.numel(), generator=generator)[:_GUARD_COORDINATES].to(base.device)
        steps = torch.tensor([eps, -eps, _GUARD_STEP, -_GUARD_STEP], dtype=base.dtype, device=base.device)
        index = sample.repeat_interleave(steps.numel())
        values = base[index]
        delta = (values + steps.repeat(sample.numel())) - values
        structured = evaluator.losses(name, index, delta)
        perturbed = base.repeat(index.numel(), 1)
        perturbed[torch.arange(index.numel(), device=base.device), index] += delta
        generic = self.losses({name: perturbed.reshape(-1, *param.shape)})
        self.n_evaluations += index.numel()  # the structured half (the generic half is counted by losses)
        bad = ~((structured - generic).abs() <= _GUARD_RTOL * generic.abs().clamp(min=1.0))
        if not bool(bad.any()):
            return None
        k = int(torch.nonzero(bad)[0])
        where = tuple(int(i) for i in torch.unravel_index(index[k].cpu(), tuple(param.shape)))
        return (
            f"'{name}' index {where} shifted by {float(delta[k]):.3g}: loss {float(structured[k])!r} vs "
            f"{float(generic[k])!r}"
        )
