"""Tiles, kernel calls and the share of work between processes: the plan alone, no kernel runs."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import small_spec

import sweep
from sweep import plan as planning
from sweep.plan import tiles as tiling
from sweep.plan.plan import least_padded

SHAPES = [  # (gains, bias_stds, seeds), networks per tile
    ((3, 2, 100), 40), ((3, 2, 100), 1000), ((5, 3, 7), 10), ((5, 3, 7), 2), ((1, 1, 1), 5), ((9, 1, 16), 3276),
]


@pytest.mark.parametrize("shape, networks", SHAPES)
def test_tiles_are_the_cells_of_one_chunk_grid_and_contiguous_in_flat_order(shape, networks):
    tile = planning.choose_tile_shape(shape, networks)
    cells = [(start, stop, tuple(region.values())) for start, stop, region in tiling.cells("gbs", shape, tile)]
    grid = [-(-n // c) for n, c in zip(shape, tile)]
    assert len(cells) == np.prod(grid)
    covered = np.zeros(shape, int)
    for start, stop, region in cells:
        block = np.arange(np.prod(shape)).reshape(shape)[region]
        np.testing.assert_array_equal(block.reshape(-1), np.arange(start, stop))  # contiguous, C order
        assert all(r.start % c == 0 for r, c in zip(region, tile))  # aligned to the zarr chunk grid
        covered[region] += 1
    assert (covered == 1).all()
    assert max(stop - start for start, stop, _ in cells) <= networks


def test_tile_shape_follows_the_target():
    assert planning.choose_tile_shape((3, 2, 100), 40) == (1, 1, 34)  # balanced: 34, 34, 32
    assert planning.choose_tile_shape((3, 2, 100), 250) == (1, 2, 100)
    assert planning.choose_tile_shape((9, 1, 16), 3276) == (9, 1, 16)  # the whole group
    assert planning.choose_tile_shape((21, 5, 64), 700) == (2, 5, 64)  # 11 cells of 2 gains, not 10 and a single


def legacy_calls(the_plan, job):
    """The engine before tiles: contiguous chunks of one call's networks, the last padded with the final network."""
    n, chunk = job.networks, the_plan.call_size(job, 1) * job.micro_batch
    for start in range(0, n, chunk):
        local = np.arange(start, min(start + chunk, n))
        yield np.concatenate([local, np.repeat(local[-1:], chunk - local.size)])


@pytest.mark.parametrize("seeds, budget_micro_batches, devices, chunk", [(100, 1, 1, 40), (100, 2, 8, 7), (37, 3, 2, 500)])
def test_every_network_keeps_its_micro_batch_and_slot_from_before_tiles(seeds, budget_micro_batches, devices, chunk):
    spec = small_spec(seeds=seeds, grid={"gain": [0.8, 1.4, 2.0], "bias_std": [0.0, 0.3]})
    roomy = planning.make_plan(spec)
    (job,) = roomy.groups[0].jobs
    budget = budget_micro_batches * job.micro_batch * job.bytes_per_network
    the_plan = planning.make_plan(spec, budget, chunk_networks=chunk)
    mu = job.micro_batch
    before = np.concatenate(list(legacy_calls(the_plan, job))).reshape(-1, mu)
    calls = list(the_plan.calls(job, the_plan.micro_batches_of(job, the_plan.tiles), devices))
    assert all(c.size == the_plan.call_size(job, devices) and c.size % devices == 0 for c in calls)
    assert the_plan.call_size(job, devices) <= devices * budget_micro_batches
    now = np.concatenate([the_plan.positions(job, c) for c in calls]).reshape(-1, mu)
    for m in range(job.micro_batches):  # every real micro-batch, with the same networks in the same slots
        np.testing.assert_array_equal(now[m], before[m])


def test_a_tile_needs_exactly_the_micro_batches_that_hold_its_networks():
    spec = small_spec(seeds=100, grid={"gain": [0.8, 1.4, 2.0], "bias_std": [0.0, 0.3]})
    the_plan = planning.make_plan(spec, chunk_networks=40)
    (job,) = the_plan.groups[0].jobs
    for tile in the_plan.tiles:
        ids = the_plan.micro_batches_of(job, [tile])
        held = set(the_plan.positions(job, ids).tolist())
        assert set(range(tile.start, tile.stop)) <= held
        assert all(set(the_plan.positions(job, [m]).tolist()) & set(range(tile.start, tile.stop)) for m in ids)


def test_processes_get_disjoint_contiguous_balanced_shares():
    spec = small_spec(seeds=10, grid={"depth": [2, 6], "width": [8, 32], "gain": [1.0, 2.0]})
    the_plan = planning.make_plan(spec, chunk_networks=4)
    tiles = [t for t in the_plan.tiles if t.id % 7]  # as if some were done
    for processes in (1, 2, 3, 8, 100):
        shares = planning.assign(tiles, [the_plan.tile_cost(t) for t in tiles], processes)
        assert len(shares) == processes
        flat = [t.id for share in shares for t in share]
        assert flat == [t.id for t in tiles]  # every tile once, in order: contiguous runs
    cost = lambda share: sum(the_plan.tile_cost(t) for t in share)
    costs = [cost(s) for s in planning.assign(the_plan.tiles, [the_plan.tile_cost(t) for t in the_plan.tiles], 2)]
    biggest = max(cost([t]) for t in the_plan.tiles)
    assert abs(costs[0] - costs[1]) <= biggest


