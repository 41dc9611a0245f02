"""Which networks share a compiled program: the deepest one they are a prefix of."""

import pytest

from sweep.model import network
from sweep.model.network import Architecture


def grid(activation, inits, profile, depths, width=8):
    return [Architecture.from_grid(activation, init, profile, depth, width) for init in inits for depth in depths]


def test_depths_and_fan_modes_of_one_distribution_share_one_program():
    archs = grid("relu", ["fan_in", "fan_out", "fan_avg"], "constant", [2, 5, 9, 16])
    programs = network.programs(archs)
    assert set(programs.values()) == {network.Program("relu", "normal", (8,) * 17, 8)}
    for arch in archs:
        prefix = arch.prefix(programs[arch])
        assert prefix.depth == arch.depth and prefix.scales.shape == (16,)
        assert prefix.scales[: arch.depth].tolist() == arch.layer_scales.tolist()


def test_distributions_and_activations_have_programs_of_their_own():
    archs = grid("relu", ["fan_in", "fan_in_uniform", "orthogonal"], "constant", [2, 4]) + grid(
        "tanh", ["fan_in"], "constant", [2, 4])
    programs = network.programs(archs)
    assert sorted((p.activation, p.distribution) for p in set(programs.values())) == [
        ("relu", "normal"), ("relu", "orthogonal"), ("relu", "uniform"), ("tanh", "normal")]


def test_alternating_widths_share_a_program_per_output_width():
    archs = grid("relu", ["fan_in"], "alternating", [2, 3, 4, 5, 6])
    programs = network.programs(archs)
    by_width = {p.last_width: p for p in programs.values()}
    assert sorted(by_width) == [8, 16]
    assert by_width[16].widths == Architecture.from_grid("relu", "fan_in", "alternating", 6, 8).widths
    assert by_width[8].widths == Architecture.from_grid("relu", "fan_in", "alternating", 5, 8).widths


def test_a_taper_is_no_prefix_of_a_deeper_taper_and_keeps_its_own_program():
    archs = grid("relu", ["fan_in"], "taper", [4, 8], width=32)
    programs = network.programs(archs)
    assert len(set(programs.values())) == 2
    assert all(programs[a].widths == a.widths for a in archs)


def test_a_network_is_refused_by_a_program_it_is_not_a_prefix_of():
    deep = Architecture.from_grid("relu", "fan_in", "taper", 8, 32)
    shallow = Architecture.from_grid("relu", "fan_in", "taper", 4, 32)
    with pytest.raises(ValueError, match="not a prefix"):
        shallow.prefix(deep.program())
