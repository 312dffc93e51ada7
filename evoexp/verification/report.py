"""Markdown report of verification results, readable without the code.

:func:`generate_report` renders ``{check: Result}`` (as returned by
:meth:`~evoexp.verification.suite.BackpropagationVerificationSuite.run_full_verification`) as: a title, an overall
verdict, a summary table (check, verdict, key numbers), then one section per check that says what the check
measures, the thresholds that produced its verdict and what they mean, and its numbers. Stability, alignment,
convergence and benchmark results have dedicated layouts; any other :class:`~evoexp.results.Result`
(gradient and surrogate checks, or a user's own) is rendered generically from its dataclass fields.

Every number is printed with :func:`format_number` (4 significant digits).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evoexp.results import Result, SkippedResult
from evoexp.verification.alignment import AlignmentResult, AlignmentStats
from evoexp.verification.benchmark import BenchmarkResult, ModelBenchmark
from evoexp.verification.circulation import CirculationResult, CirculationStats
from evoexp.verification.convergence import ConvergenceResult
from evoexp.verification.sign import SignDisagreementResult, SignDisagreementTrace
from evoexp.verification.stability import GradientStabilityResult, WeightStabilityResult

__all__ = ["CHECK_DESCRIPTIONS", "CHECK_TITLES", "format_number", "generate_report"]

CHECK_TITLES: dict[str, str] = {
    "gradient_verification": "Gradient verification (finite differences vs autograd)",
    "surrogate_verification": "Surrogate gradient verification",
    "gradient_alignment": "Surrogate-gradient alignment with the smoothed loss",
    "gradient_stability": "Gradient stability",
    "weight_stability": "Weight stability",
    "convergence": "Convergence",
    "benchmark": "SNN vs ANN benchmark",
    "circulation": "Circulation of the surrogate gradient (is it a gradient?)",
    "sign_disagreement": "Sign disagreement with the smoothed-loss gradient",
    "sign_disagreement_training": "Sign disagreement during training",
    "escape_noise": "Escape noise: surrogate gradient = derivative of the expected output",
}
"""Section titles of the known checks (other keys are used as their own title)."""

CHECK_DESCRIPTIONS: dict[str, str] = {
    "gradient_verification": (
        "Compares the gradient a training step computes (autograd, including any hand-written backward such as "
        "BPTT through LIF neurons) with central finite differences (L(w+εe) − L(w−εe))/2ε of the loss evaluated "
        "by the training forward, coordinate by coordinate (exact mode) or along random directions (fast mode), in "
        "float64. Spiking networks are checked in smooth mode, where the forward uses the surrogate's smooth "
        "primitive, so the surrogate gradient is the true gradient and must match to float64 precision. A detached "
        "reset is held at its unperturbed value in every perturbed forward, so the check verifies the detached "
        "gradient training uses. A value that disagrees at ε is re-evaluated at smaller steps (ε/4, ε/16, ... while "
        "rounding cannot fake agreement): it passes when two consecutive smaller steps agree (the loss bends on a "
        "scale below ε; counted as n_refined). Where the one-sided differences (L(w+he) − L(w))/h and "
        "(L(w) − L(w−he))/h disagree with each other at every step and the analytical value is one of them or lies "
        "between them, the loss has a kink at w — e.g. two time steps of a max-over-time readout (nearly) tie, which "
        "saturating compact-support surrogates make common — and autograd returns the derivative of one piece: such "
        "a value is a non-differentiable point (counted as n_nondifferentiable, listed with its one-sided "
        "differences), not an error; when several samples tie at the same point, autograd's sum of one-sided choices "
        "may lie outside them, and the gradient is then checked just beside the kink on both sides, where the loss is "
        "smooth. At a smooth point the one-sided differences agree, so a wrong gradient is never taken for a kink. In "
        "spiking mode the finite difference of a step function is not a gradient: the "
        "numbers are then reported as surrogate bias, without a verdict."
    ),
    "surrogate_verification": (
        "Checks the spike function on a grid of membrane potentials x: (0) the gradient its backward actually "
        "produces must equal the declared pseudo-derivative g(x) (implementation error; for an evoexp SNN the "
        "backward probed is the LIF layer's own node, fed a one-neuron current whose membrane is x + θ); (a) g "
        "must be the derivative of the declared smooth primitive (consistency); (b) distance of g to the finite "
        "difference (H(x+h) − H(x−h))/2h of the Heaviside step (approximation error, L1/L2/max), plus the area "
        "of g and the L1 distance of the primitive to the step."
    ),
    "gradient_alignment": (
        "How well the surrogate gradient of the spiking network points along the true gradient of the loss "
        "smoothed with Gaussian weight noise of scale σ, E_z[L(w + σzv)], estimated by Gauss–Hermite quadrature "
        "along K seeded random unit directions v. Cosine similarity near 1 and sign agreement near 1 mean the "
        "surrogate gradient is a good descent direction for the smoothed loss; values near 0 mean it is not. The "
        "standard error (jackknife over directions) and the quadrature error (n vs n/2 nodes) are shown; a cosine "
        "within 2 SE + quadrature error of zero is inconclusive (its sign is unknown). Sign agreement counts only "
        "directions along which the smoothed loss changes. Informational (no verdict)."
    ),
    "gradient_stability": (
        "Loss gradients on several training batches: the total norm ‖g‖, each layer's norm ‖g_l‖ and its RMS "
        "per element ‖g_l‖/√n_l (mean, std, min, max over batches), NaN/Inf entries, and the depth conditioning "
        "max_l mean rms_l / min_l mean rms_l, which grows when gradients vanish or explode with depth or a layer "
        "receives no gradient at all (a dead layer gives infinity). Per-element RMS makes layers of different "
        "sizes comparable (a raw-norm ratio grows with the size ratio alone)."
    ),
    "weight_stability": (
        "A few optimiser steps on a copy of the model: the norm of every weight tensor after each step, the "
        "relative update ‖ΔW‖/‖W‖ of each step, the growth ‖W_final‖/‖W_initial‖ and the condition number "
        "σ_max/σ_min of every weight matrix (from its singular values), and NaN/Inf entries. Large relative "
        "updates or growth mean the learning rate is too large for the loss landscape; a huge condition number "
        "means a (nearly) rank-deficient weight matrix."
    ),
    "convergence": (
        "Training on a copy of the model with early stopping on the validation loss. The training loss of every "
        "epoch, epoch 0 (before training) included, is the training set evaluated with that epoch's final "
        "weights (eval mode, no gradient), so all points of the curve are the same kind of number. The "
        "convergence rate r is minus the least-squares slope of log(training loss) per epoch "
        "(loss ≈ L₀·e^(−r·epoch); positive means the loss decreases); epochs to 90 %/95 % is the first epoch "
        "that achieved that fraction of the total loss reduction. Training stops after `patience` epochs without "
        "an improvement larger than `min_delta`; the best epoch here is the one with the lowest validation loss. "
        "The weights kept after training are those of the best-validation epoch (highest validation accuracy)."
    ),
    "benchmark": (
        "The SNN and its ANN twin trained on the same split with the same seeds, optimiser and number of "
        "epochs: final loss and accuracy (mean ± sample std over seeds), wall time per training epoch (warm-up "
        "epochs excluded; the torch thread count of each model is recorded, and the time ratio is given only "
        "when they match), parameter counts and SNN/ANN ratios. "
        "Informational (no verdict)."
    ),
    "circulation": (
        "Integrates the gradient training computes (surrogate derivative in the backward) around circles of radius r "
        "in seeded 2-D planes of weight space, w(θ) = w₀ + r(cos θ u + sin θ v), across all parameters (overall) and "
        "within each tensor: C = ∮ g·dw by the trapezoid rule on n equally spaced angles (spectrally accurate for a "
        "smooth periodic integrand; quadrature error |c_n − c_{n/2}|, more angles until it is small or the limit is "
        "reached), reported normalised by the loop length times the mean projected gradient norm, c ∈ [−1, 1]. A "
        "true gradient is conservative (c = 0 within the quadrature error): the smooth-mode loops are the check's "
        "control and its verdict. In spiking mode a non-zero c shows that the surrogate gradient is not the "
        "gradient of any function (Gygax & Zenke 2025); that number is informational."
    ),
    "sign_disagreement": (
        "Along K seeded random unit directions v, the sign of the directional surrogate derivative ⟨∇_sur L, v⟩ "
        "against the sign of the directional derivative of the loss smoothed with Gaussian weight noise of scale σ "
        "(Gauss–Hermite quadrature; for a differentiable network and small σ, the true gradient). The fraction "
        "that disagree estimates the angle between the two gradients over π (0: same direction, 0.5: unrelated), "
        "with its binomial standard error; directions whose smoothed derivative changes sign between n and n/2 "
        "nodes are counted as unresolved. Informational (no verdict)."
    ),
    "sign_disagreement_training": (
        "The sign disagreement (above) measured during training every k epochs, epoch 0 included, on a fixed set "
        "of training samples and directions. Informational (no verdict)."
    ),
    "escape_noise": (
        "For stochastic LIF neurons with escape noise, spikes ~ Bernoulli(σ(β_n(U − θ))): the surrogate gradient "
        "of a sampled spike train, computed by the layer's own node with the escape function's derivative as "
        "surrogate, must equal the exact derivative of the expected output given the neuron's history (Gygax & "
        "Zenke 2025), for a single neuron and for a single layer (enumeration of its joint spike patterns, float64), "
        "coordinate by coordinate within atol + rtol·|exact|."
    ),
}
"""What each check measures, in words."""

_THRESHOLD_MEANINGS: dict[str, str] = {
    "max_grad_norm": "fail if any batch's total gradient norm exceeds it (exploding gradients)",
    "min_grad_norm": "fail if any batch's total gradient norm is below it (vanishing gradients)",
    "max_depth_conditioning": "fail if the ratio of the largest to the smallest mean layer gradient RMS exceeds it",
    "max_relative_update": "fail if one step changes a weight matrix by more than this fraction of its norm",
    "max_norm_growth": "fail if a weight matrix's norm grows by more than this factor",
    "max_condition_number": "fail if a final weight matrix has a larger condition number σ_max/σ_min",
    "patience": "stop after this many epochs without improvement of the monitored loss",
    "min_delta": "an epoch improves only if its loss is below the best by more than this",
    "min_relative_reduction": "fail if the training loss falls by less than this fraction of its initial value",
    "max_epochs": "epoch budget",
    "eps": "finite-difference step ε",
    "atol": "absolute tolerance: a value passes if |numerical − analytical| ≤ atol + rtol·|analytical|",
    "rtol": "relative tolerance (see atol)",
    "nondet_tol": "allowed difference between two backward passes of the same loss",
    "h": "step of the spike function's finite difference (H(x+h) − H(x−h))/2h",
    "consistency_h": "step of the primitive's finite difference",
    "consistency_tol": "allowed |g − ΔP/2h|, relative to max(1, peak)",
}
_THRESHOLD_FIELDS = tuple(_THRESHOLD_MEANINGS)


def format_number(value: Any) -> str:
    """Format a value for the report: floats with 4 significant digits, NaN/inf spelled out, None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}"
    return str(value)