def test_tiles_use_the_same_cells_in_every_group_and_global_indices_follow_the_grid():
    spec = small_spec(seeds=5, grid={"depth": [2, 3], "gain": [1.0, 1.5, 2.0]})
    the_plan = planning.make_plan(spec, chunk_networks=4)
    per_group = len(the_plan.tiles) // len(the_plan.groups)
    for tile in the_plan.tiles:
        twin = the_plan.tiles[tile.id % per_group]
        assert (tile.start, tile.stop, tile.region) == (twin.start, twin.stop, twin.region)
    group = the_plan.groups[1]
    (job,) = group.jobs
    indices = the_plan.key_indices(group, job, np.arange(job.networks))
    full = np.arange(spec.num_networks).reshape(spec.grid.shape + (spec.seeds,))
    np.testing.assert_array_equal(indices, full[group.position].reshape(-1))


def test_chunk_networks_must_be_a_positive_integer():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(sweep.SpecError, match="chunk_networks: must be a positive integer"):
            planning.make_plan(small_spec(), chunk_networks=bad)


def test_a_resumed_plan_keeps_the_recorded_micro_batches_and_tiles():
    spec = small_spec(seeds=9)
    for recorded in ([4], [[4]]):  # as stores made before jobs recorded them, and since
        resumed = planning.make_plan(spec, micro_batches=recorded, tile_shape=(1, 1, 3))
        assert resumed.groups[0].jobs[0].micro_batch == 4 and resumed.tile_shape == (1, 1, 3)
        assert len(resumed.tiles) == 6


def train_spec(**changes):
    raw = {"kind": "train", "name": "t", "dataset": "teacher", "seeds": 5, "batch": 8, "steps": 4, "eval_every": 2,
           "grid": {"activation": ["relu"], "depth": [2, 3], "width": [8], "gain": [1.0, 2.0], "bias_std": [0.0, 0.1],
                    "learning_rate": [0.1, 0.2, 0.3]}}
    raw.update(changes)
    return sweep.load_spec(raw)


def test_a_training_plan_measures_the_initial_networks_then_trains_every_learning_rate():
    spec = train_spec()
    the_plan = planning.make_plan(spec, chunk_networks=7)
    assert the_plan.local_axes == ("gain", "bias_std", "seed", "learning_rate")
    init, train = the_plan.groups[0].jobs
    assert (init.kind, init.shape, init.tile_fold) == ("init", (2, 2, 5), 3)
    assert (train.kind, train.shape, train.per_key) == ("train", (2, 2, 5, 3), 3)
    assert init.probe.loss == "mse" and init.probe.outputs == 1 and train.probe is None
    assert init.arch == train.arch and init.arch.widths == (32, 8, 8)  # the teacher's 32 features
    for tile in the_plan.tiles:
        assert tile.region["learning_rate"] == slice(0, 3)  # a tile holds every learning rate
        start, stop = the_plan.job_range(init, tile)
        assert (start, stop) == (tile.start // 3, tile.stop // 3)
    group = the_plan.groups[1]
    # Every learning rate trains the initial network with the statistics grid's index.
    keys = the_plan.key_indices(group, train, np.arange(train.networks)).reshape(2, 2, 5, 3)
    assert (keys == keys[..., :1]).all()
    np.testing.assert_array_equal(keys[..., 0].reshape(-1), the_plan.key_indices(group, init, np.arange(init.networks)))
    full = np.arange(spec.num_initial_networks).reshape(spec.grid.stats.shape + (spec.seeds,))
    np.testing.assert_array_equal(keys[..., 0].reshape(-1), full[group.position].reshape(-1))


@pytest.mark.parametrize("script", ["launch_slurm.sh", "launch_tpu.sh"])
def test_launch_scripts_are_valid_bash_and_say_how_to_use_them(script):
    path = Path(__file__).resolve().parents[1] / "scripts" / script
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    result = subprocess.run(["bash", str(path)], capture_output=True, text=True)
    assert result.returncode != 0 and "usage: " in result.stderr


@pytest.mark.parametrize("items, most, expected", [
    (144, 128, 16),  # 9 gains x 16 seeds: 144 computed, not 256
    (288, 256, 32),  # two bias stds: 288, not 512
    (256, 256, 256), (512, 128, 128),  # no padding: the largest
    (320, 256, 64), (300, 256, 16),  # 320 in 5 of 64; 300 in 64s would pad 20, more than a sixteenth
    (7, 256, 16),  # nothing within a sixteenth: the least padding, then the largest
    (1, 1, 1),
])
def test_micro_batches_on_a_cpu_pad_a_grid_point_by_at_most_a_sixteenth(items, most, expected):
    micro = least_padded(items, most)
    assert micro == expected
    assert most // 16 <= micro <= most and micro & (micro - 1) == 0


def test_a_cpu_plan_computes_144_networks_per_grid_point_not_256():
    spec = small_spec(seeds=16, grid={"gain": [0.5 + 0.25 * k for k in range(9)], "width": [32], "depth": [8]})
    (job,) = planning.make_plan(spec).groups[0].jobs
    assert job.networks == 144 and job.micro_batch == 16
