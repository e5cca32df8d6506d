"""plots: PNGs are written (atomically), decode, show data; no pyplot, no backend switch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptycho.objects import make_object
from ptycho.plots import comparison_figure, save_comparison_png, save_diffraction_png, save_object_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)
    return imread(path)


def test_object_and_diffraction_pngs_are_written_and_show_data(tmp_path: Path) -> None:
    obj = make_object("disk", 64, np.random.default_rng(0))
    out = save_object_png(obj, tmp_path / "sub" / "object.png", title="disk")
    assert out == tmp_path / "sub" / "object.png"
    pixels = _read_png(out)
    assert pixels.shape[:2] == (380, 800) and pixels[..., :3].std() > 0.05

    pattern = np.random.default_rng(1).poisson(np.full((32, 32, 1), 50.0)).astype(np.float32)
    pattern[16, 16, 0] = 1e6
    pixels = _read_png(save_diffraction_png(pattern, tmp_path / "diff.png"))
    assert pixels.shape[:2] == (380, 460) and pixels[..., :3].std() > 0.01

    truth = make_object("random", 40, np.random.default_rng(2))
    path = save_comparison_png(truth * 0.9, truth, tmp_path / "cmp.png", metrics={"amp_ssim": 0.5})
    assert _read_png(path).shape[:2] == (720, 800)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmp.png", "diff.png", "sub"]  # no temp files


def test_comparison_shows_the_aligned_reconstruction_on_shared_colour_scales() -> None:
    truth = make_object("random", 24, np.random.default_rng(5))
    pred = truth * (0.5 * np.exp(1.2j))  # what the metrics ignore: global scale and phase
    fig = comparison_figure(pred, truth)
    recon_amp, recon_phase, truth_amp, truth_phase = (ax.images[0] for ax in fig.axes if ax.images)
    np.testing.assert_allclose(recon_amp.get_array(), truth_amp.get_array(), atol=1e-5)
    np.testing.assert_allclose(recon_phase.get_array(), truth_phase.get_array(), atol=1e-5)
    assert recon_amp.get_clim() == truth_amp.get_clim()
    assert recon_phase.get_clim() == truth_phase.get_clim()
    assert "aligned" in fig.axes[0].get_title()


def test_bad_input_raises_and_leaves_existing_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "keep.png"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match=r"expected a 2-D image \(H, W\), got shape \(2, 3, 4\)"):
        save_object_png(np.ones((2, 3, 4)), target)
    with pytest.raises(ValueError, match="NaN or infinite"):
        save_diffraction_png(np.full((8, 8), np.nan), target)
    with pytest.raises(ValueError, match="expected a real image"):
        save_diffraction_png(np.ones((8, 8), complex), target)
    with pytest.raises(ValueError, match="shapes differ"):
        save_comparison_png(np.ones((8, 8)), np.ones((8, 9)), target)
    assert target.read_bytes() == b"old"


def test_plots_never_import_pyplot_or_switch_backend(tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np, matplotlib\n"
        "backend = matplotlib.rcParams._get_backend_or_none()\n"
        "import ptycho.plots as p\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        f"p.save_object_png(np.ones((16, 16), complex), {str(tmp_path / 'o.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "assert matplotlib.rcParams._get_backend_or_none() == backend, 'backend switched'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o.png").stat().st_size > 0