def _cell(value: Any) -> str:
    return format_number(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _verdict(result: Result) -> str:
    if isinstance(result, SkippedResult):
        return "skipped"
    return {True: "PASS", False: "FAIL", None: "info"}[result.passed]


def _pm(mean: float, std: float) -> str:
    return format_number(mean) if math.isnan(std) else f"{format_number(mean)} ± {format_number(std)}"


def _key_numbers(result: Result, limit: int = 3) -> str:
    if isinstance(result, SkippedResult):
        return result.reason
    if isinstance(result, AlignmentResult):
        s = result.stats()
        agreement = _pm(s.sign_agreement, s.sign_agreement_se)
        return f"cosine = {_cosine_cell(s)} at σ = {format_number(s.sigma)}, sign agreement = {agreement}"
    if isinstance(result, CirculationResult):
        o = result.overall
        error = format_number(o.quadrature_error)
        text = f"|c| = {_pm(o.circulation, o.circulation_se)} ({result.mode}), quadrature error {error}"
        if result.control is not None:
            c = result.control.overall
            verdict = "conservative" if result.control.passed else "NOT conservative or unresolved"
            text += f"; smooth control |c| = {format_number(c.circulation)}: {verdict}"
        return text
    if isinstance(result, SignDisagreementResult):
        return (
            f"disagreement = {_pm(result.disagreement, result.disagreement_se)} at σ = {format_number(result.sigma)} "
            f"({result.n_informative}/{result.n_directions} informative)"
        )
    if isinstance(result, SignDisagreementTrace):
        if not result.epochs:
            return "not measured"
        return (
            f"epoch {result.epochs[0]}: {format_number(result.disagreement[0])}, epoch {result.epochs[-1]}: "
            f"{format_number(result.disagreement[-1])}"
        )
    items = [(k, v) for k, v in result.summary().items() if not k.endswith(("/ok", "/passed", "_ok"))]
    return ", ".join(f"{k.split('/', 1)[-1]} = {format_number(v)}" for k, v in items[:limit])


def _thresholds(values: Mapping[str, Any]) -> list[str]:
    if not values:
        return []
    rows = [(name, value, _THRESHOLD_MEANINGS.get(name, "")) for name, value in values.items()]
    return ["**Thresholds**", "", *_table(["threshold", "value", "meaning"], rows)]


def _issues(issues: Sequence[str]) -> list[str]:
    if not issues:
        return []
    return ["**Why it failed**", "", *(f"- {issue}" for issue in issues), ""]


def _render_gradient_stability(r: GradientStabilityResult) -> list[str]:
    t = r.total_norm
    lines = [*_issues(r.issues), *_thresholds(dataclasses.asdict(r.thresholds)), "**Numbers**", ""]
    lines += _table(
        ["metric", "value"],
        [
            ("batches", r.n_batches),
            ("total gradient norm: mean", t.mean),
            ("total gradient norm: std", t.std),
            ("total gradient norm: min", t.min),
            ("total gradient norm: max", t.max),
            ("depth conditioning (ratio of layer gradient RMS)", r.depth_conditioning),
            ("NaN gradient entries", r.nan_count),
            ("Inf gradient entries", r.inf_count),
            ("batches with non-finite gradients", r.nonfinite_batches),
            ("batches with non-finite loss", r.nonfinite_losses),
        ],
    )
    lines += [f"Depth conditioning: {r.depth_conditioning_definition}.", ""]
    lines += ["Per-layer gradient over batches (norm ‖g_l‖ and RMS per element ‖g_l‖/√n_l):", ""]
    lines += _table(
        ["layer", "parameters", "norm mean", "norm std", "RMS mean", "RMS min", "RMS max"],
        [
            (
                name,
                r.layer_sizes[name],
                s.mean,
                s.std,
                r.layer_rms[name].mean,
                r.layer_rms[name].min,
                r.layer_rms[name].max,
            )
            for name, s in r.layer_norms.items()
        ],
    )
    return lines


def _cosine_cell(s: AlignmentStats) -> str:
    text = f"{format_number(s.cosine)} ± {format_number(s.cosine_se)}"
    return text if s.conclusive else f"inconclusive ({text})"


def _render_alignment(r: AlignmentResult) -> list[str]:
    mode = {True: "smooth mode", False: "spiking mode", None: "no spiking neurons"}[r.smooth_mode]
    lines = [
        f"Setup: {r.n_directions} seeded random unit directions (seed {r.seed}), Gauss–Hermite quadrature with "
        f"{r.n_quadrature} nodes (quadrature error: vs {r.n_quadrature_check} nodes), {mode}, {r.dtype}; "
        f"{r.n_evaluations} loss evaluations.",
        "",
        "**Numbers** (cosine ± jackknife SE; *inconclusive* when |cosine| ≤ 2 SE + quadrature error)",
        "",
    ]
    rows = [*r.overall, *(s for stats in r.per_layer.values() for s in stats)]
    lines += _table(
        ["scope", "σ", "cosine", "quadrature error", "sign agreement", "informative directions", "norm ratio"],
        [
            (
                s.scope,
                s.sigma,
                _cosine_cell(s),
                s.cosine_quadrature_error,
                _pm(s.sign_agreement, s.sign_agreement_se),
                f"{s.n_informative}/{s.n_directions}",
                _pm(s.norm_ratio, s.norm_ratio_se),
            )
            for s in rows
        ],
    )
    if r.warnings:
        lines += ["**Warnings**", "", *(f"- {w}" for w in r.warnings), ""]
    return lines


def _circulation_rows(r: CirculationResult) -> list[list[Any]]:
    def row(s: CirculationStats) -> list[Any]:
        angles = sorted({p.n_points for p in s.planes})
        return [
            s.scope,
            _pm(s.circulation, s.circulation_se),
            ", ".join(format_number(p.circulation) for p in s.planes),
            s.quadrature_error,
            "/".join(map(str, angles)),
            s.conservative,
            s.resolved,
        ]

    return [row(s) for s in r.scopes]


def _render_circulation(r: CirculationResult) -> list[str]:
    header = ["scope", "mean abs(c) ± SE", "c per plane", "quadrature error", "angles", "conservative", "resolved"]
    lines = [
        f"Setup: {r.mode} mode, circles of radius {format_number(r.radius)} in {r.n_planes} seeded plane(s) per scope "
        f"(seed {r.seed}), trapezoid rule on {r.n_points} angles (error estimate vs {r.n_check}; refined up to "
        f"{r.max_points} while the error exceeds {format_number(r.max_quadrature_error)}), {r.dtype}; "
        f"{r.n_evaluations} gradient evaluations in {format_number(r.seconds)} s. A loop is conservative when "
        f"|c| ≤ 3 × quadrature error + {format_number(r.atol)}.",
        "",
        *_table(header, _circulation_rows(r)),
    ]
    if r.control is not None:
        c = r.control
        verdict = "PASS" if c.passed else "FAIL"
        held = f"; detached resets held at the centre of the loop: {', '.join(c.held_resets)}" if c.held_resets else ""
        lines += [
            f"**Control** (the same loops in smooth mode, where the field is a true gradient): {verdict}{held}",
            "",
            *_table(header, _circulation_rows(c)),
        ]
        if c.warnings:
            lines += [*(f"- control: {w}" for w in c.warnings), ""]
    if r.warnings:
        lines += ["**Warnings**", "", *(f"- {w}" for w in r.warnings), ""]
    return lines


def _render_sign(r: SignDisagreementResult) -> list[str]:
    mode = {True: "smooth mode", False: "spiking mode", None: "no spiking neurons"}[r.smooth_mode]
    lines = [
        f"Setup: {r.n_directions} seeded random unit directions (seed {r.seed}), σ = {format_number(r.sigma)}, "
        f"Gauss–Hermite quadrature with {r.n_quadrature} nodes, {mode}; {r.n_evaluations} loss evaluations.",
        "",
        *_table(
            ["metric", "value"],
            [
                ("sign disagreement ± SE", _pm(r.disagreement, r.disagreement_se)),
                ("informative directions", f"{r.n_informative}/{r.n_directions}"),
                (f"unresolved (sign changes with {r.n_quadrature // 2} nodes)", r.n_unresolved),
            ],
        ),
    ]
    if r.warnings:
        lines += ["**Warnings**", "", *(f"- {w}" for w in r.warnings), ""]
    return lines


def _render_sign_trace(r: SignDisagreementTrace) -> list[str]:
    lines = [
        f"Every {r.every} epochs, σ = {format_number(r.sigma)}, {r.n_directions} directions; "
        f"{format_number(r.seconds)} s in total.",
        "",
    ]
    return lines + _table(
        ["epoch", "sign disagreement ± SE"],
        [(e, _pm(p, se)) for e, p, se in zip(r.epochs, r.disagreement, r.disagreement_se)],
    )


def _render_weight_stability(r: WeightStabilityResult) -> list[str]:
    lines = [*_issues(r.issues), *_thresholds(dataclasses.asdict(r.thresholds)), "**Numbers**", ""]
    lines += _table(
        ["metric", "value"],
        [
            ("optimiser steps", r.n_steps),
            ("loss before the first step", r.losses[0] if r.losses else None),
            ("loss before the last step", r.losses[-1] if r.losses else None),
            ("max relative update (weight matrices)", r.max_relative_update),
            ("max norm growth (weight matrices)", r.max_norm_growth),
            ("max final condition number", r.max_condition_number),
            ("NaN/Inf weight entries", r.nonfinite_weights),
        ],
    )
    lines += ["Per tensor (condition numbers for matrices only):", ""]
    lines += _table(
        [
            "tensor",
            "shape",
            "initial norm",
            "final norm",
            "max rel. update",
            "initial cond.",
            "final cond.",
            "non-finite",
        ],
        [
            (
                name,
                "×".join(map(str, s.shape)) or "scalar",
                s.initial_norm,
                s.final_norm,
                s.max_relative_update,
                s.initial_condition,
                s.final_condition,
                s.nonfinite_count,
            )
            for name, s in r.tensors.items()
        ],
    )
    return lines


def _render_convergence(r: ConvergenceResult) -> list[str]:
    thresholds = {
        "max_epochs": r.max_epochs,
        "patience": r.patience,
        "min_delta": r.min_delta,
        "min_relative_reduction": r.min_relative_reduction,
    }
    lines = [*_issues(r.issues), *_thresholds(thresholds), "**Numbers**", ""]
    lines += _table(
        ["metric", "value"],
        [
            ("epochs run", r.epochs_run),
            ("stopped early", r.stopped_early),
            ("diverged", r.diverged),
            (f"best epoch (lowest {r.monitor})", r.best_epoch),
            (f"best {r.monitor}", r.best_value),
            ("convergence rate r (per epoch)", r.convergence_rate),
            ("epochs to 90 % of the loss reduction", r.epochs_to_90),
            ("epochs to 95 % of the loss reduction", r.epochs_to_95),
            ("relative reduction of the training loss", r.relative_reduction),
            ("training loss before training", r.initial_train_loss),
            ("validation loss before training", r.initial_val_loss),
        ],
    )
    lines += ["Per epoch:", ""]
    lines += _table(
        ["epoch", "train loss", "train acc", "val loss", "val acc", "grad norm", "seconds"],
        list(zip(r.epochs, r.train_loss, r.train_acc, r.val_loss, r.val_acc, r.grad_norm, r.epoch_seconds)),
    )
    return lines


def _model_row(label: str, snn: ModelBenchmark, ann: ModelBenchmark, attr: str, ratio: float | None) -> list[Any]:
    a, b = getattr(snn, attr), getattr(ann, attr)
    return [label, _pm(a.mean, a.std), _pm(b.mean, b.std), ratio]


def _render_benchmark(r: BenchmarkResult) -> list[str]:
    lines = [
        f"Setup: seeds {', '.join(map(str, r.seeds))}; {r.epochs} epochs ({r.warmup_epochs} warm-up epoch(s) "
        f"excluded from timing); optimiser {r.optimizer}, lr {format_number(r.lr)}; evaluation on "
        f"{r.eval_split}; torch threads SNN {r.snn.torch_threads}, ANN {r.ann.torch_threads}"
        + ("." if r.time_comparable else " (different: the time ratio is not comparable)."),
        "",
        "**Numbers** (mean ± sample std over seeds)",
        "",
    ]
    lines += _table(
        ["metric", "SNN", "ANN", "SNN/ANN"],
        [
            ["trainable parameters", r.snn.n_params, r.ann.n_params, r.param_ratio],
            _model_row("seconds per epoch", r.snn, r.ann, "time_per_epoch", r.time_ratio),
            _model_row("final training loss", r.snn, r.ann, "final_train_loss", None),
            _model_row("final evaluation loss", r.snn, r.ann, "final_eval_loss", r.loss_ratio),
            _model_row("final evaluation accuracy", r.snn, r.ann, "final_eval_acc", None),
        ],
    )
    lines += [f"Accuracy gap (SNN − ANN): {format_number(r.acc_gap)}.", "", "Per seed:", ""]
    lines += _table(
        ["model", "seed", "final train loss", "final eval loss", "final eval acc", "s/epoch", "diverged"],
        [
            (
                m.name.upper(),
                run.seed,
                run.final("train_loss"),
                run.final("eval_loss"),
                run.final("eval_acc"),
                run.time_per_epoch,
                run.diverged,
            )
            for m in (r.snn, r.ann)
            for run in m.runs
        ],
    )
    return lines


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _scalar_fields(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if _is_scalar(value):
            out[f.name] = value
        elif isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value):
            out[f.name] = "(" + ", ".join(format_number(v) for v in value) + ")"
        elif dataclasses.is_dataclass(value) and hasattr(value, "describe"):
            out[f.name] = value.describe()
    return out


def _records_table(rows: Sequence[tuple[str, Any]], key: str) -> list[str]:
    """Table of dataclass records: one row per ``(label, record)``, one column per scalar field."""
    records = [(label, _scalar_fields(rec)) for label, rec in rows]
    # A field that only repeats the row label (a ``name`` or ``scope``) is not shown twice.
    columns = [c for c in records[0][1] if any(fields.get(c) != label for label, fields in records)]
    return _table([key, *columns], [[label, *(fields.get(c) for c in columns)] for label, fields in records])


def _render_generic(r: Result) -> list[str]:
    scalars: dict[str, Any] = _scalar_fields(r) if dataclasses.is_dataclass(r) else {}
    thresholds = {k: scalars.pop(k) for k in _THRESHOLD_FIELDS if k in scalars}
    message = getattr(r, "message", "")
    lines: list[str] = []
    if isinstance(message, str) and message:
        lines += [f"> {message}", ""]
    lines += _thresholds(thresholds)
    lines += ["**Numbers**", "", *_table(["field", "value"], list(scalars.items()))]
    f: dataclasses.Field[Any]
    for f in dataclasses.fields(r) if dataclasses.is_dataclass(r) else ():
        value = getattr(r, f.name)
        if isinstance(value, dict) and value:
            first = next(iter(value.values()))
            if dataclasses.is_dataclass(first):
                lines += [f"`{f.name}`:", "", *_records_table(list(value.items()), "name")]
            elif isinstance(first, list) and first and dataclasses.is_dataclass(first[0]):
                rows = [(name, rec) for name, recs in value.items() for rec in recs]
                lines += [f"`{f.name}`:", "", *_records_table(rows, "name")]
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            lines += [f"`{f.name}`:", "", *_records_table([(str(i), rec) for i, rec in enumerate(value)], "#")]
    warnings = getattr(r, "warnings", None)
    if warnings:
        lines += ["**Warnings**", "", *(f"- {w}" for w in warnings), ""]
    return lines


_RENDERERS: dict[type, Callable[[Any], list[str]]] = {
    GradientStabilityResult: _render_gradient_stability,
    WeightStabilityResult: _render_weight_stability,
    ConvergenceResult: _render_convergence,
    BenchmarkResult: _render_benchmark,
    AlignmentResult: _render_alignment,
    CirculationResult: _render_circulation,
    SignDisagreementResult: _render_sign,
    SignDisagreementTrace: _render_sign_trace,
}


def _section(key: str, result: Result) -> list[str]:
    lines = [f"## {CHECK_TITLES.get(key, key)} — {_verdict(result)}", ""]
    description = CHECK_DESCRIPTIONS.get(key)
    if description:
        lines += [f"*What it measures.* {description}", ""]
    if isinstance(result, SkippedResult):
        return [*lines, f"Skipped: {result.reason}.", ""]
    renderer = _RENDERERS.get(type(result), _render_generic)
    return [*lines, *renderer(result)]


def generate_report(results: Mapping[str, Result], *, title: str = "Backpropagation verification report") -> str:
    """Render verification results as a Markdown document.

    Args:
        results: ``{check: Result}``; known checks (see :data:`CHECK_TITLES`) come first in their run order,
            other keys follow in the given order.
        title: Top-level heading.

    Returns:
        The Markdown text (ends with a newline).

    Raises:
        ValueError: If ``results`` is empty.
    """
    if not results:
        raise ValueError("results is empty: nothing to report")
    keys = [k for k in CHECK_TITLES if k in results] + [k for k in results if k not in CHECK_TITLES]
    verdicts = [_verdict(results[k]) for k in keys]
    failed = [k for k, v in zip(keys, verdicts) if v == "FAIL"]
    overall = "FAIL" if failed else ("PASS" if "PASS" in verdicts else "nothing checked (no check gave a verdict)")
    counts = ", ".join(
        f"{verdicts.count(v)} {word}"
        for v, word in (("PASS", "passed"), ("FAIL", "failed"), ("info", "informational"), ("skipped", "skipped"))
    )
    lines = [f"# {title}", "", f"**Overall: {overall}** — {counts}."]
    if failed:
        lines.append(f"Failed: {', '.join(CHECK_TITLES.get(k, k) for k in failed)}.")
    lines += ["", "## Summary", ""]
    lines += _table(
        ["check", "verdict", "key numbers"],
        [(CHECK_TITLES.get(k, k), v, _key_numbers(results[k])) for k, v in zip(keys, verdicts)],
    )
    for key in keys:
        lines += _section(key, results[key])
    return "\n".join(lines).rstrip() + "\n"
