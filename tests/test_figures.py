import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import pyplot as plt

from evoexp import figures
from evoexp.analysis.aggregate import aggregate, aggregate_history
from evoexp.surrogate import get_surrogate

NAME, SLOPE = "params.surrogate.name", "params.surrogate.slope"
ACC, COS = "metrics.snn/test/acc_best", "metrics.alignment/cosine"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _slope_runs() -> pd.DataFrame:
    rows = [
        {NAME: name, SLOPE: slope, "params.seed": seed, ACC: 0.5 + 0.01 * seed + 0.1 * k, COS: 0.9 - 0.1 * k}
        for name in ("atan", "fast_sigmoid", "sigmoid")
        for k, slope in enumerate((1.0, 10.0, 100.0))
        for seed in range(3)
    ]
    return pd.DataFrame(rows)


def _slope_stats() -> pd.DataFrame:
    return aggregate(_slope_runs(), by=[NAME, SLOPE], metrics=[ACC, COS])


def _curves() -> pd.DataFrame:
    keys = ("snn/val/acc", "ann/val/acc", "snn/grad_norm/hidden.0", "snn/grad_norm/readout")
    rows = [
        {"run_id": f"r{seed}", "key": key, "step": step, "value": 0.1 * (k + 1) + 0.01 * step + 0.001 * seed}
        for seed in range(3)
        for k, key in enumerate(keys)
        for step in range(5)
    ]
    return aggregate_history(pd.DataFrame(rows))


def test_figure_size_and_style():
    assert figures.figure_size("single", aspect=0.5) == (3.5, 1.75)
    assert figures.figure_size("double")[0] == figures.WIDTHS["double"]
    with pytest.raises(ValueError, match="width"):
        figures.figure_size("triple")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aspect"):
        figures.figure_size(aspect=0.0)
    fig, _ = figures.new_figure(width="double")
    assert tuple(fig.get_size_inches()) == pytest.approx(figures.figure_size("double"))
    assert matplotlib.rcParams["pdf.fonttype"] == 42
    assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] == list(figures.PALETTE)


def test_series_styles_distinct_for_many_series():
    styles = [figures.series_style(i) for i in range(16)]
    assert len({(s["color"], s["linestyle"]) for s in styles}) == 16
    with pytest.raises(ValueError, match="index"):
        figures.series_style(-1)


def test_accuracy_vs_slope_axes():
    _, ax = figures.new_figure()
    stats = _slope_stats()
    assert figures.plot_accuracy_vs_slope(ax, stats) is ax
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == r"Surrogate slope $\beta$"
    assert ax.get_ylabel() == "Test accuracy (%)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["atan", "fast sigmoid", "sigmoid", figures.BAND_LABEL]  # words, and what the band is
    assert ax.get_legend().get_title().get_text() == "Surrogate"
    assert len(ax.lines) == 3
    assert len(ax.collections) == 3  # one CI band per surrogate
    x, y = ax.lines[0].get_data()
    assert list(x) == [1.0, 10.0, 100.0]
    assert y == pytest.approx([51.0, 61.0, 71.0], abs=1e-9)  # mean over seeds, in percent
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(50.0) and band.max() == pytest.approx(72.0)  # the seeds' range: inside


def test_accuracy_vs_slope_draws_every_seed_as_a_point():
    _, ax = figures.new_figure()
    figures.plot_accuracy_vs_slope(ax, _slope_stats(), points=_slope_runs())
    points = [c for c in ax.collections if c.get_offsets().shape[0] == 9]
    assert len(points) == 3  # one scatter of 3 slopes x 3 seeds per surrogate
    assert sorted(points[0].get_offsets()[:, 1]) == pytest.approx(
        sorted(100 * (0.5 + 0.01 * s + 0.1 * k) for k in range(3) for s in range(3))
    )
    assert figures.POINT_LABEL in [t.get_text() for t in ax.get_legend().get_texts()]


def test_accuracy_vs_scale_legend_in_words():
    scale = "params.surrogate.scale"
    runs = pd.DataFrame(
        [
            {NAME: name, SLOPE: 20.0, scale: sc, "params.seed": seed, ACC: 0.9 - 0.1 * k + 0.01 * seed}
            for name in ("fast_sigmoid", "atan")
            for k, sc in enumerate((0.1, 1.0, 10.0))
            for seed in range(2)
        ]
    )
    stats = aggregate(runs, by=[NAME, SLOPE, scale], metrics=[ACC])
    _, ax = figures.new_figure()
    figures.plot_accuracy_vs_scale(ax, stats, points=runs)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["atan, β = 20", "fast sigmoid, β = 20"]
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("Surrogate scale")


