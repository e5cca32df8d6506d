"""Neighbour grouping from scan coordinates: exact k nearest, seeded group draws."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho.grouping import default_neighbors, group_scan_positions, k_nearest, neighbors_within


def _reference(positions: np.ndarray, k: int) -> np.ndarray:
    """Brute force: sort every row by (distance, index)."""
    d2 = ((positions[:, None, :] - positions[None, :, :]) ** 2).sum(-1)
    return np.stack([np.lexsort((np.arange(len(positions)), row))[:k] for row in d2])


def _scans() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(30.0), np.arange(20.0)), -1).reshape(-1, 2) * 3
    return {
        "uniform": rng.uniform(0, 300, (1500, 2)),
        "raster_with_ties": grid,
        "cluster_and_sparse": np.concatenate([rng.normal(50, 0.5, (400, 2)),
                                              rng.uniform(0, 2000, (300, 2))]),
        "line": np.stack([np.linspace(0, 100, 300), np.zeros(300)], axis=1),
        "spiral": np.stack([np.arange(800) ** 0.5 * np.cos(np.arange(800) * 2.4),
                            np.arange(800) ** 0.5 * np.sin(np.arange(800) * 2.4)], axis=1) * 4,
    }


@pytest.mark.parametrize("name", sorted(_scans()))
@pytest.mark.parametrize("k", [1, 4, 7, 12])
def test_k_nearest_is_exact_with_ties_broken_by_index(name: str, k: int) -> None:
    positions = _scans()[name]
    got = k_nearest(positions, k)
    assert got.shape == (len(positions), k) and got.dtype == np.int64
    np.testing.assert_array_equal(got, _reference(positions, k))
    if name != "cluster_and_sparse":  # distinct positions: each is its own nearest
        np.testing.assert_array_equal(got[:, 0], np.arange(len(positions)))


def test_k_nearest_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]"):
        k_nearest(np.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match=r"\(P, 2\)"):
        k_nearest(np.zeros((3, 3)), 1)
    with pytest.raises(ValueError, match="NaN"):
        k_nearest(np.array([[0.0, 1.0], [np.nan, 2.0]]), 1)


def test_groups_are_drawn_from_the_centre_neighbours_reproducibly() -> None:
    positions = _scans()["uniform"]
    groups = group_scan_positions(positions, gridsize=2, neighbors=7, seed=5)
    assert groups.shape == (len(positions), 4)
    near = k_nearest(positions, 7)
    for centre, members in enumerate(groups):
        assert len(set(members)) == 4  # without replacement
        assert set(members) <= set(near[centre])
    np.testing.assert_array_equal(groups, group_scan_positions(positions, 2, 7, seed=5))
    assert not np.array_equal(groups, group_scan_positions(positions, 2, 7, seed=6))


def test_group_counts_and_gridsize_one() -> None:
    positions = _scans()["uniform"][:50]
    np.testing.assert_array_equal(group_scan_positions(positions, 1), np.arange(50)[:, None])
    few = group_scan_positions(positions, 2, n_groups=10, seed=1)
    assert few.shape == (10, 4)
    many = group_scan_positions(positions, 3, n_groups=120, seed=1)
    assert many.shape == (120, 9) and default_neighbors(3) == 9
    assert set(np.unique(many)) <= set(range(50))


def test_grouping_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"3 scan positions are fewer than gridsize² = 4"):
        group_scan_positions(np.zeros((3, 2)), 2)
    with pytest.raises(ValueError, match=r"neighbors must be >= gridsize² = 4, got 3"):
        group_scan_positions(np.arange(20.0).reshape(10, 2), 2, neighbors=3)
    with pytest.raises(ValueError, match="n_groups must be >= 1"):
        group_scan_positions(np.arange(20.0).reshape(10, 2), 2, n_groups=0)


def test_neighbors_within_counts_the_positions_in_a_disk() -> None:
    grid = np.stack(np.meshgrid(np.arange(21.0), np.arange(21.0)), -1).reshape(-1, 2)
    assert neighbors_within(grid, 1.0) == 5  # itself and its 4 edge neighbours
    assert neighbors_within(grid, 1.5) == 9
    assert neighbors_within(grid, 1000.0) == len(grid)
    with pytest.raises(ValueError, match="radius must be finite and > 0"):
        neighbors_within(grid, 0.0)