def test_alignment_vs_slope_axes():
    _, ax = figures.new_figure()
    figures.plot_alignment_vs_slope(ax, _slope_stats())
    assert ax.get_ylabel().startswith("Gradient alignment (cosine)")
    assert ax.get_xscale() == "log"
    assert ax.lines[1].get_ydata() == pytest.approx([0.9, 0.8, 0.7], abs=1e-12)


def test_metric_vs_slope_rejects_bad_input():
    _, ax = figures.new_figure()
    with pytest.raises(ValueError, match="no rows"):
        figures.plot_accuracy_vs_slope(ax, _slope_stats(), metric="metrics.nope")
    with pytest.raises(ValueError, match="missing columns"):
        figures.plot_accuracy_vs_slope(ax, _slope_stats().drop(columns=["ci_low"]))
    doubled = pd.concat([_slope_stats(), _slope_stats()])
    with pytest.raises(ValueError, match="several rows"):
        figures.plot_accuracy_vs_slope(ax, doubled)


@pytest.mark.parametrize("kind", ["derivative", "primitive"])
def test_plot_surrogate_draws_each_slope(kind):
    shapes = [get_surrogate("fast_sigmoid", slope=s) for s in (1.0, 10.0)]
    x = np.linspace(-1.0, 1.0, 11)
    _, ax = figures.new_figure()
    figures.plot_surrogate(ax, shapes, kind=kind, x=x)
    assert ax.get_title() == "fast sigmoid"
    assert ax.get_ylabel() == ("$g(x)$" if kind == "derivative" else "$P(x)$")
    assert [line.get_label() for line in ax.lines] == [r"$\beta$ = 1", r"$\beta$ = 10"]
    expected = getattr(shapes[1], kind)(torch.as_tensor(x, dtype=torch.float64)).numpy()
    assert ax.lines[1].get_ydata() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="kind"):
        figures.plot_surrogate(ax, shapes, kind="integral")  # type: ignore[arg-type]


def test_surrogate_gallery_layout():
    fig = figures.surrogate_gallery(
        ["atan", "gaussian", "sigmoid"], slopes=(1.0, 5.0), ncols=2, x=np.linspace(-1, 1, 21)
    )
    axes = fig.get_axes()
    assert len(axes) == 8  # 2 blocks x (derivative row + primitive row) x 2 columns
    visible = [ax for ax in axes if ax.get_visible()]
    assert len(visible) == 6
    assert [ax.get_title() for ax in visible if ax.get_title()] == ["atan", "Gaussian", "sigmoid"]
    assert all(len(ax.lines) == 2 for ax in visible)
    with pytest.raises(ValueError, match="unknown surrogate"):
        figures.surrogate_gallery(["nope"])


def test_training_curves_axes():
    _, ax = figures.new_figure()
    figures.plot_training_curves(ax, _curves())
    assert ax.get_xlabel() == "Epoch"
    assert ax.get_ylabel() == "Validation accuracy (%)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["SNN val", "ANN val", figures.BAND_LABEL]
    assert ax.lines[0].get_ydata() == pytest.approx([10.1 + s for s in range(5)], abs=1e-9)
    with pytest.raises(ValueError, match="none of"):
        figures.plot_training_curves(ax, _curves(), keys=["snn/test/acc_best"])
    with pytest.raises(ValueError, match="missing columns"):
        figures.plot_training_curves(ax, _curves().drop(columns=["mean"]))


def test_grad_norm_per_layer_axes():
    _, ax = figures.new_figure()
    figures.plot_grad_norm_per_layer(ax, _curves())
    assert ax.get_yscale() == "log"
    assert ax.get_ylabel().startswith("Gradient L2 norm of the layer")  # which norm, of what
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["hidden layer 1", "readout", figures.BAND_LABEL]
    with pytest.raises(ValueError, match="prefix"):
        figures.plot_grad_norm_per_layer(ax, _curves(), prefix="ann/grad_norm/")


def test_save_figure_writes_pdf_and_png(tmp_path):
    fig, ax = figures.new_figure()
    figures.plot_accuracy_vs_slope(ax, _slope_stats())
    paths = figures.save_figure(fig, tmp_path / "sub" / "acc.pdf")
    assert [p.name for p in paths] == ["acc.pdf", "acc.png"]
    assert paths[0].read_bytes()[:5] == b"%PDF-"
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(p.stat().st_size > 1000 for p in paths)
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(ValueError, match="formats"):
        figures.save_figure(fig, tmp_path / "x", formats=["bmp"])


def test_labels_say_parameters_in_words():
    from evoexp.labels import config_label, value_label

    assert config_label({NAME: "atan", SLOPE: 5.0}) == "atan, β = 5"
    assert value_label("params.model.detach_reset", False) == "reset in graph"
    assert value_label("model.detach_reset", True) == "reset detached"
    assert value_label("params.surrogate.scale", 0.01) == "scale = 0.01"
    assert value_label("params.model.reset", "zero") == "reset to zero"
    assert value_label("params.model.tau_mem", 20.0) == "τ_mem = 20"
    assert value_label("params.trainer.weird_knob", "x") == "weird knob = x"
    assert value_label(SLOPE, float("nan")) == "β n/a"
    assert config_label({}) == ""


def test_training_curves_error_mode_and_shared_legend():
    fig, axes = figures.new_figure(1, 2, width="double")
    figures.plot_training_curves(axes[0], _curves())
    figures.plot_training_curves(axes[1], _curves(), error=True, ylabel="Error (%)")
    assert axes[1].get_yscale() == "log"
    # 100 * (1 - accuracy); the band flips with it and stays above 0
    assert axes[1].lines[0].get_ydata() == pytest.approx([100 * (1 - 0.101 - 0.01 * s) for s in range(5)], abs=1e-9)
    band = axes[1].collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() > 0
    height = fig.get_figheight()
    figures.shared_legend(fig)
    assert all(ax.get_legend() is None for ax in axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["SNN val", "ANN val", figures.BAND_LABEL]
    assert fig.get_figheight() > height  # the figure grows by the legend; the axes keep their size


def test_accuracy_on_its_whole_range_or_zoomed_and_one_legend_for_both():
    fig, axes = figures.new_figure(1, 2, width="double")
    figures.plot_accuracy_vs_slope(axes[0], _slope_stats(), points=_slope_runs())
    figures.plot_accuracy_vs_slope(axes[1], _slope_stats(), points=_slope_runs(), full_range=False)
    assert axes[0].get_ylim() == (0.0, 100.0)
    low, high = axes[1].get_ylim()
    assert 45 < low < 50 and 72 < high < 80  # the data's range: 50 to 72%
    figures.shared_legend(fig, ncols=3)
    legend = fig.legends[0]
    assert legend.get_title().get_text() == "Surrogate"
    assert [t.get_text() for t in legend.get_texts()] == [
        "atan",
        "fast sigmoid",
        "sigmoid",
        figures.BAND_LABEL,
        figures.POINT_LABEL,
    ]  # the union of both panels' entries, each once
    assert all(ax.get_legend() is None for ax in axes)


def test_run_figures_are_titled_with_the_configuration_and_show_percent():
    val_acc = {"SNN": {0: 0.5, 1: 0.75}, "ANN": {0: 0.5, 1: 0.9}}
    made = figures.run_figures(get_surrogate("atan", slope=5.0), val_acc, title="atan, β = 5, seed 0")
    assert [fig.axes[0].get_title() for fig in made.values()] == ["atan, β = 5, seed 0"] * 2
    curves = made["training_curves"].axes[0]
    assert curves.get_ylabel() == "Validation accuracy (%)"
    assert list(curves.lines[0].get_ydata()) == [50.0, 75.0]


def test_one_seed_draws_no_band_and_its_legend_claims_none():
    runs = _slope_runs()
    one = runs[runs["params.seed"] == 0]
    _, ax = figures.new_figure()
    figures.plot_accuracy_vs_slope(ax, aggregate(one, by=[NAME, SLOPE], metrics=[ACC]), points=one, chance=0.25)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert figures.BAND_LABEL not in legend
    assert legend[-2:] == ["chance level (25%)", figures.POINT_LABEL]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "100"]  # the tested slopes, plain numbers


def test_labels_for_layers_and_flags():
    from evoexp.labels import layer_label, value_label

    assert layer_label("hidden.0") == "hidden layer 1"
    assert layer_label("readout") == "readout"
    assert value_label("params.debug.diverge", True) == "diverge = true"
